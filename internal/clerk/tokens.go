package clerk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
)

// The Backend API's verify endpoints for credentials the SDK has no client
// for.
const (
	apiKeysVerifyPath     = "/api_keys/verify"
	oauthTokensVerifyPath = "/oauth_applications/access_tokens/verify"
)

// secretKeyRefused is the Clerk error code of a request whose secret key
// the Backend API does not accept.
const secretKeyRefused = "authentication_invalid"

// MachineToken is a machine (M2M) token that Clerk has verified as valid.
type MachineToken struct {
	// ID is the token's id (mt_…), not the token itself.
	ID string
	// Subject is the machine the token was issued to (mch_…).
	Subject string
	// Claims are the token's custom claims as JSON; nil if it has none.
	Claims json.RawMessage
	// Scopes are the machines this one may call.
	Scopes []string
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
}

// APIKey is an API key that Clerk has verified as valid.
type APIKey struct {
	// ID is the key's id (ak_…), not its secret.
	ID string
	// Subject is the user (user_…) or organization (org_…) the key belongs
	// to.
	Subject string
	// Scopes are what the key's creator granted it.
	Scopes []string
	// Claims are the key's custom claims as JSON; nil if it has none.
	Claims json.RawMessage
	// ExpiresAt is zero for a key that does not expire.
	ExpiresAt time.Time
}

// OAuthToken is an opaque OAuth access token that Clerk has verified as
// valid.
type OAuthToken struct {
	// ID is the token's id (oat_…), not the token itself.
	ID string
	// ClientID is the OAuth application the token was issued to.
	ClientID string
	// Subject is the user the application acts for (user_…).
	Subject string
	// Scopes are what the user granted the application.
	Scopes []string
	// Audience is the token's aud, when Clerk reports one.
	Audience []string
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
}

// VerifyMachineToken asks Clerk whether token is a valid machine token
// (POST {APIURL}/m2m_tokens/verify, through the SDK's m2m_token client).
// Errors are described at verifyOpaque; none contains the token.
func (c *Client) VerifyMachineToken(ctx context.Context, token string) (*MachineToken, error) {
	var mt *clerksdk.M2MToken
	expiresAt, err := verifyOpaque(ctx, "machine token", token, func(ctx context.Context) (CredentialState, error) {
		var err error
		if mt, err = c.m2m.Verify(ctx, &m2m_token.VerifyParams{Token: token}); err != nil {
			return CredentialState{}, err
		}
		return CredentialState{ID: mt.ID, Revoked: mt.Revoked, Expired: mt.Expired, Expiration: mt.Expiration}, nil
	})
	if err != nil {
		return nil, err
	}
	return &MachineToken{
		ID:        mt.ID,
		Subject:   mt.Subject,
		Claims:    nonNull(mt.Claims),
		Scopes:    mt.Scopes,
		ExpiresAt: expiresAt,
	}, nil
}

// VerifyAPIKey asks Clerk whether secret is a valid API key
// (POST {APIURL}/api_keys/verify {"secret": …}). Errors are described at
// verifyOpaque; none contains the secret.
func (c *Client) VerifyAPIKey(ctx context.Context, secret string) (*APIKey, error) {
	k := &APIKeyObject{}
	expiresAt, err := verifyOpaque(ctx, "API key", secret, c.postVerify(apiKeysVerifyPath, &VerifyAPIKeyParams{Secret: secret}, k))
	if err != nil {
		return nil, err
	}
	return &APIKey{
		ID:        k.ID,
		Subject:   k.Subject,
		Scopes:    k.Scopes,
		Claims:    nonNull(k.Claims),
		ExpiresAt: expiresAt,
	}, nil
}

// VerifyOAuthToken asks Clerk whether token is a valid opaque OAuth access
// token (POST {APIURL}/oauth_applications/access_tokens/verify
// {"access_token": …}). Errors are described at verifyOpaque; none contains
// the token.
func (c *Client) VerifyOAuthToken(ctx context.Context, token string) (*OAuthToken, error) {
	o := &OAuthTokenObject{}
	expiresAt, err := verifyOpaque(ctx, "OAuth token", token, c.postVerify(oauthTokensVerifyPath, &VerifyOAuthTokenParams{AccessToken: token}, o))
	if err != nil {
		return nil, err
	}
	return &OAuthToken{
		ID:        o.ID,
		ClientID:  o.ClientID,
		Subject:   o.Subject,
		Scopes:    o.Scopes,
		Audience:  o.Audience,
		ExpiresAt: expiresAt,
	}, nil
}

// verifyAnswer is the answer of a verify endpoint the SDK has no client for
// (*APIKeyObject, *OAuthTokenObject), as postVerify decodes it.
type verifyAnswer interface {
	clerksdk.ResponseReader
	state() CredentialState
}

// postVerify returns verifyOpaque's request to a verify endpoint the SDK has
// no client for: POST params to path, through the SDK's request machinery,
// decoding Clerk's answer into answer.
func (c *Client) postVerify(path string, params clerksdk.Params, answer verifyAnswer) func(context.Context) (CredentialState, error) {
	return func(ctx context.Context) (CredentialState, error) {
		req := clerksdk.NewAPIRequest(http.MethodPost, path)
		req.SetParams(params)
		err := c.backend.Call(ctx, req, answer)
		return answer.state(), err
	}
}

// verifyOpaque asks Clerk whether credential, an opaque credential of the
// kind what names ("API key"), is valid: ask makes the one request to the
// verify endpoint and returns the state Clerk's answer gives. It returns the
// credential's expiry, zero for one that does not expire. Its errors:
//
//   - ErrInvalidToken: credential is empty, or Clerk answered any 4xx
//     except its refusal of the secret key itself (401 or 403 with code
//     authentication_invalid, or without a Clerk error body): a
//     credential's refusal is cached, and a bad secret key must not pass
//     for every credential being refused;
//   - ErrTokenRevoked or ErrTokenExpired: Clerk answered 200 but with the
//     flag set (or an expiration already past);
//   - ErrUnavailable: no answer (network error, timeout), 429 or 5xx;
//     worth retrying, never a verdict on the credential;
//   - anything else — the secret key refused, or a 2xx that does not
//     decode — is a fault on Gatehouse's side.
//
// The SDK's error for a body that is not Clerk's error shape is the body
// itself, which might echo the credential; call keeps only the status.
func verifyOpaque(ctx context.Context, what, credential string, ask func(context.Context) (CredentialState, error)) (time.Time, error) {
	if credential == "" {
		return time.Time{}, fmt.Errorf("clerk: verify %s: empty: %w", what, ErrInvalidToken)
	}
	var state CredentialState
	var code string
	status, err := call(ctx, func(ctx context.Context) (err error) {
		state, err = ask(ctx)
		code = apiCode(err)
		return err
	})
	switch {
	case err == nil:
		return state.live(what)
	case transient(status):
		return time.Time{}, fmt.Errorf("clerk: verify %s: %w: %w", what, ErrUnavailable, err)
	case status < 300:
		// A decode error; its text describes JSON syntax, not the token.
		return time.Time{}, fmt.Errorf("clerk: verify %s: decode: %w", what, err)
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) &&
		(code == "" || code == secretKeyRefused):
		return time.Time{}, fmt.Errorf("clerk: verify %s: the secret key was refused: %w", what, err)
	default:
		return time.Time{}, fmt.Errorf("clerk: verify %s: %w: %w", what, err, ErrInvalidToken)
	}
}

// live turns Clerk's 200 answer about a credential into its expiry, or
// ErrTokenRevoked or ErrTokenExpired when Clerk answered 200 but with the
// flags set (or an expiration already past).
func (s CredentialState) live(what string) (time.Time, error) {
	expiresAt := unixTime(s.Expiration)
	switch {
	case s.Revoked:
		return time.Time{}, fmt.Errorf("clerk: verify %s %s: %w", what, s.ID, ErrTokenRevoked)
	case s.Expired, !expiresAt.IsZero() && !time.Now().Before(expiresAt):
		return time.Time{}, fmt.Errorf("clerk: verify %s %s: %w", what, s.ID, ErrTokenExpired)
	}
	return expiresAt, nil
}

// nonNull returns raw, or nil for an absent or JSON null value.
func nonNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	return raw
}

// unixTime reads a Clerk timestamp. The Backend API uses Unix milliseconds,
// but the M2M docs and SDK fixtures show seconds; any value below 1e12
// (2001 in milliseconds, the year 33658 in seconds) is taken as seconds.
func unixTime(v *int64) time.Time {
	switch {
	case v == nil || *v <= 0:
		return time.Time{}
	case *v < 1e12:
		return time.Unix(*v, 0).UTC()
	default:
		return time.UnixMilli(*v).UTC()
	}
}
