package clerkemu

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// OAuthToken describes an OAuth access token to mint: what an OAuth
// application receives from Clerk when a user grants it access.
type OAuthToken struct {
	// UserID is the user the application acts for. Required.
	UserID string
	// ClientID is the OAuth application's client id; default
	// "client_" + random.
	ClientID string
	// Scopes are what the user granted, e.g. "org:projects:read".
	Scopes []string
	// Audience is the token's aud; none by default.
	Audience []string
	// TTL is the token's lifetime: default one hour; a negative TTL mints a
	// token that has already expired.
	TTL time.Duration
	// JWT mints a JWT (header typ at+jwt, RFC 9068) signed with the
	// instance key instead of an opaque "oat_" token. It is verified with
	// the JWKS, not by the emulator, so it cannot be revoked.
	JWT bool
	// Forge alters a JWT (tests).
	Forge Forge
}

type oauthToken struct {
	obj     clerk.OAuthTokenObject // as verify answers while valid
	expires time.Time
}

func (t *oauthToken) verified(now time.Time) (obj any, revoked, expired bool) {
	o := t.obj
	o.Expired = expiredAt(t.expires, now)
	return o, o.Revoked, o.Expired
}

func (t *oauthToken) revoke(now time.Time) {
	markRevoked(&t.obj.Revoked, &t.obj.RevocationReason, &t.obj.UpdatedAt, now)
}

// MintOAuthToken mints an OAuth access token for t.UserID: opaque ("oat_" +
// 32 random characters, accepted by POST
// /v1/oauth_applications/access_tokens/verify until it expires or is
// revoked) or, with t.JWT, a JWT.
func (e *Emulator) MintOAuthToken(t OAuthToken) (string, error) {
	if !viewer.ValidUserID(t.UserID) {
		return "", fmt.Errorf("clerkemu: OAuth token user %q: want user_…", t.UserID)
	}
	if t.ClientID == "" {
		t.ClientID = "client_" + randomHex(12)
	}
	if t.Scopes == nil {
		t.Scopes = []string{}
	}
	if t.TTL == 0 {
		t.TTL = time.Hour
	}
	now := time.Now()
	id := "oat_" + randomHex(16)
	if t.JWT {
		claims := map[string]any{
			"iss":       e.issuer,
			"sub":       t.UserID,
			"client_id": t.ClientID,
			"jti":       id,
			"scope":     strings.Join(t.Scopes, " "),
			"iat":       now.Unix(),
			"nbf":       now.Add(-5 * time.Second).Unix(),
			"exp":       now.Add(t.TTL).Unix(),
		}
		if len(t.Audience) > 0 {
			claims["aud"] = t.Audience
		}
		return e.forgedJWT(t.Forge, "at+jwt", "", claims)
	}
	tok := &oauthToken{obj: clerk.OAuthTokenObject{
		Object:          "clerk_idp_oauth_access_token",
		CredentialState: clerk.CredentialState{ID: id},
		ClientID:        t.ClientID,
		Subject:         t.UserID,
		Scopes:          t.Scopes,
		Audience:        t.Audience,
		CreatedAt:       now.UnixMilli(),
		UpdatedAt:       now.UnixMilli(),
	}, expires: now.Add(t.TTL)}
	exp := tok.expires.UnixMilli()
	tok.obj.Expiration = &exp
	s := secret("oat_")
	e.mu.Lock()
	e.oauthTokens[s] = tok
	e.mu.Unlock()
	return s, nil
}

// RevokeOAuthToken revokes an opaque token minted by MintOAuthToken. It
// reports whether the token was known.
func (e *Emulator) RevokeOAuthToken(token string) bool {
	return revokeIssued(e, e.oauthTokens, token)
}

// serveMintOAuthToken is POST /v1/emulator/oauth_access_tokens, the
// emulator's own stand-in for an OAuth application completing Clerk's
// authorization flow (which runs on the Frontend API, not the Backend API):
// `gatehouse token --oauth` asks a running `gatehouse dev` for a token here.
func (e *Emulator) serveMintOAuthToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID                 string   `json:"user_id"`
		ClientID               string   `json:"client_id"`
		Scopes                 []string `json:"scopes"`
		Audience               []string `json:"aud"`
		SecondsUntilExpiration *int64   `json:"seconds_until_expiration"`
		TokenFormat            string   `json:"token_format"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	t := OAuthToken{UserID: req.UserID, ClientID: req.ClientID, Scopes: req.Scopes, Audience: req.Audience}
	if req.SecondsUntilExpiration != nil {
		t.TTL = time.Duration(*req.SecondsUntilExpiration) * time.Second
	}
	switch req.TokenFormat {
	case "", "opaque":
	case "jwt":
		t.JWT = true
	default:
		writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "is invalid", "token_format must be opaque or jwt.")
		return
	}
	token, err := e.MintOAuthToken(t)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "form_param_format_invalid", "is invalid", "user_id must be a user id.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"object": "oauth_access_token", "token": token})
}

// serveVerifyOAuthToken is POST /v1/oauth_applications/access_tokens/verify
// {"access_token": …}.
func (e *Emulator) serveVerifyOAuthToken(w http.ResponseWriter, r *http.Request) {
	e.serveVerify(w, r, &e.verify.oauth, func(reject int) {
		var req clerk.VerifyOAuthTokenParams
		if readJSON(w, r, &req) {
			answerVerify(e, w, reject, "OAuth token", e.oauthTokens, req.AccessToken)
		}
	})
}
