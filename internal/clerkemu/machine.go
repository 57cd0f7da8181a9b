package clerkemu

import (
	"encoding/json"
	"fmt"
	"net/http"
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
	// TTL is the token's lifetime: 0 never expires, and a negative TTL
	// mints a token that has already expired.
	TTL time.Duration
}

type machineToken struct {
	resp    clerksdk.M2MToken // as verify answers while valid
	expires time.Time         // zero: never
}

// MintMachineToken mints an opaque machine token ("mt_" + 32 random
// characters) that POST /v1/m2m_tokens/verify accepts until it expires or
// is revoked.
func (e *Emulator) MintMachineToken(m Machine) (string, error) {
	if m.ID == "" {
		m.ID = "mch_" + randomHex(12)
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
	token := "mt_" + randomHex(16)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens[token] = t
	return clerksdk.M2MTokenWithToken{M2MToken: t.resp, Token: token}
}

// RevokeMachineToken revokes a token minted by MintMachineToken or created
// over HTTP. It reports whether the token was known.
func (e *Emulator) RevokeMachineToken(token string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[token]
	if ok && !t.resp.Revoked {
		t.resp.Revoked = true
		t.resp.RevocationReason = clerksdk.String("revoked by test")
		t.resp.UpdatedAt = time.Now().UnixMilli()
	}
	return ok
}

// MachineVerifies counts authorized POST /v1/m2m_tokens/verify requests.
func (e *Emulator) MachineVerifies() int64 { return e.machineVerifies.Load() }

// SetMachineRejectStatus chooses how verify answers a revoked or expired
// token: 0 (the default) answers 200 with "revoked" or "expired" set;
// a 4xx status answers that status with a Clerk error body instead. Clerk
// has been seen to do both.
func (e *Emulator) SetMachineRejectStatus(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejectCode = status
}

func (e *Emulator) serveCreateMachineToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SecondsUntilExpiration *int64          `json:"seconds_until_expiration"`
		Claims                 json.RawMessage `json:"claims"`
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
	writeJSON(w, http.StatusOK, e.storeMachineToken(e.machineID, req.Claims, nil, ttl))
}

func (e *Emulator) serveVerifyMachineToken(w http.ResponseWriter, r *http.Request) {
	e.machineVerifies.Add(1)
	var req struct {
		Token string `json:"token"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	e.mu.Lock()
	t, ok := e.tokens[req.Token]
	var resp clerksdk.M2MToken
	if ok {
		resp = t.resp
		resp.Expired = !t.expires.IsZero() && !time.Now().Before(t.expires)
		now := time.Now().UnixMilli()
		t.resp.LastUsedAt = &now
	}
	reject := e.rejectCode
	e.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "resource_not_found", "not found", "The M2M token was not found.")
	case reject != 0 && resp.Revoked:
		writeError(w, reject, "token_revoked", "revoked", "The M2M token has been revoked.")
	case reject != 0 && resp.Expired:
		writeError(w, reject, "token_expired", "expired", "The M2M token has expired.")
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}
