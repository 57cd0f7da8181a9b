package auth

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Reasons an authentication or authorization step fails. Each is a fixed
// word, safe to show to the caller and bounded as a metric label.
const (
	// Credentials (UNAUTHENTICATED).
	ReasonMissingToken     = "missing_token"           // no authorization metadata, or an empty bearer
	ReasonMalformed        = "malformed"               // not a compact JWS, or claims that do not decode
	ReasonBadAlgorithm     = "bad_algorithm"           // alg is not RS256 (none, HS256, …)
	ReasonExpired          = "expired"                 // exp passed, beyond the leeway
	ReasonNotYetValid      = "not_yet_valid"           // nbf or iat in the future, beyond the leeway
	ReasonBadSignature     = "bad_signature"           // the signature does not verify with the key
	ReasonUnknownKey       = "unknown_key"             // no signing key has the token's kid
	ReasonWrongIssuer      = "wrong_issuer"            // iss is not the pinned issuer
	ReasonWrongAZP         = "wrong_azp"               // azp is not an authorized party
	ReasonNoExpiry         = "no_expiry"               // exp is missing
	ReasonNoSession        = "no_session"              // sid is missing
	ReasonPendingSession   = "pending_session"         // sts is "pending"
	ReasonNotSessionToken  = "not_a_session_token"     // cat names a JWT-template or machine token
	ReasonBadSubject       = "bad_subject"             // sub is not a Clerk user id
	ReasonBadOrganization  = "bad_organization"        // the active organization id is malformed
	ReasonRevoked          = "revoked"                 // Clerk rejected the machine token: revoked, expired or unknown
	ReasonMachinesDisabled = "machine_tokens_disabled" // no Backend API, so machine tokens cannot be verified
	ReasonUnknownUser      = "unknown_user"            // Clerk does not know the token's user
	ReasonDeletedUser      = "deleted_user"            // the user was deleted (tombstoned)

	// Metadata (INVALID_ARGUMENT).
	ReasonMissingTenant = "missing_tenant" // a machine call without x-gatehouse-tenant
	ReasonBadTenant     = "bad_tenant"     // x-gatehouse-tenant is malformed or repeated

	// Authorization (PERMISSION_DENIED).
	ReasonMachineNotAllowed = "machine_not_allowed" // the RPC has no allow_machines
	ReasonTenantNotAllowed  = "tenant_not_allowed"  // the machine token's tenants claim omits the tenant
	ReasonMissingPermission = "missing_permission"  // the principal lacks a permission the RPC needs
	ReasonNoAccessRule      = "no_access_rule"      // a Gatehouse RPC unknown to Rules

	// Dependencies (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED, INTERNAL).
	ReasonKeysUnavailable  = "keys_unavailable"  // the JWKS could not be fetched in time
	ReasonClerkUnavailable = "clerk_unavailable" // the Backend API could not answer in time
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

func unauthenticated(reason string, cause error) *Error {
	return &Error{Code: codes.Unauthenticated, Reason: reason, Err: cause}
}

func permissionDenied(reason string) *Error {
	return &Error{Code: codes.PermissionDenied, Reason: reason}
}

func invalidArgument(reason string) *Error {
	return &Error{Code: codes.InvalidArgument, Reason: reason}
}

// NewError returns an *Error with code and reason, wrapping cause (which may
// be nil). Other packages on the authentication path (first-sight
// provisioning) use it so that the interceptor reports their failures the
// same way.
func NewError(code codes.Code, reason string, cause error) *Error {
	return &Error{Code: code, Reason: reason, Err: cause}
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
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return "authentication unavailable: " + e.Reason
	default:
		return "authentication failed: " + e.Reason
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

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
