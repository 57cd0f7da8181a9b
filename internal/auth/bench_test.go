package auth

import (
	"context"
	"testing"
	"time"

	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

// benchSession is a typical organization session token.
var benchSession = clerkemu.Session{
	UserID:      testUser,
	OrgID:       "org_acme",
	OrgRole:     "org:member",
	Permissions: []string{"org:projects:read", "org:billing:read"},
}

// BenchmarkVerifyWarm is the cost of a call presenting a token seen before:
// a cache hit, which must not allocate.
func BenchmarkVerifyWarm(b *testing.B) {
	e := newEnv(b, envOptions{})
	token := e.mint(b, benchSession)
	ctx := context.Background()
	if _, err := e.sessions.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.sessions.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWarmParallel is BenchmarkVerifyWarm from every core.
func BenchmarkVerifyWarmParallel(b *testing.B) {
	e := newEnv(b, envOptions{})
	token := e.mint(b, benchSession)
	ctx := context.Background()
	if _, err := e.sessions.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.sessions.Verify(ctx, token); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyCold is a first sight: the full verification (the key is
// already fetched), without the cache.
func BenchmarkVerifyCold(b *testing.B) {
	e := newEnv(b, envOptions{session: SessionConfig{CacheSize: -1}})
	token := e.mint(b, benchSession)
	ctx := context.Background()
	if _, err := e.sessions.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.sessions.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoseVerifyFloor is the floor under BenchmarkVerifyCold: bare
// go-jose v3 parsing and RS256 verification of the same token.
func BenchmarkJoseVerifyFloor(b *testing.B) {
	e := newEnv(b, envOptions{})
	token := e.mint(b, benchSession)
	pub := &emulatorKey().PublicKey
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := josejwt.ParseSigned(token)
		if err != nil {
			b.Fatal(err)
		}
		var m map[string]any
		if err := parsed.Claims(pub, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateWarm is the cost of Authenticate for a call whose
// credential was seen before — the cache hit every call after the first
// pays — for each kind and form, on ListProjects (which takes them all).
// The session case is the warm path of every signed-in user's call: one
// map lookup for the token, the provisioner's, the permission check.
// Compare with benchstat; docs/BENCHMARKS.md records the figures.
func BenchmarkAuthenticateWarm(b *testing.B) {
	e := newEnv(b, envOptions{})
	a := newTestAuthenticator(b, e, memberships)
	cases := []authCase{
		{"session", e.mint(b, benchSession), ""},
		{"m2m_opaque", e.mintMachine(b, clerkemu.Machine{TTL: time.Hour}), orgAcme},
		{"m2m_jwt", e.mintMachine(b, clerkemu.Machine{JWT: true}), orgAcme},
		{"api_key_user", e.mintAPIKey(b, clerkemu.APIKey{Subject: testUser, Scopes: []string{PermProjectsRead}}), ""},
		{"api_key_user_in_org", e.mintAPIKey(b, clerkemu.APIKey{Subject: testUser, Scopes: []string{PermProjectsRead}}), orgAcme},
		{"api_key_org", e.mintAPIKey(b, clerkemu.APIKey{Subject: orgAcme, Scopes: []string{PermProjectsRead}}), ""},
		{"oauth_opaque", e.mintOAuth(b, clerkemu.OAuthToken{UserID: testUser, Scopes: []string{PermProjectsRead}}), ""},
		{"oauth_jwt", e.mintOAuth(b, clerkemu.OAuthToken{UserID: testUser, Scopes: []string{PermProjectsRead}, JWT: true}), ""},
	}
	benchAuthenticate(b, a, cases)
}

// BenchmarkAuthenticateCold is the first sight of each JWT form through
// Authenticate: routing by header and claims, the full RS256 verification
// (the key already fetched), the claims checks — the caches turned off. A
// machine or OAuth JWT must cost about what a session does.
func BenchmarkAuthenticateCold(b *testing.B) {
	e := newEnv(b, envOptions{session: SessionConfig{CacheSize: -1}, jwtCacheSize: -1})
	a := newTestAuthenticator(b, e, memberships)
	benchAuthenticate(b, a, []authCase{
		{"session", e.mint(b, benchSession), ""},
		{"m2m_jwt", e.mintMachine(b, clerkemu.Machine{JWT: true}), orgAcme},
		{"oauth_jwt", e.mintOAuth(b, clerkemu.OAuthToken{UserID: testUser, Scopes: []string{PermProjectsRead}, JWT: true}), ""},
	})
}

// authCase is a credential and the tenant it names, if any.
type authCase struct {
	name, token, tenant string
}

// benchAuthenticate runs Authenticate on ListProjects for each case.
func benchAuthenticate(b *testing.B, a *Authenticator, cases []authCase) {
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			kv := []string{AuthorizationKey, "Bearer " + c.token}
			if c.tenant != "" {
				kv = append(kv, TenantKey, c.tenant)
			}
			ctx := incoming("10.0.0.1", kv...)
			if _, err := a.Authenticate(ctx, listProjectsMethod); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(ctx, listProjectsMethod); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
