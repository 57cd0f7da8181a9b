package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Reasons an authentication or authorization step fails. Each is a fixed
// word, safe to show to the caller and bounded as a metric label.
const (
	// Credentials (UNAUTHENTICATED).
	ReasonMissingToken    = "missing_token"          // no authorization metadata, or an empty bearer
	ReasonMalformed       = "malformed"              // not a credential Clerk issues: not a compact JWS, an opaque body of the wrong shape, claims that do not decode
	ReasonBadAlgorithm    = "bad_algorithm"          // alg is not RS256 (none, HS256, …)
	ReasonExpired         = "expired"                // exp passed, beyond the leeway; or Clerk says the credential expired
	ReasonNotYetValid     = "not_yet_valid"          // nbf or iat in the future, beyond the leeway
	ReasonBadSignature    = "bad_signature"          // the signature does not verify with the key
	ReasonUnknownKey      = "unknown_key"            // no signing key has the token's kid
	ReasonWrongIssuer     = "wrong_issuer"           // iss is not the pinned issuer
	ReasonWrongAZP        = "wrong_azp"              // azp is not an authorized party
	ReasonWrongAudience   = "wrong_audience"         // an OAuth token's aud names none of GATEHOUSE_OAUTH_AUDIENCE
	ReasonNoExpiry        = "no_expiry"              // exp is missing
	ReasonNoSession       = "no_session"             // sid is missing
	ReasonPendingSession  = "pending_session"        // sts is "pending"
	ReasonNotSessionToken = "not_a_session_token"    // a JWT routed as a session whose cat (or typ) names another kind of token
	ReasonWrongCategory   = "wrong_category"         // a machine or OAuth JWT whose cat names another kind of token
	ReasonBadSubject      = "bad_subject"            // sub (or Clerk's subject) is not an id of the kind the credential acts for
	ReasonBadOrganization = "bad_organization"       // the active organization id is malformed
	ReasonRevoked         = "revoked"                // Clerk says the credential was revoked
	ReasonRejected        = "rejected"               // Clerk refused the credential (4xx): unknown, revoked or expired, it does not say
	ReasonOpaqueDisabled  = "opaque_tokens_disabled" // no Backend API (CLERK_JWT_KEY only), so mt_, ak_ and oat_ cannot be verified
	ReasonUnknownUser     = "unknown_user"           // Clerk does not know the token's user
	ReasonDeletedUser     = "deleted_user"           // the user was deleted (tombstoned)

	// Metadata (INVALID_ARGUMENT).
	ReasonMissingTenant = "missing_tenant" // a machine call without x-gatehouse-tenant
	ReasonBadTenant     = "bad_tenant"     // x-gatehouse-tenant is malformed or repeated

	// Authorization (PERMISSION_DENIED).
	ReasonCredentialNotAllowed = "credential_not_allowed" // the RPC does not take this kind of credential
	ReasonUserRequired         = "user_required"          // the RPC needs a user; an organization's key is not one
	ReasonTenantNotAllowed     = "tenant_not_allowed"     // the credential may not act in the tenant x-gatehouse-tenant names
	ReasonNotMember            = "not_a_member"           // a user's key or OAuth token names an organization the user has no mirrored live membership of
	ReasonMissingPermission    = "missing_permission"     // the principal lacks a permission the RPC needs
	ReasonNoAccessRule         = "no_access_rule"         // a Gatehouse RPC unknown to Rules

	// Verification budget (RESOURCE_EXHAUSTED, with RetryInfo; no call to
	// Clerk made).
	ReasonRateLimited = "rate_limited" // the caller's address is over its budget of calls to Clerk's verify endpoints
	ReasonBusy        = "busy"         // as many verifications as allowed are in flight already

	// Dependencies (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED, INTERNAL).
	ReasonKeysUnavailable  = "keys_unavailable"  // the JWKS could not be fetched in time
	ReasonClerkUnavailable = "clerk_unavailable" // the Backend API could not answer in time
	ReasonStoreUnavailable = "store_unavailable" // the database could not answer (store.IsUnavailable)
	ReasonInternal         = "internal"          // anything else; the cause is kept for logs
)

// Error is the one error type of the package. Code is the gRPC status the
// caller sees; Reason (one of the Reason constants) is the only detail shown
// to it. The wrapped cause, if any, is for server logs and never contains
// token text.
type Error struct {
	Code   codes.Code
	Reason string
	// RetryAfter, when positive, adds google.rpc.RetryInfo to the status.
	RetryAfter time.Duration
	// Err is the underlying cause, if any.
	Err error
}

// Error returns the message the caller sees, e.g. "invalid token: expired".
func (e *Error) Error() string {
	switch e.Code {
	case codes.Unauthenticated:
		return "invalid token: " + e.Reason
	case codes.PermissionDenied:
		return "permission denied: " + e.Reason
	case codes.InvalidArgument:
		return "invalid request: " + e.Reason
	case codes.ResourceExhausted:
		return "too many verifications: " + e.Reason
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return "authentication unavailable: " + e.Reason
	default:
		return "authentication failed: " + e.Reason
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// HiddenCause returns the cause of a failure whose detail the caller is not
// shown — INTERNAL, UNAVAILABLE, RESOURCE_EXHAUSTED (and UNKNOWN and
// DATA_LOSS, which auth does not use) — for the per-call log line, and nil
// for a refusal, whose reason the caller is told.
func (e *Error) HiddenCause() error {
	switch e.Code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable, codes.ResourceExhausted:
		return e.Err
	}
	return nil
}

// GRPCStatus lets status.FromError and grpc-go turn e into a status: the
// code, the message of Error, and RetryInfo when RetryAfter is set. The
// cause is never part of it.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Error())
	if e.RetryAfter > 0 {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
			return withInfo
		}
	}
	return st
}

// Where a failure came from, when its cause alone does not say what the
// caller should see. Each is wrapped around the cause, as in
// fmt.Errorf("%w: %w", errKeySource, err).
var (
	// errKeySource: the KeySource failed. It stops waiting when the caller's
	// context ends, so a context error from it is taken for the caller's
	// own deadline or cancellation.
	errKeySource = errors.New("signing keys")
	// errVerify: Clerk's answer to the verification of an opaque
	// credential. The request runs on Gatehouse's own timeout, so a
	// deadline there is Clerk not answering in time.
	errVerify = errors.New("verify with Clerk")
	// errClerkWait: the caller's context ended while it waited for Clerk's
	// Backend API.
	errClerkWait = errors.New("waiting for Clerk")
)

// jwtError is clerk-sdk-go's jwt.Verify refusing a token. Its text may quote
// claims the token's author chose, so it is never kept as a cause.
type jwtError struct{ err error }

func (e *jwtError) Error() string { return "jwt.Verify refused the token" }

// reason tells which fault jwt.Verify found. go-jose's errors are sentinels;
// the SDK's own are plain strings, matched by prefix (a test pins each one).
func (e *jwtError) reason() string {
	switch {
	case errors.Is(e.err, josejwt.ErrExpired):
		return ReasonExpired
	case errors.Is(e.err, josejwt.ErrNotValidYet), errors.Is(e.err, josejwt.ErrIssuedInTheFuture):
		return ReasonNotYetValid
	case errors.Is(e.err, jose.ErrCryptoFailure):
		return ReasonBadSignature
	}
	switch msg := e.err.Error(); {
	case strings.HasPrefix(msg, "invalid issuer"):
		return ReasonWrongIssuer
	case strings.HasPrefix(msg, "invalid signing algorithm"):
		return ReasonBadAlgorithm
	default:
		return ReasonMalformed
	}
}

// errorOf is the one table from what can go wrong on the authentication path
// to the *Error the caller sees: an *Error as it is; a refusal or a failure
// reported by a dependency (the signing keys, Clerk's Backend API, the
// Provisioner); and anything else as INTERNAL, its detail kept as the cause
// for logs. The first matching row wins.
func errorOf(err error) *Error {
	var (
		e       *Error
		refusal *jwtError
		retry   *provision.UnavailableError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e

	// The credential is not good: UNAUTHENTICATED.
	case errors.As(err, &refusal):
		return unauthenticated(refusal.reason(), nil)
	case errors.Is(err, clerk.ErrUnknownKey):
		return unauthenticated(ReasonUnknownKey, err)
	case errors.Is(err, clerk.ErrTokenRevoked):
		return unauthenticated(ReasonRevoked, err)
	case errors.Is(err, clerk.ErrTokenExpired):
		return unauthenticated(ReasonExpired, err)
	case errors.Is(err, clerk.ErrInvalidToken):
		return unauthenticated(ReasonRejected, err)
	case errors.Is(err, provision.ErrBadSubject):
		return unauthenticated(ReasonBadSubject, err)
	case errors.Is(err, provision.ErrUnknownUser):
		return unauthenticated(ReasonUnknownUser, err)
	case errors.Is(err, provision.ErrDeletedUser):
		return unauthenticated(ReasonDeletedUser, err)

	// The signing keys could not be had: UNAVAILABLE with RetryInfo —
	// including when the fetch ran out of its own time, which is not the
	// caller's deadline — or the caller's own deadline or cancellation.
	case errors.Is(err, errKeySource) && errors.Is(err, clerk.ErrUnavailable):
		return unavailable(ReasonKeysUnavailable, time.Second, err)
	case errors.Is(err, errKeySource) && isContextError(err):
		return callerGone(ReasonKeysUnavailable, err)

	// Clerk's Backend API did not answer: UNAVAILABLE with RetryInfo, or the
	// caller's own deadline or cancellation when it stopped waiting first.
	case errors.Is(err, errVerify) &&
		(errors.Is(err, clerk.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)):
		return unavailable(ReasonClerkUnavailable, time.Second, err)
	case errors.As(err, &retry):
		return unavailable(ReasonClerkUnavailable, retry.RetryAfter, err)
	case (errors.Is(err, errClerkWait) || errors.Is(err, provision.ErrClerkUnavailable)) && isContextError(err):
		return callerGone(ReasonClerkUnavailable, err)

	// The database did not answer (the Provisioner's user check, the
	// membership role): UNAVAILABLE with RetryInfo.
	case store.IsUnavailable(err):
		return unavailable(ReasonStoreUnavailable, store.RetryAfter, err)
	}
	return &Error{Code: codes.Internal, Reason: ReasonInternal, Err: err}
}

func isContextError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// The constructors of *Error, for the decisions the package makes itself and
// for the rows of errorOf.

func unauthenticated(reason string, cause error) *Error {
	return &Error{Code: codes.Unauthenticated, Reason: reason, Err: cause}
}

func permissionDenied(reason string) *Error {
	return &Error{Code: codes.PermissionDenied, Reason: reason}
}

func invalidArgument(reason string) *Error {
	return &Error{Code: codes.InvalidArgument, Reason: reason}
}

func unavailable(reason string, retryAfter time.Duration, cause error) *Error {
	return &Error{Code: codes.Unavailable, Reason: reason, RetryAfter: retryAfter, Err: cause}
}

// exhausted refuses a verification the budget does not allow now; no call
// to Clerk was made. cause says whose budget, for the log.
func exhausted(reason string, retryAfter time.Duration, cause error) *Error {
	return &Error{Code: codes.ResourceExhausted, Reason: reason, RetryAfter: retryAfter, Err: cause}
}

// callerGone reports the caller's own deadline or cancellation, err, met
// while waiting for the dependency reason names.
func callerGone(reason string, err error) *Error {
	code := codes.Canceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	return &Error{Code: code, Reason: reason, Err: err}
}
