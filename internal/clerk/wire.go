package clerk

import (
	"encoding/json"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

// Clerk's JSON for the credentials clerk-sdk-go v2.4.2 has no types for:
// what the verify endpoints are asked and what they answer. The client
// decodes them and the emulator (internal/clerkemu) encodes them, so both
// speak one wire format. Machine tokens use the SDK's own M2MToken.

// CredentialState is what every verify endpoint answers about a credential,
// whatever its kind: its id, and whether it may still be used.
type CredentialState struct {
	ID               string  `json:"id"`
	Revoked          bool    `json:"revoked"`
	RevocationReason *string `json:"revocation_reason"`
	Expired          bool    `json:"expired"`
	// Expiration is a Unix time, in milliseconds or seconds (see unixTime);
	// nil for a credential that does not expire.
	Expiration *int64 `json:"expiration"`
}

// state is how postVerify reads the state embedded in an answer.
func (s CredentialState) state() CredentialState { return s }

// APIKeyObject is Clerk's API key object, as POST /api_keys/verify answers
// (and POST /api_keys, which adds the secret).
type APIKeyObject struct {
	clerksdk.APIResource
	Object string `json:"object"`
	CredentialState
	Type        string          `json:"type"`
	Subject     string          `json:"subject"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Claims      json.RawMessage `json:"claims"`
	Scopes      []string        `json:"scopes"`
	CreatedBy   *string         `json:"created_by"`
	LastUsedAt  *int64          `json:"last_used_at"`
	CreatedAt   int64           `json:"created_at"`
	UpdatedAt   int64           `json:"updated_at"`
}

// OAuthTokenObject is Clerk's OAuth access token object, as
// POST /oauth_applications/access_tokens/verify answers.
type OAuthTokenObject struct {
	clerksdk.APIResource
	Object string `json:"object"`
	CredentialState
	ClientID  string   `json:"client_id"`
	Subject   string   `json:"subject"`
	Scopes    []string `json:"scopes"`
	Audience  Audience `json:"aud,omitempty"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
}

// Audience is an aud value: read from one string or a list, as in a JWT,
// and written as a list.
type Audience []string

// UnmarshalJSON reads aud as go-jose reads a JWT's.
func (a *Audience) UnmarshalJSON(b []byte) error {
	return (*josejwt.Audience)(a).UnmarshalJSON(b)
}

// VerifyAPIKeyParams is the body of POST /api_keys/verify.
type VerifyAPIKeyParams struct {
	clerksdk.APIParams
	Secret string `json:"secret"`
}

// VerifyOAuthTokenParams is the body of
// POST /oauth_applications/access_tokens/verify.
type VerifyOAuthTokenParams struct {
	clerksdk.APIParams
	AccessToken string `json:"access_token"`
}
