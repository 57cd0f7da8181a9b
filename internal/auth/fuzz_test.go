package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// FuzzBearer checks the authorization metadata parser: it never panics,
// what it accepts is a non-empty part of the value after a bearer scheme and
// whitespace, and what it refuses is refused with a fixed message.
func FuzzBearer(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	f.Fuzz(func(t *testing.T, value string) {
		token, err := bearerToken([]string{value})
		if err != nil {
			switch err.Error() {
			case "invalid token: missing_token", "invalid token: malformed":
			default:
				t.Fatalf("unexpected error message %q", err.Error())
			}
			if token != "" {
				t.Fatalf("token %q returned with an error", token)
			}
			return
		}
		if token == "" || strings.HasPrefix(token, " ") || strings.HasPrefix(token, "\t") {
			t.Fatalf("accepted token %q is empty or starts with whitespace", token)
		}
		if !strings.Contains(value, token) {
			t.Fatalf("token %q is not part of %q", token, value)
		}
		scheme := strings.TrimLeft(value, " \t")
		if len(scheme) < 6 || !strings.EqualFold(scheme[:6], "bearer") {
			t.Fatalf("accepted %q without a bearer scheme", value)
		}
	})
}

// FuzzVerifySession feeds arbitrary tokens to a SessionVerifier (with a
// static key, so no network): it never panics, never accepts a token not
// signed by the key, and its errors never quote the token.
func FuzzVerifySession(f *testing.F) {
	emu, err := clerkemu.New(clerkemu.Options{Key: emulatorKey()})
	if err != nil {
		f.Fatal(err)
	}
	key, err := clerk.NewStaticKey(emu.PublicKeyPEM())
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewSessionVerifier(SessionConfig{Keys: key, Issuer: emu.Issuer(), CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []clerkemu.Session{
		{UserID: testUser},
		{UserID: testUser, OrgID: "org_acme", OrgRole: "org:admin", Permissions: []string{"org:projects:read"}},
		{UserID: testUser, Version: 1, OrgID: "org_acme", OrgRole: "org:member"},
	} {
		tok, err := emu.MintSession(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err == nil {
			if p == nil || !viewer.ValidUserID(p.Subject) {
				t.Fatalf("accepted %q as %+v", token, p)
			}
			return
		}
		if len(token) > 20 && strings.Contains(err.Error(), token) {
			t.Fatalf("error %q quotes the token", err)
		}
	})
}

// FuzzAuthenticate feeds any authorization value to the credential router,
// through the real verifiers and Clerk client against the emulator: it
// never panics; every refusal is one of the statuses a credential can earn
// with a fixed message that never quotes it; and what is not shaped as a
// credential Clerk issues — no bearer token, an opaque body of the wrong
// alphabet or length, neither opaque nor a compact JWS — reaches Clerk not
// at all. Anything else makes at most one request of each kind.
func FuzzAuthenticate(f *testing.F) {
	e := newEnv(f, envOptions{})
	a := newTestAuthenticator(f, e, memberships)
	f.Add("Bearer " + e.mint(f, clerkemu.Session{UserID: testUser}))
	f.Add("Bearer " + e.mintMachine(f, clerkemu.Machine{}))
	f.Add("Bearer " + e.mintMachine(f, clerkemu.Machine{JWT: true}))
	f.Add("Bearer " + e.mintAPIKey(f, clerkemu.APIKey{Subject: testUser, Scopes: []string{PermProjectsRead}}))
	f.Add("Bearer " + e.mintAPIKey(f, clerkemu.APIKey{Subject: orgAcme}))
	f.Add("Bearer " + e.mintOAuth(f, clerkemu.OAuthToken{UserID: testUser}))
	f.Add("Bearer " + e.mintOAuth(f, clerkemu.OAuthToken{UserID: testUser, JWT: true}))
	for _, s := range []string{"", "Bearer", "bearer mt_", "Bearer ak_" + strings.Repeat("A", 300), "Bearer oat_!!!!!!!!!!!!!!!!!!!!",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer x_yyyyyyyyyyyyyyyyyyyyyy"} {
		f.Add(s)
	}
	allowed := map[codes.Code]string{
		codes.Unauthenticated:   "invalid token: ",
		codes.PermissionDenied:  "permission denied: ",
		codes.InvalidArgument:   "invalid request: ",
		codes.ResourceExhausted: "too many verifications: ",
	}
	// Each input comes from an address of its own, so that no caller's
	// budget runs dry and every well-formed credential still reaches its
	// verifier however long the fuzzer runs.
	var inputs atomic.Uint32
	f.Fuzz(func(t *testing.T, value string) {
		n := inputs.Add(1)
		addr := fmt.Sprintf("10.%d.%d.%d", byte(n>>16), byte(n>>8), byte(n))
		calls := func() [2]int64 { return [2]int64{e.emu.Verifies(), e.emu.JWKSFetches()} }
		before := calls()
		ctx, err := a.Authenticate(incoming(addr, AuthorizationKey, value, TenantKey, orgAcme), listProjectsMethod)
		after := calls()
		if err == nil {
			if p, ok := viewer.FromContext(ctx); !ok || p.Credential == 0 {
				t.Fatalf("accepted %q without a principal", value)
			}
		} else {
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			prefix, ok := allowed[ae.Code]
			if !ok || err.Error() != prefix+ae.Reason {
				t.Fatalf("%q: %v %q", value, ae.Code, err.Error())
			}
			if len(value) > 20 && strings.Contains(err.Error(), value) {
				t.Fatalf("error %q quotes the value", err)
			}
		}
		if after[0]-before[0] > 1 || after[1]-before[1] > 1 {
			t.Fatalf("%q: %d verify requests and %d JWKS fetches", value, after[0]-before[0], after[1]-before[1])
		}
		token, berr := bearerToken([]string{value})
		kind, opaque := opaqueKind(token)
		shaped := berr == nil && (opaque && wellFormedOpaque(token, prefixOf(kind)) || !opaque && compactJWS(token))
		if !shaped && after != before {
			t.Fatalf("%q is no credential Clerk issues, yet reached Clerk: %v → %v", value, before, after)
		}
	})
}
