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
	josejwt "github.com/go-jose/go-jose/v3/jwt"
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
// Errors are described at verifyCall; none contains the token.
func (c *Client) VerifyMachineToken(ctx context.Context, token string) (*MachineToken, error) {
	const what = "machine token"
	if token == "" {
		return nil, fmt.Errorf("clerk: verify %s: empty: %w", what, ErrInvalidToken)
	}
	var mt *clerksdk.M2MToken
	err := verifyCall(ctx, what, func(ctx context.Context) (err error) {
		mt, err = c.m2m.Verify(ctx, &m2m_token.VerifyParams{Token: token})
		return err
	})
	if err != nil {
		return nil, err
	}
	expiresAt, err := live(what, mt.ID, mt.Revoked, mt.Expired, mt.Expiration)
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

// apiKeyJSON is Clerk's API key object, as POST /api_keys/verify answers.
type apiKeyJSON struct {
	clerksdk.APIResource
	Object           string          `json:"object"`
	ID               string          `json:"id"`
	Type             string          `json:"type"`
	Subject          string          `json:"subject"`
	Name             string          `json:"name"`
	Description      *string         `json:"description"`
	Claims           json.RawMessage `json:"claims"`
	Scopes           []string        `json:"scopes"`
	Revoked          bool            `json:"revoked"`
	RevocationReason *string         `json:"revocation_reason"`
	Expired          bool            `json:"expired"`
	Expiration       *int64          `json:"expiration"`
	CreatedBy        *string         `json:"created_by"`
	LastUsedAt       *int64          `json:"last_used_at"`
	CreatedAt        int64           `json:"created_at"`
	UpdatedAt        int64           `json:"updated_at"`
}

type verifySecretParams struct {
	clerksdk.APIParams
	Secret string `json:"secret"`
}

// VerifyAPIKey asks Clerk whether secret is a valid API key
// (POST {APIURL}/api_keys/verify {"secret": …}). Errors are described at
// verifyCall; none contains the secret.
func (c *Client) VerifyAPIKey(ctx context.Context, secret string) (*APIKey, error) {
	const what = "API key"
	if secret == "" {
		return nil, fmt.Errorf("clerk: verify %s: empty: %w", what, ErrInvalidToken)
	}
	resp := &apiKeyJSON{}
	err := verifyCall(ctx, what, func(ctx context.Context) error {
		req := clerksdk.NewAPIRequest(http.MethodPost, apiKeysVerifyPath)
		req.SetParams(&verifySecretParams{Secret: secret})
		return c.backend.Call(ctx, req, resp)
	})
	if err != nil {
		return nil, err
	}
	expiresAt, err := live(what, resp.ID, resp.Revoked, resp.Expired, resp.Expiration)
	if err != nil {
		return nil, err
	}
	return &APIKey{
		ID:        resp.ID,
		Subject:   resp.Subject,
		Scopes:    resp.Scopes,
		Claims:    nonNull(resp.Claims),
		ExpiresAt: expiresAt,
	}, nil
}

// oauthTokenJSON is Clerk's OAuth access token object, as
// POST /oauth_applications/access_tokens/verify answers.
type oauthTokenJSON struct {
	clerksdk.APIResource
	Object           string           `json:"object"`
	ID               string           `json:"id"`
	ClientID         string           `json:"client_id"`
	Subject          string           `json:"subject"`
	Scopes           []string         `json:"scopes"`
	Audience         josejwt.Audience `json:"aud"`
	Revoked          bool             `json:"revoked"`
	RevocationReason *string          `json:"revocation_reason"`
	Expired          bool             `json:"expired"`
	Expiration       *int64           `json:"expiration"`
	CreatedAt        int64            `json:"created_at"`
	UpdatedAt        int64            `json:"updated_at"`
}

type verifyAccessTokenParams struct {
	clerksdk.APIParams
	AccessToken string `json:"access_token"`
}

// VerifyOAuthToken asks Clerk whether token is a valid opaque OAuth access
// token (POST {APIURL}/oauth_applications/access_tokens/verify
// {"access_token": …}). Errors are described at verifyCall; none contains
// the token.
func (c *Client) VerifyOAuthToken(ctx context.Context, token string) (*OAuthToken, error) {
	const what = "OAuth token"
	if token == "" {
		return nil, fmt.Errorf("clerk: verify %s: empty: %w", what, ErrInvalidToken)
	}
	resp := &oauthTokenJSON{}
	err := verifyCall(ctx, what, func(ctx context.Context) error {
		req := clerksdk.NewAPIRequest(http.MethodPost, oauthTokensVerifyPath)
		req.SetParams(&verifyAccessTokenParams{AccessToken: token})
		return c.backend.Call(ctx, req, resp)
	})
	if err != nil {
		return nil, err
	}
	expiresAt, err := live(what, resp.ID, resp.Revoked, resp.Expired, resp.Expiration)
	if err != nil {
		return nil, err
	}
	return &OAuthToken{
		ID:        resp.ID,
		ClientID:  resp.ClientID,
		Subject:   resp.Subject,
		Scopes:    resp.Scopes,
		Audience:  resp.Audience,
		ExpiresAt: expiresAt,
	}, nil
}

// verifyCall runs one request to a verify endpoint and sorts its failure:
//
//   - ErrUnavailable: no answer (network error, timeout), 429 or 5xx;
//     worth retrying, never a verdict on the credential;
//   - ErrInvalidToken: any other 4xx, except Clerk's refusal of the secret
//     key itself (401 or 403 with code authentication_invalid, or without
//     a Clerk error body): a credential's refusal is cached, and a bad
//     secret key must not pass for every credential being refused;
//   - anything else — the secret key refused, or a 2xx that does not
//     decode — is a fault on Gatehouse's side.
//
// The SDK's error for a body that is not Clerk's error shape is the body
// itself, which might echo the credential; call keeps only the status.
func verifyCall(ctx context.Context, what string, do func(context.Context) error) error {
	var code string
	status, err := call(ctx, func(ctx context.Context) error {
		err := do(ctx)
		code = apiCode(err)
		return err
	})
	switch {
	case err == nil:
		return nil
	case transient(status):
		return fmt.Errorf("clerk: verify %s: %w: %w", what, ErrUnavailable, err)
	case status < 300:
		// A decode error; its text describes JSON syntax, not the token.
		return fmt.Errorf("clerk: verify %s: decode: %w", what, err)
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) &&
		(code == "" || code == secretKeyRefused):
		return fmt.Errorf("clerk: verify %s: the secret key was refused: %w", what, err)
	default:
		return fmt.Errorf("clerk: verify %s: %w: %w", what, err, ErrInvalidToken)
	}
}

// live turns Clerk's 200 answer about a credential into its expiry, or
// ErrTokenRevoked or ErrTokenExpired when Clerk answered 200 but with the
// flags set (or an expiration already past).
func live(what, id string, revoked, expired bool, expiration *int64) (time.Time, error) {
	expiresAt := unixTime(expiration)
	switch {
	case revoked:
		return time.Time{}, fmt.Errorf("clerk: verify %s %s: %w", what, id, ErrTokenRevoked)
	case expired, !expiresAt.IsZero() && !time.Now().Before(expiresAt):
		return time.Time{}, fmt.Errorf("clerk: verify %s %s: %w", what, id, ErrTokenExpired)
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
