package clerkemu

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
)

// Forge alters a minted machine or OAuth JWT so that a verifier must refuse
// it, or route it elsewhere. The zero value mints what Clerk issues.
type Forge struct {
	// Category replaces the "cat" header: "-" omits it.
	Category string
	// Type replaces the "typ" header.
	Type string
	// Issuer replaces the emulator's iss.
	Issuer string
	// OmitExp mints a token without exp.
	OmitExp bool
	// KeyID replaces the "kid" header.
	KeyID string
	// SigningKey signs instead of the emulator's key (the kid stays the
	// emulator's unless KeyID is set).
	SigningKey *rsa.PrivateKey
	// Extra claims are added last, overriding any other.
	Extra map[string]any
}

// signer returns the key and kid a forged token is signed with.
func (f Forge) signer(e *Emulator) (*rsa.PrivateKey, string) {
	s := e.signer()
	key, kid := s.key, s.kid
	if f.SigningKey != nil {
		key = f.SigningKey
	}
	if f.KeyID != "" {
		kid = f.KeyID
	}
	return key, kid
}

// verifyFaults is the fault injection and the counters shared by the three
// verify endpoints (m2m_tokens, api_keys, oauth access tokens).
type verifyFaults struct {
	mu     sync.Mutex
	status int           // answer every verify with this status (0: normally)
	reject int           // answer a revoked or expired credential with this status (0: 200 with the flags)
	hold   chan struct{} // while not nil, verify requests wait for it to close

	machine, apiKey, oauth atomic.Int64 // requests per endpoint
	unknown                atomic.Int64 // answered: not a credential the emulator issued
	inFlight, canceled     atomic.Int64
}

// SetVerifyStatus makes every verify endpoint (machine tokens, API keys,
// OAuth tokens) answer status with a Clerk error body — 503, 429 … — for
// fault injection; 0 restores normal answers.
func (e *Emulator) SetVerifyStatus(status int) {
	e.verify.mu.Lock()
	defer e.verify.mu.Unlock()
	e.verify.status = status
}

// SetRejectStatus chooses how the verify endpoints answer a revoked or
// expired credential: 0 (the default) answers 200 with "revoked" or
// "expired" set; a 4xx status answers that status with a Clerk error body
// instead. Clerk has been seen to do both.
func (e *Emulator) SetRejectStatus(status int) {
	e.verify.mu.Lock()
	defer e.verify.mu.Unlock()
	e.verify.reject = status
}

// HoldVerifies makes verify requests wait, once counted, until release is
// called or their client goes away (counted by VerifiesCanceled). It lets
// tests keep verifications in flight.
func (e *Emulator) HoldVerifies() (release func()) {
	hold := make(chan struct{})
	e.verify.mu.Lock()
	e.verify.hold = hold
	e.verify.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.verify.mu.Lock()
			if e.verify.hold == hold {
				e.verify.hold = nil
			}
			e.verify.mu.Unlock()
			close(hold)
		})
	}
}

// MachineVerifies counts authorized POST /v1/m2m_tokens/verify requests.
func (e *Emulator) MachineVerifies() int64 { return e.verify.machine.Load() }

// APIKeyVerifies counts authorized POST /v1/api_keys/verify requests.
func (e *Emulator) APIKeyVerifies() int64 { return e.verify.apiKey.Load() }

// OAuthVerifies counts authorized POST
// /v1/oauth_applications/access_tokens/verify requests.
func (e *Emulator) OAuthVerifies() int64 { return e.verify.oauth.Load() }

// Verifies counts requests to all three verify endpoints.
func (e *Emulator) Verifies() int64 {
	return e.MachineVerifies() + e.APIKeyVerifies() + e.OAuthVerifies()
}

// UnknownVerifies counts the verify requests, of any endpoint, answered 404
// because they named a credential the emulator never issued: an invented
// one, as opposed to one it issued that was revoked or expired.
func (e *Emulator) UnknownVerifies() int64 { return e.verify.unknown.Load() }

// VerifiesInFlight counts verify requests held by HoldVerifies now.
func (e *Emulator) VerifiesInFlight() int64 { return e.verify.inFlight.Load() }

// VerifiesCanceled counts held verify requests whose client went away
// before they were answered.
func (e *Emulator) VerifiesCanceled() int64 { return e.verify.canceled.Load() }

// serveVerify is the part every verify endpoint shares: it counts the
// request in counter, holds it while HoldVerifies says so, answers
// SetVerifyStatus's status if one is set, and otherwise lets answer answer,
// with the reject status SetRejectStatus chose.
func (e *Emulator) serveVerify(w http.ResponseWriter, r *http.Request, counter *atomic.Int64, answer func(reject int)) {
	counter.Add(1)
	// Read the body first: only then does net/http watch the connection
	// and cancel r's context when the client goes away.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request_body_too_large", "too large", "The request body is too large.")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	e.verify.mu.Lock()
	status, reject, hold := e.verify.status, e.verify.reject, e.verify.hold
	e.verify.mu.Unlock()
	if hold != nil {
		e.verify.inFlight.Add(1)
		select {
		case <-hold:
			e.verify.inFlight.Add(-1)
		case <-r.Context().Done():
			e.verify.inFlight.Add(-1)
			e.verify.canceled.Add(1)
			return
		}
	}
	switch {
	case status == http.StatusTooManyRequests:
		writeError(w, status, "too_many_requests", "Too many requests", "Too many requests, please try again later.")
	case status != 0:
		writeError(w, status, "internal_clerk_error", "Something went wrong", "There was an internal error on our servers.")
	default:
		answer(reject)
	}
}

// writeRefusal answers a verify of a credential that does not verify: 404
// for one Clerk does not know; for a revoked or expired one, 200 with the
// flags (resp) or, in reject mode, the reject status.
func writeRefusal(w http.ResponseWriter, reject int, known, revoked, expired bool, what string, resp any) {
	switch {
	case !known:
		writeError(w, http.StatusNotFound, "resource_not_found", "not found", "The "+what+" was not found.")
	case reject != 0 && revoked:
		writeError(w, reject, "token_revoked", "revoked", "The "+what+" has been revoked.")
	case reject != 0 && expired:
		writeError(w, reject, "token_expired", "expired", "The "+what+" has expired.")
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// issuedCredential is an opaque credential the emulator issued:
// *machineToken, *apiKey or *oauthToken. Its methods run under e.mu.
type issuedCredential interface {
	// verified returns Clerk's object for the credential as verify answers
	// it at now, and whether it is revoked or expired; it records the use
	// where Clerk's object has a last_used_at.
	verified(now time.Time) (obj any, revoked, expired bool)
	// revoke revokes the credential at now, as a test does, unless it
	// already is.
	revoke(now time.Time)
}

var (
	_ issuedCredential = (*machineToken)(nil)
	_ issuedCredential = (*apiKey)(nil)
	_ issuedCredential = (*oauthToken)(nil)
)

// answerVerify answers a verify of token, what kind issued holds: Clerk's
// object for it, or writeRefusal's refusal.
func answerVerify[C issuedCredential](e *Emulator, w http.ResponseWriter, reject int, what string, issued map[string]C, token string) {
	e.mu.Lock()
	c, ok := issued[token]
	var obj any
	var revoked, expired bool
	if ok {
		obj, revoked, expired = c.verified(time.Now())
	}
	e.mu.Unlock()
	if !ok {
		e.verify.unknown.Add(1)
	}
	writeRefusal(w, reject, ok, revoked, expired, what, obj)
}

// revokeIssued revokes token, looked up in issued, and reports whether it
// was known.
func revokeIssued[C issuedCredential](e *Emulator, issued map[string]C, token string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := issued[token]
	if ok {
		c.revoke(time.Now())
	}
	return ok
}

// markRevoked sets what revoking a credential sets in Clerk's object for it,
// unless it is revoked already.
func markRevoked(revoked *bool, reason **string, updatedAt *int64, now time.Time) {
	if !*revoked {
		*revoked, *reason = true, clerksdk.String("revoked by test")
		*updatedAt = now.UnixMilli()
	}
}

// expiredAt reports whether a credential that expires at expires (zero:
// never) has expired at now.
func expiredAt(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// secret returns prefix and a random base64url body of 32 characters, the
// shape of Clerk's opaque credentials.
func secret(prefix string) string {
	return prefix + base64.RawURLEncoding.EncodeToString(randomBytes(24))
}
