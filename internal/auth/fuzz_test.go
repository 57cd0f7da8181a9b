package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// FuzzBearer checks the authorization metadata parser: it never panics,
// what it accepts is a non-empty, whitespace-free part of the value after a
// bearer scheme, and what it refuses is refused with a fixed message.
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
		if token == "" || strings.ContainsFunc(token, isSpaceOrControl) {
			t.Fatalf("accepted token %q is empty or holds whitespace", token)
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
