package clerkemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// APIKey describes an API key to mint.
type APIKey struct {
	// Subject is the user (user_…) or organization (org_…) the key belongs
	// to. Required.
	Subject string
	// Name defaults to "dev key".
	Name string
	// Scopes are what the key may do, e.g. "org:projects:read".
	Scopes []string
	// Claims are the key's custom claims.
	Claims map[string]any
	// TTL is the key's lifetime: 0 never expires, and a negative TTL mints
	// a key that has already expired.
	TTL time.Duration
}

// createdAPIKey is POST /v1/api_keys's answer: the key's object and, this
// once, its secret.
type createdAPIKey struct {
	clerk.APIKeyObject
	Secret string `json:"secret"`
}

type apiKey struct {
	obj     clerk.APIKeyObject // as verify answers while valid
	expires time.Time          // zero: never
}

func (k *apiKey) verified(now time.Time) (obj any, revoked, expired bool) {
	o := k.obj
	o.Expired = expiredAt(k.expires, now)
	k.obj.LastUsedAt = clerksdk.Int64(now.UnixMilli())
	return o, o.Revoked, o.Expired
}

func (k *apiKey) revoke(now time.Time) {
	markRevoked(&k.obj.Revoked, &k.obj.RevocationReason, &k.obj.UpdatedAt, now)
}

// MintAPIKey mints an API key ("ak_" + 32 random characters) that POST
// /v1/api_keys/verify accepts until it expires or is revoked.
func (e *Emulator) MintAPIKey(k APIKey) (string, error) {
	obj, err := e.storeAPIKey(k)
	if err != nil {
		return "", err
	}
	return obj.Secret, nil
}

func (e *Emulator) storeAPIKey(k APIKey) (createdAPIKey, error) {
	if !viewer.ValidTenantID(k.Subject) {
		return createdAPIKey{}, fmt.Errorf("clerkemu: API key subject %q: want user_… or org_…", k.Subject)
	}
	claims := json.RawMessage("null")
	if k.Claims != nil {
		var err error
		if claims, err = json.Marshal(k.Claims); err != nil {
			return createdAPIKey{}, fmt.Errorf("clerkemu: API key claims: %w", err)
		}
	}
	if k.Name == "" {
		k.Name = "dev key"
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	now := time.Now()
	key := &apiKey{obj: clerk.APIKeyObject{
		Object:          "api_key",
		CredentialState: clerk.CredentialState{ID: "ak_" + randomHex(16)},
		Type:            "api_key",
		Name:            k.Name,
		Subject:         k.Subject,
		Claims:          claims,
		Scopes:          k.Scopes,
		CreatedAt:       now.UnixMilli(),
		UpdatedAt:       now.UnixMilli(),
	}}
	if k.TTL != 0 {
		key.expires = now.Add(k.TTL)
		exp := key.expires.UnixMilli()
		key.obj.Expiration = &exp
	}
	s := secret("ak_")
	e.mu.Lock()
	e.apiKeys[s] = key
	e.mu.Unlock()
	return createdAPIKey{APIKeyObject: key.obj, Secret: s}, nil
}

// RevokeAPIKey revokes a key minted by MintAPIKey or created over HTTP. It
// reports whether the key was known.
func (e *Emulator) RevokeAPIKey(secret string) bool {
	return revokeIssued(e, e.apiKeys, secret)
}

// serveCreateAPIKey is POST /v1/api_keys.
func (e *Emulator) serveCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name                   string         `json:"name"`
		Subject                string         `json:"subject"`
		Scopes                 []string       `json:"scopes"`
		Claims                 map[string]any `json:"claims"`
		SecondsUntilExpiration *int64         `json:"seconds_until_expiration"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var ttl time.Duration
	if req.SecondsUntilExpiration != nil {
		ttl = time.Duration(*req.SecondsUntilExpiration) * time.Second
	}
	obj, err := e.storeAPIKey(APIKey{Subject: req.Subject, Name: req.Name, Scopes: req.Scopes, Claims: req.Claims, TTL: ttl})
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "form_param_format_invalid", "is invalid", "subject must be a user or organization id.")
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// serveVerifyAPIKey is POST /v1/api_keys/verify {"secret": …}.
func (e *Emulator) serveVerifyAPIKey(w http.ResponseWriter, r *http.Request) {
	e.serveVerify(w, r, &e.verify.apiKey, func(reject int) {
		var req clerk.VerifyAPIKeyParams
		if readJSON(w, r, &req) {
			answerVerify(e, w, reject, "API key", e.apiKeys, req.Secret)
		}
	})
}
