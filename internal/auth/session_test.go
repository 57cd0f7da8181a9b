package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const testUser = "user_2abcDEF123"

// validClaims are the claims of a good session token, for hand-made tokens.
func validClaims(e *env) map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": e.emu.Issuer(),
		"sub": testUser,
		"sid": "sess_1",
		"iat": now.Unix(),
		"nbf": now.Add(-10 * time.Second).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

func b64(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// unsigned hand-crafts a token with alg "none" and the given signature part.
func unsigned(e *env, sig string) string {
	return b64(map[string]any{"alg": "none", "typ": "JWT", "kid": e.emu.KeyID()}) + "." + b64(validClaims(e)) + "." + sig
}

// hs256WithPublicKey signs a good token with HMAC, the public key PEM being
// the secret: the classic RS256/HS256 confusion attack.
func hs256WithPublicKey(t *testing.T, e *env) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.HS256,
		Key:       jose.JSONWebKey{Key: []byte(e.emu.PublicKeyPEM()), KeyID: e.emu.KeyID(), Algorithm: string(jose.HS256)},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sig).Claims(validClaims(e)).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantAuthError checks err is an *Error with code and reason whose text does
// not contain token.
func wantAuthError(t *testing.T, err error, code codes.Code, reason, token string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want *Error", err, err)
	}
	if ae.Code != code || ae.Reason != reason {
		t.Errorf("error = %v %q, want %v %q", ae.Code, ae.Reason, code, reason)
	}
	if token != "" && (strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprintf("%+v", err), token)) {
		t.Errorf("error text contains the token")
	}
	if ae.Err != nil && token != "" && strings.Contains(ae.Err.Error(), token) {
		t.Errorf("error cause contains the token")
	}
}

func TestSessionVerifierRejects(t *testing.T) {
	e := newEnv(t, envOptions{session: SessionConfig{AuthorizedParties: []string{"http://localhost:3000"}}})
	now := e.clock.Now()
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		reason string
	}{
		{"expired", mint(e, clerkemu.Session{UserID: testUser, IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour}), ReasonExpired},
		{"expired beyond leeway", mint(e, clerkemu.Session{UserID: testUser, IssuedAt: now.Add(-time.Minute), TTL: time.Minute - 6*time.Second}), ReasonExpired},
		{"not yet valid", mint(e, clerkemu.Session{UserID: testUser, IssuedAt: now, NotBefore: now.Add(time.Minute)}), ReasonNotYetValid},
		{"issued in the future", mint(e, clerkemu.Session{UserID: testUser, IssuedAt: now.Add(time.Minute), NotBefore: now}), ReasonNotYetValid},
		{"wrong issuer", mint(e, clerkemu.Session{UserID: testUser, Issuer: "https://clerk.evil.test"}), ReasonWrongIssuer},
		{"issuer with the pinned one as prefix", mint(e, clerkemu.Session{UserID: testUser, Issuer: e.emu.Issuer() + ".evil.test"}), ReasonWrongIssuer},
		{"wrong azp", mint(e, clerkemu.Session{UserID: testUser, AuthorizedParty: "https://evil.test"}), ReasonWrongAZP},
		{"no sid", mint(e, clerkemu.Session{UserID: testUser, OmitSID: true}), ReasonNoSession},
		{"pending session", mint(e, clerkemu.Session{UserID: testUser, Status: "pending"}), ReasonPendingSession},
		{"JWT template category", mint(e, clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryTemplate}), ReasonNotSessionToken},
		{"machine category", mint(e, clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryMachine}), ReasonNotSessionToken},
		{"no exp", mint(e, clerkemu.Session{UserID: testUser, OmitExp: true}), ReasonNoExpiry},
		{"wrong key for a known kid", mint(e, clerkemu.Session{UserID: testUser, SigningKey: otherKey()}), ReasonBadSignature},
		{"forged kid", mint(e, clerkemu.Session{UserID: testUser, KeyID: "ins_forged", SigningKey: otherKey()}), ReasonUnknownKey},
		{"subject not a user", mint(e, clerkemu.Session{UserID: "mch_123"}), ReasonBadSubject},
		{"malformed organization", mint(e, clerkemu.Session{UserID: testUser, OrgID: "org_x'; drop table"}), ReasonBadOrganization},
		{"alg none", func(*testing.T) string { return unsigned(e, "") }, ReasonMalformed},
		{"alg none with a signature", func(*testing.T) string { return unsigned(e, "c2ln") }, ReasonBadAlgorithm},
		{"HS256 with the public key as secret", func(t *testing.T) string { return hs256WithPublicKey(t, e) }, ReasonBadAlgorithm},
		{"garbage", func(*testing.T) string { return "not-a-token" }, ReasonMalformed},
		{"three garbage segments", func(*testing.T) string { return "a.b.c" }, ReasonMalformed},
		{"JSON serialization", func(*testing.T) string { return `{"payload":"e30","signatures":[]}` }, ReasonMalformed},
		{"huge", func(*testing.T) string { return strings.Repeat("a", maxTokenLen) + ".b.c" }, ReasonMalformed},
		{"empty", func(*testing.T) string { return "" }, ReasonMissingToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token(t)
			p, err := e.sessions.Verify(context.Background(), token)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			wantAuthError(t, err, codes.Unauthenticated, tt.reason, token)
		})
	}
}

// mint returns a token factory for a table.
func mint(e *env, s clerkemu.Session) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		return e.mint(t, s)
	}
}

func TestSessionVerifierAccepts(t *testing.T) {
	e := newEnv(t, envOptions{session: SessionConfig{
		AuthorizedParties: []string{"http://localhost:3000", "https://app.example.com"},
		RoleDefaults: map[string][]string{
			"org:admin":  {PermProjectsCreate, PermProjectsRead, PermProjectsUpdate, PermProjectsDelete},
			"org:member": {PermProjectsRead, PermProjectsCreate},
			// org:viewer has no defaults: only what its token says.
		},
	}})
	iat := e.clock.Now().Truncate(time.Second)
	exp := iat.Add(time.Hour)
	all := []string{PermProjectsCreate, PermProjectsDelete, PermProjectsRead, PermProjectsUpdate}
	tests := []struct {
		name    string
		session clerkemu.Session
		want    viewer.Principal
	}{
		{
			name:    "personal tenant",
			session: clerkemu.Session{UserID: testUser},
			want:    viewer.Principal{TenantID: testUser, Permissions: all},
		},
		{
			name:    "v2 organization member with a token permission",
			session: clerkemu.Session{UserID: testUser, OrgID: "org_acme", OrgRole: "org:member", Permissions: []string{"org:billing:read", PermProjectsRead}},
			want: viewer.Principal{TenantID: "org_acme", OrgID: "org_acme", OrgRole: "org:member",
				Permissions: []string{"org:billing:read", PermProjectsCreate, PermProjectsRead}},
		},
		{
			name:    "v1 organization member",
			session: clerkemu.Session{UserID: testUser, Version: 1, OrgID: "org_acme", OrgRole: "org:member", Permissions: []string{PermProjectsUpdate}},
			want: viewer.Principal{TenantID: "org_acme", OrgID: "org_acme", OrgRole: "org:member",
				Permissions: []string{PermProjectsCreate, PermProjectsRead, PermProjectsUpdate}},
		},
		{
			name:    "v2 admin by role default alone",
			session: clerkemu.Session{UserID: testUser, OrgID: "org_acme", OrgRole: "org:admin"},
			want:    viewer.Principal{TenantID: "org_acme", OrgID: "org_acme", OrgRole: "org:admin", Permissions: all},
		},
		{
			name:    "role without defaults holds only its token permissions",
			session: clerkemu.Session{UserID: testUser, OrgID: "org_acme", OrgRole: "org:viewer", Permissions: []string{PermProjectsRead}},
			want:    viewer.Principal{TenantID: "org_acme", OrgID: "org_acme", OrgRole: "org:viewer", Permissions: []string{PermProjectsRead}},
		},
		{
			name:    "no cat header",
			session: clerkemu.Session{UserID: testUser, Category: "-"},
			want:    viewer.Principal{TenantID: testUser, Permissions: all},
		},
		{
			name:    "ignore category",
			session: clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryIgnore},
			want:    viewer.Principal{TenantID: testUser, Permissions: all},
		},
		{
			name:    "another authorized party, active status",
			session: clerkemu.Session{UserID: testUser, AuthorizedParty: "https://app.example.com", Status: "active"},
			want:    viewer.Principal{TenantID: testUser, Permissions: all},
		},
		{
			name:    "expired within the leeway",
			session: clerkemu.Session{UserID: testUser, IssuedAt: iat.Add(-time.Minute), TTL: time.Minute - 3*time.Second},
			want:    viewer.Principal{TenantID: testUser, Permissions: all, ExpiresAt: iat.Add(-3 * time.Second)},
		},
		{
			name:    "not before within the leeway",
			session: clerkemu.Session{UserID: testUser, NotBefore: iat.Add(3 * time.Second)},
			want:    viewer.Principal{TenantID: testUser, Permissions: all},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.session
			s.SessionID = "sess_42"
			if s.IssuedAt.IsZero() {
				s.IssuedAt = iat
			}
			token := e.mint(t, s)
			got, err := e.sessions.Verify(context.Background(), token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := tt.want
			want.Kind, want.Credential, want.Subject, want.SessionID = viewer.KindUser, viewer.CredentialSession, testUser, "sess_42"
			if want.ExpiresAt.IsZero() {
				want.ExpiresAt = exp
			}
			if diff := cmp.Diff(want, *got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSessionVerifierNetworklessKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, err := clerk.NewStaticKey(e.emu.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewSessionVerifier(SessionConfig{Keys: key, Issuer: e.emu.Issuer()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), e.mint(t, clerkemu.Session{UserID: testUser})); err != nil {
		t.Errorf("Verify with CLERK_JWT_KEY: %v", err)
	}
	forged := e.mint(t, clerkemu.Session{UserID: testUser, SigningKey: otherKey()})
	_, err = v.Verify(context.Background(), forged)
	wantAuthError(t, err, codes.Unauthenticated, ReasonBadSignature, forged)
	if got := e.emu.JWKSFetches(); got != 0 {
		t.Errorf("JWKS fetches = %d, want 0 in networkless mode", got)
	}
}

func TestNewSessionVerifierNeedsKeysAndIssuer(t *testing.T) {
	_, err := NewSessionVerifier(SessionConfig{})
	if err == nil || !strings.Contains(err.Error(), "no key source") || !strings.Contains(err.Error(), "no issuer") {
		t.Errorf("NewSessionVerifier(zero) error = %v, want both problems listed", err)
	}
}

func TestSessionCache(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.mint(t, clerkemu.Session{UserID: testUser, IssuedAt: e.clock.Now(), TTL: 30 * time.Second})
	first, err := e.sessions.Verify(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.sessions.Verify(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("second Verify did not come from the cache")
	}
	if n := e.sessions.cache.len(); n != 1 {
		t.Errorf("cache holds %d tokens, want 1", n)
	}
	// Past exp (and the leeway) the cached entry must not be served.
	e.clock.Advance(36 * time.Second)
	_, err = e.sessions.Verify(context.Background(), token)
	wantAuthError(t, err, codes.Unauthenticated, ReasonExpired, token)
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache[int](cacheShards * 8)
	now := time.Now()
	for i := range 10_000 {
		c.put(fmt.Sprint("token", i), i, now.Add(time.Minute), now)
	}
	if n := c.len(); n > cacheShards*8 {
		t.Errorf("cache holds %d entries, want at most %d", n, cacheShards*8)
	}
	c.put("expired", 1, now.Add(-time.Second), now)
	if _, ok := c.get("expired", now); ok {
		t.Errorf("an already expired entry was cached")
	}
	c.put("short", 1, now.Add(time.Second), now)
	if _, ok := c.get("short", now.Add(time.Second)); ok {
		t.Errorf("entry served at its deadline")
	}
}

func TestUnknownKeyFlood(t *testing.T) {
	e := newEnv(t, envOptions{refetchInterval: 5 * time.Second})
	ctx := context.Background()
	if _, err := e.sessions.Verify(ctx, e.mint(t, clerkemu.Session{UserID: testUser})); err != nil {
		t.Fatal(err)
	}
	if got := e.emu.JWKSFetches(); got != 1 {
		t.Fatalf("JWKS fetches after the first token = %d, want 1", got)
	}
	// A new window opens; a slow JWKS keeps the one refetch in flight while
	// the whole flood arrives.
	e.clock.Advance(6 * time.Second)
	e.emu.SetJWKSDelay(100 * time.Millisecond)
	const n = 1000
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = e.mint(t, clerkemu.Session{UserID: testUser, KeyID: fmt.Sprintf("ins_forged%d", i), SigningKey: otherKey()})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = e.sessions.Verify(ctx, tokens[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		wantAuthError(t, err, codes.Unauthenticated, ReasonUnknownKey, tokens[i])
		if t.Failed() {
			break
		}
	}
	if got := e.emu.JWKSFetches(); got != 2 {
		t.Errorf("JWKS fetches after %d forged kids = %d, want 2 (one per window)", n, got)
	}
}

func TestUnknownKeyWaitEndsAtDeadline(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.emu.SetJWKSDelay(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	token := e.mint(t, clerkemu.Session{UserID: testUser})
	_, err := e.sessions.Verify(ctx, token)
	wantAuthError(t, err, codes.DeadlineExceeded, ReasonKeysUnavailable, token)
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("Verify waited %v, past the caller's deadline", d)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, envOptions{refetchInterval: 5 * time.Second})
	ctx := context.Background()
	if _, err := e.sessions.Verify(ctx, e.mint(t, clerkemu.Session{UserID: testUser})); err != nil {
		t.Fatal(err)
	}
	oldKID := e.emu.KeyID()
	if _, err := e.emu.RotateKey(); err != nil {
		t.Fatal(err)
	}
	rotated := e.mint(t, clerkemu.Session{UserID: testUser})

	// Within the window the new kid is unknown and no refetch is made.
	e.clock.Advance(time.Second)
	_, err := e.sessions.Verify(ctx, rotated)
	wantAuthError(t, err, codes.Unauthenticated, ReasonUnknownKey, rotated)
	if got := e.emu.JWKSFetches(); got != 1 {
		t.Errorf("JWKS fetches within the window = %d, want 1", got)
	}

	// After it, the rotated key is fetched once and the token verifies.
	e.clock.Advance(5 * time.Second)
	if _, err := e.sessions.Verify(ctx, rotated); err != nil {
		t.Errorf("Verify after the window: %v", err)
	}
	if got := e.emu.JWKSFetches(); got != 2 {
		t.Errorf("JWKS fetches after the window = %d, want 2", got)
	}
	// New tokens of the retired key no longer verify.
	old := e.mint(t, clerkemu.Session{UserID: testUser, KeyID: oldKID, SigningKey: emulatorKey()})
	_, err = e.sessions.Verify(ctx, old)
	wantAuthError(t, err, codes.Unauthenticated, ReasonUnknownKey, old)
}
