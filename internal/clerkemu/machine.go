package clerkemu

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
)

// Machine describes a machine (M2M) token to mint.
type Machine struct {
	// ID is the machine the token is issued to, the token's subject;
	// default "mch_" + random.
	ID string
	// Claims are the token's custom claims, e.g. {"tenants": [...]}.
	Claims map[string]any
	// Scopes are the machines this one may call.
	Scopes []string
	// TTL is the token's lifetime: 0 never expires (a JWT: one hour, as a
	// JWT needs an exp), and a negative TTL mints a token that has already
	// expired.
	TTL time.Duration
	// JWT mints a JWT, as Clerk does with token_format "jwt": signed with
	// the instance key, header cat cl_B7d4PD333AAA, sub the machine, jti the
	// token id, custom claims at the top level. It is verified with the
	// JWKS, not by the emulator, so it cannot be revoked.
	JWT bool
	// Forge alters a JWT (tests).
	Forge Forge
}

type machineToken struct {
	resp    clerksdk.M2MToken // as verify answers while valid
	expires time.Time         // zero: never
}

func (t *machineToken) verified(now time.Time) (obj any, revoked, expired bool) {
	resp := t.resp
	resp.Expired = expiredAt(t.expires, now)
	t.resp.LastUsedAt = clerksdk.Int64(now.UnixMilli())
	return resp, resp.Revoked, resp.Expired
}

func (t *machineToken) revoke(now time.Time) {
	markRevoked(&t.resp.Revoked, &t.resp.RevocationReason, &t.resp.UpdatedAt, now)
}

// MintMachineToken mints a machine token: opaque ("mt_" + 32 random
// characters), which POST /v1/m2m_tokens/verify accepts until it expires or
// is revoked, or, with m.JWT, a JWT.
func (e *Emulator) MintMachineToken(m Machine) (string, error) {
	if m.ID == "" {
		m.ID = "mch_" + randomHex(12)
	}
	if m.JWT {
		token, _, err := e.machineJWT(m)
		return token, err
	}
	claims := json.RawMessage("null")
	if m.Claims != nil {
		var err error
		if claims, err = json.Marshal(m.Claims); err != nil {
			return "", fmt.Errorf("clerkemu: machine token claims: %w", err)
		}
	}
	mt := e.storeMachineToken(m.ID, claims, m.Scopes, m.TTL)
	return mt.Token, nil
}

// machineJWT returns a machine JWT for m and its token id (jti).
func (e *Emulator) machineJWT(m Machine) (token, id string, err error) {
	now := time.Now()
	ttl := m.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	claims := maps.Clone(m.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["iss"] = e.issuer
	claims["sub"] = m.ID
	id = "mt_" + randomHex(16)
	claims["jti"] = id
	claims["iat"] = now.Unix()
	claims["nbf"] = now.Add(-5 * time.Second).Unix()
	claims["exp"] = now.Add(ttl).Unix()
	if len(m.Scopes) > 0 {
		claims["scopes"] = strings.Join(m.Scopes, " ")
	}
	token, err = e.forgedJWT(m.Forge, "JWT", CategoryMachine, claims)
	return token, id, err
}

// forgedJWT signs claims with header typ and cat as f alters them.
func (e *Emulator) forgedJWT(f Forge, typ, cat string, claims map[string]any) (string, error) {
	if f.Issuer != "" {
		claims["iss"] = f.Issuer
	}
	if f.OmitExp {
		delete(claims, "exp")
	}
	maps.Copy(claims, f.Extra)
	if f.Type != "" {
		typ = f.Type
	}
	if f.Category != "" {
		cat = f.Category
	}
	key, kid := f.signer(e)
	token, err := sign(key, kid, typ, cat, claims)
	if err != nil {
		return "", fmt.Errorf("clerkemu: mint JWT: %w", err)
	}
	return token, nil
}

func (e *Emulator) storeMachineToken(subject string, claims json.RawMessage, scopes []string, ttl time.Duration) clerksdk.M2MTokenWithToken {
	now := time.Now()
	if scopes == nil {
		scopes = []string{}
	}
	t := &machineToken{resp: clerksdk.M2MToken{
		Object:    "machine_to_machine_token",
		ID:        "mt_" + randomHex(16),
		Subject:   subject,
		Claims:    claims,
		Scopes:    scopes,
		CreatedAt: now.UnixMilli(),
		UpdatedAt: now.UnixMilli(),
	}}
	if ttl != 0 {
		t.expires = now.Add(ttl)
		t.resp.Expiration = clerksdk.Int64(t.expires.UnixMilli())
	}
	token := secret("mt_")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens[token] = t
	return clerksdk.M2MTokenWithToken{M2MToken: t.resp, Token: token}
}

// RevokeMachineToken revokes an opaque token minted by MintMachineToken or
// created over HTTP. It reports whether the token was known.
func (e *Emulator) RevokeMachineToken(token string) bool {
	return revokeIssued(e, e.tokens, token)
}

// serveCreateMachineToken is POST /v1/m2m_tokens. With "token_format":
// "jwt" the token is a JWT, as Clerk issues it.
func (e *Emulator) serveCreateMachineToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SecondsUntilExpiration *int64          `json:"seconds_until_expiration"`
		Claims                 json.RawMessage `json:"claims"`
		TokenFormat            string          `json:"token_format"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var ttl time.Duration
	if req.SecondsUntilExpiration != nil {
		ttl = time.Duration(*req.SecondsUntilExpiration) * time.Second
	}
	if req.Claims == nil {
		req.Claims = json.RawMessage("null")
	}
	switch req.TokenFormat {
	case "", "opaque":
		writeJSON(w, http.StatusOK, e.storeMachineToken(e.machineID, req.Claims, nil, ttl))
	case "jwt":
		var claims map[string]any
		if err := json.Unmarshal(req.Claims, &claims); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "form_param_format_invalid", "is invalid", "claims must be an object.")
			return
		}
		token, id, err := e.machineJWT(Machine{ID: e.machineID, Claims: claims, TTL: ttl})
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal_clerk_error", "Something went wrong", err.Error())
			return
		}
		now := time.Now()
		resp := clerksdk.M2MTokenWithToken{M2MToken: clerksdk.M2MToken{
			Object: "machine_to_machine_token", ID: id, Subject: e.machineID,
			Claims: req.Claims, Scopes: []string{}, CreatedAt: now.UnixMilli(), UpdatedAt: now.UnixMilli(),
		}, Token: token}
		writeJSON(w, http.StatusOK, resp)
	default:
		writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "is invalid", "token_format must be opaque or jwt.")
	}
}

func (e *Emulator) serveVerifyMachineToken(w http.ResponseWriter, r *http.Request) {
	e.serveVerify(w, r, &e.verify.machine, func(reject int) {
		var req struct {
			Token string `json:"token"`
		}
		if readJSON(w, r, &req) {
			answerVerify(e, w, reject, "M2M token", e.tokens, req.Token)
		}
	})
}
