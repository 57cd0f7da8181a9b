package auth

import (
	"context"
	"testing"

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
