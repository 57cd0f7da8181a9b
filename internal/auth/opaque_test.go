package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const listProjectsMethod = "/gatehouse.v1.ProjectService/ListProjects"

// authenticate calls Authenticate for ListProjects as a caller at addr
// presenting token in org_acme, for as long as ctx allows.
func authenticate(s *testServer, ctx context.Context, addr, token string) error {
	_, err := s.auth.Authenticate(incomingFrom(ctx, addr, AuthorizationKey, "Bearer "+token, TenantKey, orgAcme), listProjectsMethod)
	return err
}

// invented returns n distinct well-formed credentials Clerk never issued,
// of kind's prefix.
func invented(kind viewer.Credential, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%032d", prefixOf(kind), i)
	}
	return out
}

// waitFor polls cond, for what happens on the emulator's side of the
// network, for up to 3 s: far less than any timeout that could end a
// request to Clerk by itself (the verify timeout is a minute in the tests
// that wait for a cancellation, the HTTP client's 30 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRefusalsAreRemembered: the same bad credential presented 50 times at
// once, then 50 more, makes one request to Clerk; 30 s later, one more.
func TestRefusalsAreRemembered(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{roles: memberships})
	revokedKey := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser})
	e.emu.RevokeAPIKey(revokedKey)
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"unknown machine token", invented(viewer.CredentialM2M, 1)[0], ReasonRejected},
		{"unknown API key", invented(viewer.CredentialAPIKey, 1)[0], ReasonRejected},
		{"unknown OAuth token", invented(viewer.CredentialOAuth, 1)[0], ReasonRejected},
		{"revoked API key", revokedKey, ReasonRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.emu.Verifies()
			present := func() {
				var wg sync.WaitGroup
				for i := range 50 {
					wg.Go(func() {
						err := authenticate(s, t.Context(), fmt.Sprintf("10.1.0.%d", i), tt.token)
						wantAuthError(t, err, codes.Unauthenticated, tt.reason, tt.token)
					})
				}
				wg.Wait()
			}
			present()
			present()
			if got := e.emu.Verifies() - before; got != 1 {
				t.Errorf("100 presentations made %d requests to Clerk, want 1", got)
			}
			e.clock.Advance(29 * time.Second)
			present()
			if got := e.emu.Verifies() - before; got != 1 {
				t.Errorf("29 s later: %d requests, want still 1", got)
			}
			e.clock.Advance(time.Second)
			present()
			if got := e.emu.Verifies() - before; got != 2 {
				t.Errorf("30 s later: %d requests, want 2", got)
			}
		})
	}
}

// slowClerk is the Backend API answering after the clock has moved on by
// delay, as Clerk does when it is slow.
type slowClerk struct {
	BackendAPI
	clock *fakeClock
	delay time.Duration
}

func (c slowClerk) VerifyAPIKey(ctx context.Context, secret string) (*clerk.APIKey, error) {
	c.clock.Advance(c.delay)
	return c.BackendAPI.VerifyAPIKey(ctx, secret)
}

// TestAcceptanceCountsFromTheRequest: Clerk's answer is trusted for 30 s
// from when the request was sent, not from when the answer came, so a
// revoked credential is refused within 30 s of the request however slowly
// Clerk answered it.
func TestAcceptanceCountsFromTheRequest(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.opaque = NewOpaqueVerifier(OpaqueConfig{Clerk: slowClerk{e.client, e.clock, 20 * time.Second}, Now: e.clock.Now})
	s := startServer(t, e, serverOptions{roles: memberships})
	key := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser})
	if err := authenticate(s, t.Context(), "10.0.0.1", key); err != nil {
		t.Fatal(err)
	}
	e.emu.RevokeAPIKey(key)
	e.clock.Advance(9 * time.Second) // 29 s after the request
	if err := authenticate(s, t.Context(), "10.0.0.1", key); err != nil {
		t.Errorf("29 s after the request: %v, want the remembered answer", err)
	}
	e.clock.Advance(time.Second) // 30 s after the request, 10 s after the answer
	err := authenticate(s, t.Context(), "10.0.0.1", key)
	wantAuthError(t, err, codes.Unauthenticated, ReasonRevoked, key)
	if got := e.emu.APIKeyVerifies(); got != 2 {
		t.Errorf("%d requests to Clerk, want 2", got)
	}
}

// TestAcceptanceNeverOutlivesTheCredential: an accepted credential is not
// remembered past its own expiry.
func TestAcceptanceNeverOutlivesTheCredential(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{roles: memberships})
	key := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser, TTL: 10 * time.Second})
	if err := authenticate(s, t.Context(), "10.0.0.1", key); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(11 * time.Second) // the key was minted within a second of the clock's start
	authenticate(s, t.Context(), "10.0.0.1", key)
	if got := e.emu.APIKeyVerifies(); got != 2 {
		t.Errorf("%d requests to Clerk, want 2: the answer is not remembered past the key's expiry", got)
	}
}

// TestVerifyRateLimit: a caller's address may start burst requests to
// Clerk, then rate per second; beyond that it gets RESOURCE_EXHAUSTED with
// RetryInfo and no request is made. Other addresses, and credentials
// already verified, are not affected.
func TestVerifyRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{Burst: 5, Rate: 2}})
	s := startServer(t, e, serverOptions{roles: memberships})
	good := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser})
	if err := authenticate(s, t.Context(), "10.9.9.9", good); err != nil {
		t.Fatal(err)
	}
	flood := invented(viewer.CredentialAPIKey, 100)
	calls := func() int64 { return e.emu.Verifies() - 1 }

	for i, tok := range flood[:5] {
		err := authenticate(s, t.Context(), "10.0.0.1", tok)
		wantAuthError(t, err, codes.Unauthenticated, ReasonRejected, tok)
		if calls() != int64(i+1) {
			t.Fatalf("request %d: %d calls", i, calls())
		}
	}
	for _, tok := range flood[5:20] {
		err := authenticate(s, t.Context(), "10.0.0.1", tok)
		wantAuthError(t, err, codes.ResourceExhausted, ReasonRateLimited, tok)
		if d := retryDelay(err); d <= 0 || d > 500*time.Millisecond {
			t.Errorf("RetryInfo %v, want about 1/rate", d)
		}
	}
	if calls() != 5 {
		t.Errorf("over the burst: %d calls to Clerk, want 5", calls())
	}
	// The same address, a credential already verified: no budget needed.
	if err := authenticate(s, t.Context(), "10.0.0.1", good); err != nil {
		t.Errorf("a verified key from the flooding address: %v", err)
	}
	// A refused one is refused from memory, not for lack of budget.
	err := authenticate(s, t.Context(), "10.0.0.1", flood[0])
	wantAuthError(t, err, codes.Unauthenticated, ReasonRejected, flood[0])
	// Another address has its own bucket.
	if err := authenticate(s, t.Context(), "10.0.0.2", flood[50]); errorOf(err).Code != codes.Unauthenticated {
		t.Errorf("another address: %v, want a request to Clerk", err)
	}
	// One second later: rate more.
	e.clock.Advance(time.Second)
	for i, tok := range flood[20:23] {
		err := authenticate(s, t.Context(), "10.0.0.1", tok)
		want := codes.Unauthenticated
		if i == 2 {
			want = codes.ResourceExhausted
		}
		if got := errorOf(err).Code; got != want {
			t.Errorf("1 s later, request %d: %v, want %v", i, err, want)
		}
	}
	if calls() != 5+1+2 {
		t.Errorf("%d calls to Clerk, want 8", calls())
	}
}

// TestRenewalOutsideTheAddressBudget: a credential Clerk accepted before is
// verified again when its cached answer runs out even if its address is over
// its budget — a flood from behind the same address or proxy must not lock
// a genuine machine out — while invented ones from that address stay
// refused; once Clerk refuses it, it is an invented one again.
func TestRenewalOutsideTheAddressBudget(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{Burst: 2, Rate: 1}})
	s := startServer(t, e, serverOptions{roles: memberships})
	good := e.mintMachine(t, clerkemu.Machine{TTL: time.Hour})
	if err := authenticate(s, t.Context(), "10.7.7.1", good); err != nil {
		t.Fatal(err)
	}
	const addr = "10.7.7.7"
	flood := invented(viewer.CredentialM2M, 100)
	// drain spends addr's bucket on invented credentials until one is
	// refused for want of budget.
	drain := func() {
		t.Helper()
		for range 3 {
			tok := flood[0]
			flood = flood[1:]
			if errorOf(authenticate(s, t.Context(), addr, tok)).Reason == ReasonRateLimited {
				return
			}
		}
		t.Fatal("the address's bucket did not run dry")
	}
	renew := func() error {
		t.Helper()
		before := e.emu.MachineVerifies()
		err := authenticate(s, t.Context(), addr, good)
		if got := e.emu.MachineVerifies() - before; got != 1 {
			t.Errorf("renewal made %d requests to Clerk, want 1", got)
		}
		return err
	}

	drain()
	e.clock.Advance(maxOpaqueTTL) // the cached answer ran out
	drain()
	if err := renew(); err != nil {
		t.Fatalf("renewing a verified machine token from a flooded address: %v", err)
	}
	tok := flood[0]
	wantAuthError(t, authenticate(s, t.Context(), addr, tok), codes.ResourceExhausted, ReasonRateLimited, tok)

	// Revoked, it is refused at its next renewal, and after the refusal is
	// forgotten it needs the budget like any other credential.
	e.emu.RevokeMachineToken(good)
	e.clock.Advance(maxOpaqueTTL)
	drain()
	wantAuthError(t, renew(), codes.Unauthenticated, ReasonRevoked, good)
	e.clock.Advance(defaultRefusalTTL)
	drain()
	wantAuthError(t, authenticate(s, t.Context(), addr, good), codes.ResourceExhausted, ReasonRateLimited, good)
}

// TestVerifyConcurrencyBound: with MaxInFlight requests to Clerk in
// flight, a request for another credential is RESOURCE_EXHAUSTED at once;
// a caller presenting a credential already in flight joins it.
func TestVerifyConcurrencyBound(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{MaxInFlight: 2}})
	s := startServer(t, e, serverOptions{roles: memberships})
	keys := []string{
		e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser}),
		e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser}),
		e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser}),
	}
	release := e.emu.HoldVerifies()
	defer release()
	results := make(chan error, 3)
	for i, key := range []string{keys[0], keys[1], keys[0]} {
		go func() { results <- authenticate(s, t.Context(), fmt.Sprintf("10.0.0.%d", i), key) }()
		if i < 2 {
			waitFor(t, "the request in flight", func() bool { return e.emu.VerifiesInFlight() == int64(i+1) })
		}
	}
	waitFor(t, "the third caller to join", func() bool {
		s.auth.opaque.flight.mu.Lock()
		defer s.auth.opaque.flight.mu.Unlock()
		c := s.auth.opaque.flight.calls[keys[0]]
		return c != nil && c.waiters == 2
	})
	err := authenticate(s, t.Context(), "10.0.0.9", keys[2])
	wantAuthError(t, err, codes.ResourceExhausted, ReasonBusy, keys[2])
	if retryDelay(err) <= 0 {
		t.Errorf("no RetryInfo")
	}
	release()
	for range 3 {
		if err := <-results; err != nil {
			t.Errorf("a caller in flight: %v", err)
		}
	}
	if got := e.emu.Verifies(); got != 2 {
		t.Errorf("%d requests to Clerk, want 2", got)
	}
	if err := authenticate(s, t.Context(), "10.0.0.9", keys[2]); err != nil {
		t.Errorf("once the others are done: %v", err)
	}
}

// TestVerifyCanceledWhenNobodyWaits: a request to Clerk goes on while any
// caller waits for it, and is canceled when the last one leaves.
func TestVerifyCanceledWhenNobodyWaits(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{Timeout: time.Minute}})
	s := startServer(t, e, serverOptions{roles: memberships})
	key := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser})
	release := e.emu.HoldVerifies()
	defer release()

	first, cancelFirst := context.WithCancel(t.Context())
	second, cancelSecond := context.WithTimeout(t.Context(), time.Hour)
	results := make(chan error, 2)
	go func() { results <- authenticate(s, first, "10.0.0.1", key) }()
	waitFor(t, "the request in flight", func() bool { return e.emu.VerifiesInFlight() == 1 })
	go func() { results <- authenticate(s, second, "10.0.0.2", key) }()
	waitFor(t, "the second caller to join", func() bool {
		s.auth.opaque.flight.mu.Lock()
		defer s.auth.opaque.flight.mu.Unlock()
		return s.auth.opaque.flight.calls[key].waiters == 2
	})

	cancelFirst()
	wantAuthError(t, <-results, codes.Canceled, ReasonClerkUnavailable, key)
	if got := s.auth.opaque.flight.inFlight(); got != 1 {
		t.Errorf("after one of two callers left: %d verifications in flight, want 1", got)
	}
	if got := e.emu.VerifiesCanceled(); got != 0 {
		t.Errorf("canceled at Clerk while a caller still waits")
	}
	cancelSecond()
	wantAuthError(t, <-results, codes.Canceled, ReasonClerkUnavailable, key)
	waitFor(t, "the request to be canceled at Clerk", func() bool { return e.emu.VerifiesCanceled() == 1 })

	release()
	if err := authenticate(s, t.Context(), "10.0.0.3", key); err != nil {
		t.Errorf("a caller after the cancellation: %v", err)
	}
	if got := e.emu.Verifies(); got != 2 {
		t.Errorf("%d requests to Clerk, want 2 (the canceled one remembered nothing)", got)
	}
}

// TestVerifyDeadline: a caller whose deadline passes while Clerk is slow
// gets DEADLINE_EXCEEDED, and the request it alone waited for is canceled.
func TestVerifyDeadline(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{Timeout: time.Minute}})
	s := startServer(t, e, serverOptions{roles: memberships})
	token := e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser})
	release := e.emu.HoldVerifies()
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	wantAuthError(t, authenticate(s, ctx, "10.0.0.1", token), codes.DeadlineExceeded, ReasonClerkUnavailable, token)
	waitFor(t, "the request to be canceled at Clerk", func() bool { return e.emu.VerifiesCanceled() == 1 })
}

// TestClerkUnavailableIsNotRemembered: Clerk down, 5xx or 429 is
// UNAVAILABLE with RetryInfo — never UNAUTHENTICATED — and is asked again
// next time.
func TestClerkUnavailableIsNotRemembered(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{roles: memberships})
	tokens := map[string]string{
		"machine token": e.mintMachine(t, clerkemu.Machine{}),
		"API key":       e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser}),
		"OAuth token":   e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser}),
	}
	for name, token := range tokens {
		for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusTooManyRequests} {
			t.Run(fmt.Sprintf("%s/%d", name, status), func(t *testing.T) {
				e.emu.SetVerifyStatus(status)
				before := e.emu.Verifies()
				for range 2 {
					err := authenticate(s, t.Context(), "10.0.0.1", token)
					wantAuthError(t, err, codes.Unavailable, ReasonClerkUnavailable, token)
					if retryDelay(err) <= 0 {
						t.Errorf("no RetryInfo")
					}
				}
				if got := e.emu.Verifies() - before; got != 2 {
					t.Errorf("%d requests, want 2: an unavailable answer is not remembered", got)
				}
			})
		}
		e.emu.SetVerifyStatus(0)
		if err := authenticate(s, t.Context(), "10.0.0.1", token); err != nil {
			t.Errorf("%s once Clerk is back: %v", name, err)
		}
		e.clock.Advance(time.Second) // a fresh bucket for the next kind
	}
}

// TestKeyOutage: while the JWKS cannot be fetched, a token naming a key id
// not in the cache is UNAVAILABLE with RetryInfo for the whole refetch
// window, not UNAUTHENTICATED; tokens whose key is cached keep working.
func TestKeyOutage(t *testing.T) {
	e := newEnv(t, envOptions{refetchInterval: 5 * time.Second})
	s := startServer(t, e, serverOptions{roles: memberships})
	oldKid := e.emu.KeyID()
	cachedSession := e.mint(t, clerkemu.Session{UserID: testUser})
	if err := authenticate(s, t.Context(), "10.0.0.1", cachedSession); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second)
	if _, err := e.emu.RotateKeyKeepOld(); err != nil {
		t.Fatal(err)
	}
	e.emu.SetJWKSStatus(http.StatusServiceUnavailable)
	fetches := e.emu.JWKSFetches()

	newKey := []string{
		e.mint(t, clerkemu.Session{UserID: testUser}),
		e.mintMachine(t, clerkemu.Machine{JWT: true}),
		e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser, JWT: true}),
	}
	for i, tok := range append(newKey, newKey...) {
		err := authenticate(s, t.Context(), "10.0.0.1", tok)
		wantAuthError(t, err, codes.Unavailable, ReasonKeysUnavailable, tok)
		if retryDelay(err) <= 0 {
			t.Errorf("token %d: no RetryInfo", i)
		}
		e.clock.Advance(500 * time.Millisecond) // 3 s in all, within the window
	}
	if got := e.emu.JWKSFetches() - fetches; got != 1 {
		t.Errorf("%d JWKS fetches during the window, want 1", got)
	}
	oldKeyJWT := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{KeyID: oldKid, SigningKey: emulatorKey()}})
	for _, tok := range []string{cachedSession, e.mint(t, clerkemu.Session{UserID: testUser, KeyID: oldKid, SigningKey: emulatorKey()}), oldKeyJWT} {
		if err := authenticate(s, t.Context(), "10.0.0.1", tok); err != nil {
			t.Errorf("a token whose key is cached, during the outage: %v", err)
		}
	}

	e.emu.SetJWKSStatus(0)
	e.clock.Advance(2 * time.Second) // the window has passed
	for _, tok := range newKey {
		if err := authenticate(s, t.Context(), "10.0.0.1", tok); err != nil {
			t.Errorf("after the outage: %v", err)
		}
	}
}

// TestKeyFetchTimeout: a JWKS fetch that runs out of its own time is
// UNAVAILABLE with RetryInfo, not the caller's DEADLINE_EXCEEDED.
func TestKeyFetchTimeout(t *testing.T) {
	e := newEnv(t, envOptions{fetchTimeout: 50 * time.Millisecond})
	s := startServer(t, e, serverOptions{roles: memberships})
	e.emu.SetJWKSDelay(2 * time.Second)
	token := e.mint(t, clerkemu.Session{UserID: testUser})
	err := authenticate(s, t.Context(), "10.0.0.1", token)
	wantAuthError(t, err, codes.Unavailable, ReasonKeysUnavailable, token)
	if retryDelay(err) <= 0 {
		t.Errorf("no RetryInfo")
	}
}

// TestFailuresCarryTheirCause: a failure the caller sees as INTERNAL,
// UNAVAILABLE or RESOURCE_EXHAUSTED carries its cause (HiddenCause), which
// the server's per-call log line records and the caller never sees; the
// cause never holds the token.
func TestFailuresCarryTheirCause(t *testing.T) {
	e := newEnv(t, envOptions{opaque: OpaqueConfig{Burst: 1, Rate: 1}})
	s := startServer(t, e, serverOptions{roles: memberships})
	session := e.mint(t, clerkemu.Session{UserID: testUser})
	key := e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser})
	invented := invented(viewer.CredentialAPIKey, 1)[0]

	tests := []struct {
		name   string
		addr   string
		token  string
		setup  func() func()
		code   codes.Code
		reason string
		cause  string // a substring of the cause
	}{
		{"the store fails", "10.0.0.1", session, func() func() {
			s.prov.mu.Lock()
			s.prov.err = errors.New("look up user: converting NULL to string is unsupported")
			s.prov.mu.Unlock()
			return func() { s.prov.mu.Lock(); s.prov.err = nil; s.prov.mu.Unlock() }
		}, codes.Internal, ReasonInternal, "converting NULL"},
		{"Clerk is down", "10.0.0.2", key, func() func() {
			e.emu.SetVerifyStatus(http.StatusServiceUnavailable)
			return func() { e.emu.SetVerifyStatus(0) }
		}, codes.Unavailable, ReasonClerkUnavailable, "status 503"},
		{"over budget", "10.0.0.3", invented, func() func() {
			// The first invented key spends the caller's one token.
			_ = authenticate(s, t.Context(), "10.0.0.3", invented[:len(invented)-1]+"y")
			return func() {}
		}, codes.ResourceExhausted, ReasonRateLimited, "caller 10.0.0.3 is over its budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			undo := tt.setup()
			err := authenticate(s, t.Context(), tt.addr, tt.token)
			undo()
			ae := errorOf(err)
			if ae.Code != tt.code || ae.Reason != tt.reason {
				t.Fatalf("got %v %q (%v), want %v %q", ae.Code, ae.Reason, err, tt.code, tt.reason)
			}
			var hidden interface{ HiddenCause() error }
			if !errors.As(err, &hidden) {
				t.Fatalf("%v has no HiddenCause", err)
			}
			cause := hidden.HiddenCause()
			if cause == nil || !strings.Contains(cause.Error(), tt.cause) {
				t.Fatalf("cause %v, want one containing %q", cause, tt.cause)
			}
			if strings.Contains(cause.Error(), tt.token) || strings.Contains(err.Error(), tt.token) {
				t.Errorf("the error holds the token")
			}
			if strings.Contains(status.Convert(err).Message(), tt.cause) {
				t.Errorf("the caller sees the cause: %q", status.Convert(err).Message())
			}
		})
	}
}
