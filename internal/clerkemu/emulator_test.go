package clerkemu_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
	"github.com/clerk/clerk-sdk-go/v2/user"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newEmulator starts an emulator and returns it with a clerk-sdk-go backend
// pointed at it.
func newEmulator(t *testing.T, opts clerkemu.Options) (*clerkemu.Emulator, clerksdk.Backend) {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testKey()
	}
	e, err := clerkemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	return e, sdkBackend(srv.URL+"/v1", e.SecretKey())
}

func sdkBackend(url, key string) clerksdk.Backend {
	return clerksdk.NewBackend(&clerksdk.BackendConfig{URL: &url, Key: &key, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
}

// verify checks token the way Gatehouse does, with clerk-sdk-go.
func verify(t *testing.T, e *clerkemu.Emulator, token string) (*clerksdk.SessionClaims, error) {
	t.Helper()
	jwk, err := clerksdk.JSONWebKeyFromPEM(e.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	iss := e.Issuer()
	return jwt.Verify(context.Background(), &jwt.VerifyParams{Token: token, JWK: jwk, ProxyURL: &iss})
}

func apiStatus(t *testing.T, err error) int {
	t.Helper()
	var apiErr *clerksdk.APIErrorResponse
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not a Clerk API error", err)
	}
	if len(apiErr.Errors) == 0 || apiErr.Errors[0].Code == "" {
		t.Errorf("Clerk error body without errors[].code: %+v", apiErr)
	}
	return apiErr.HTTPStatusCode
}

func TestMintSessionRoundTrip(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	tests := []struct {
		name    string
		session clerkemu.Session
		want    clerksdk.Claims
	}{
		{
			name: "v2 permissions",
			session: clerkemu.Session{UserID: "user_1", SessionID: "sess_1", OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin",
				Permissions: []string{"org:projects:read", "org:projects:create"}},
			want: clerksdk.Claims{Version: 2, SessionID: "sess_1", AuthorizedParty: "http://localhost:3000",
				ActiveOrganizationID: "org_1", ActiveOrganizationSlug: "acme", ActiveOrganizationRole: "org:admin",
				ActiveOrganizationPermissions: []string{"org:projects:read", "org:projects:create"}, FactorVerificationAge: [2]int64{0, -1}},
		},
		{
			name: "v2 several features, interleaved",
			session: clerkemu.Session{UserID: "user_1", SessionID: "sess_1", OrgID: "org_1", OrgRole: "org:member",
				Permissions: []string{"org:projects:delete", "org:billing:manage", "org:projects:read", "org:billing:read"}},
			want: clerksdk.Claims{Version: 2, SessionID: "sess_1", AuthorizedParty: "http://localhost:3000",
				ActiveOrganizationID: "org_1", ActiveOrganizationRole: "org:member",
				ActiveOrganizationPermissions: []string{"org:projects:delete", "org:billing:manage", "org:projects:read", "org:billing:read"},
				FactorVerificationAge:         [2]int64{0, -1}},
		},
		{
			name:    "v2 personal",
			session: clerkemu.Session{UserID: "user_1", SessionID: "sess_1"},
			want:    clerksdk.Claims{Version: 1, SessionID: "sess_1", AuthorizedParty: "http://localhost:3000", FactorVerificationAge: [2]int64{0, -1}},
		},
		{
			name: "v1",
			session: clerkemu.Session{Version: 1, UserID: "user_1", SessionID: "sess_1", OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin",
				Permissions: []string{"org:projects:read"}, AuthorizedParty: "https://app.example"},
			want: clerksdk.Claims{Version: 1, SessionID: "sess_1", AuthorizedParty: "https://app.example",
				ActiveOrganizationID: "org_1", ActiveOrganizationSlug: "acme", ActiveOrganizationRole: "org:admin",
				ActiveOrganizationPermissions: []string{"org:projects:read"}, FactorVerificationAge: [2]int64{0, -1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := e.MintSession(tt.session)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verify(t, e, token)
			if err != nil {
				t.Fatalf("jwt.Verify: %v", err)
			}
			if got.Subject != tt.session.UserID || got.Issuer != clerkemu.DefaultIssuer {
				t.Errorf("sub, iss = %q, %q; want %q, %q", got.Subject, got.Issuer, tt.session.UserID, clerkemu.DefaultIssuer)
			}
			// The SDK leaves "v" at 0 for v1 tokens and sets it to 1 itself.
			if diff := cmp.Diff(tt.want, got.Claims, cmpopts.SortSlices(func(a, b string) bool { return a < b }), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMintSessionV2Encoding(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	token, err := e.MintSession(clerkemu.Session{UserID: "user_1", OrgID: "org_1", OrgRole: "org:admin",
		Permissions: []string{"org:projects:read", "org:projects:create", "org:billing:read"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := jwt.Decode(context.Background(), &jwt.DecodeParams{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"fea": "o:projects,o:billing",
		"o":   map[string]any{"id": "org_1", "slg": "", "rol": "admin", "per": "read,create", "fpm": "3,1"},
	}
	if diff := cmp.Diff(want, map[string]any{"fea": got.Extra["fea"], "o": got.Extra["o"]}); diff != "" {
		t.Errorf("v2 organization claims (-want +got):\n%s", diff)
	}
}

func TestMintSessionVariants(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iat := time.Now().Add(-time.Minute).Truncate(time.Second)
	type view struct {
		Kid, Cat string
		HasCat   bool
		Claims   map[string]any
	}
	tests := []struct {
		name       string
		session    clerkemu.Session
		want       view // only the claims named here are compared
		wantVerify bool
	}{
		{"defaults", clerkemu.Session{UserID: "user_1", SessionID: "sess_1", IssuedAt: iat},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true, Claims: map[string]any{
				"sid": "sess_1", "v": 2.0, "iat": float64(iat.Unix()), "nbf": float64(iat.Unix() - 10), "exp": float64(iat.Add(time.Hour).Unix())}}, true},
		{"no category", clerkemu.Session{UserID: "user_1", Category: "-"}, view{Kid: e.KeyID()}, true},
		{"machine category", clerkemu.Session{UserID: "user_1", Category: clerkemu.CategoryMachine},
			view{Kid: e.KeyID(), Cat: clerkemu.CategoryMachine, HasCat: true}, true},
		{"omit sid and exp", clerkemu.Session{UserID: "user_1", OmitSID: true, OmitExp: true},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true, Claims: map[string]any{"sid": nil, "exp": nil}}, true},
		{"pending", clerkemu.Session{UserID: "user_1", Status: "pending"},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true, Claims: map[string]any{"sts": "pending"}}, true},
		{"extra overrides", clerkemu.Session{UserID: "user_1", Extra: map[string]any{"sub": "user_2", "foo": "bar"}},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true, Claims: map[string]any{"sub": "user_2", "foo": "bar"}}, true},
		{"expired", clerkemu.Session{UserID: "user_1", IssuedAt: time.Now().Add(-2 * time.Hour)},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true}, false},
		{"other issuer", clerkemu.Session{UserID: "user_1", Issuer: "https://clerk.evil.test"},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true, Claims: map[string]any{"iss": "https://clerk.evil.test"}}, false},
		{"forged", clerkemu.Session{UserID: "user_1", SigningKey: other},
			view{Kid: e.KeyID(), Cat: clerkemu.CategorySession, HasCat: true}, false},
		{"kid override", clerkemu.Session{UserID: "user_1", KeyID: "ins_other"},
			view{Kid: "ins_other", Cat: clerkemu.CategorySession, HasCat: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := e.MintSession(tt.session)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := josejwt.ParseSigned(token)
			if err != nil {
				t.Fatal(err)
			}
			var all map[string]any
			if err := parsed.UnsafeClaimsWithoutVerification(&all); err != nil {
				t.Fatal(err)
			}
			h := parsed.Headers[0]
			cat, hasCat := h.ExtraHeaders["cat"].(string)
			got := view{Kid: h.KeyID, Cat: cat, HasCat: hasCat}
			if tt.want.Claims != nil {
				got.Claims = map[string]any{}
				for k := range tt.want.Claims {
					got.Claims[k] = all[k]
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
			if h.Algorithm != "RS256" {
				t.Errorf("alg = %q, want RS256", h.Algorithm)
			}
			if _, err := verify(t, e, token); (err == nil) != tt.wantVerify {
				t.Errorf("jwt.Verify error = %v, want success %v", err, tt.wantVerify)
			}
		})
	}
}

func TestMintSessionErrors(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	for _, s := range []clerkemu.Session{
		{},
		{UserID: "user_1", Permissions: []string{"org:projects:read"}},
		{UserID: "user_1", OrgID: "org_1", Permissions: []string{"projects:read"}},
		{UserID: "user_1", Version: 3},
	} {
		if _, err := e.MintSession(s); err == nil {
			t.Errorf("MintSession(%+v) succeeded, want error", s)
		}
	}
}

func TestBackendAuth(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	for _, key := range []string{"", "sk_test_wrong", e.SecretKey() + "x"} {
		_, err := (&jwks.Client{Backend: sdkBackend(srv.URL+"/v1", key)}).Get(context.Background(), &jwks.GetParams{})
		if got := apiStatus(t, err); got != http.StatusUnauthorized {
			t.Errorf("key %q: status %d, want 401", key, got)
		}
	}
	if e.JWKSFetches() != 0 {
		t.Errorf("JWKSFetches = %d after unauthorized requests, want 0", e.JWKSFetches())
	}
}

func TestJWKSAndRotation(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{KeyID: "ins_first"})
	client := &jwks.Client{Backend: backend}
	kids := func() []string {
		t.Helper()
		set, err := client.Get(context.Background(), &jwks.GetParams{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range set.Keys {
			if k.Algorithm != "RS256" || k.Use != "sig" {
				t.Errorf("key %s: alg %q use %q, want RS256 sig", k.KeyID, k.Algorithm, k.Use)
			}
			if _, ok := k.Key.(*rsa.PublicKey); !ok {
				t.Errorf("key %s: %T, want *rsa.PublicKey", k.KeyID, k.Key)
			}
			got = append(got, k.KeyID)
		}
		return got
	}
	if diff := cmp.Diff([]string{"ins_first"}, kids()); diff != "" {
		t.Errorf("JWKS (-want +got):\n%s", diff)
	}
	second, err := e.RotateKeyKeepOld()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{second, "ins_first"}, kids()); diff != "" {
		t.Errorf("JWKS after RotateKeyKeepOld (-want +got):\n%s", diff)
	}
	third, err := e.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{third}, kids()); diff != "" {
		t.Errorf("JWKS after RotateKey (-want +got):\n%s", diff)
	}
	if e.KeyID() != third || !strings.HasPrefix(third, "ins_") {
		t.Errorf("KeyID() = %q, want %q", e.KeyID(), third)
	}
	if got := e.JWKSFetches(); got != 3 {
		t.Errorf("JWKSFetches = %d, want 3", got)
	}
	token, err := e.MintSession(clerkemu.Session{UserID: "user_1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, e, token); err != nil {
		t.Errorf("token signed after rotation does not verify with PublicKeyPEM: %v", err)
	}
}

func TestJWKSDelay(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{})
	e.SetJWKSDelay(200 * time.Millisecond)
	start := time.Now()
	if _, err := (&jwks.Client{Backend: backend}).Get(context.Background(), &jwks.GetParams{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("JWKS answered after %v, want ≥ 200ms", d)
	}
}

func TestUsers(t *testing.T) {
	created := time.UnixMilli(1700000000123).UTC()
	e, backend := newEmulator(t, clerkemu.Options{})
	e.AddUser(clerkemu.User{ID: "user_alice", Email: "alice@example.com", SecondaryEmails: []string{"old@example.com"},
		FirstName: "Alice", LastName: "Liddell", ImageURL: "https://img.example/a.png", CreatedAt: created, UpdatedAt: created.Add(time.Hour)})
	e.AddUser(clerkemu.User{ID: "user_phone", FirstName: "Pho"})
	e.AddUser(clerkemu.User{ID: "user_gone"})
	e.DeleteUser("user_gone")
	auto, autoBackend := newEmulator(t, clerkemu.Options{AutoUsers: true})
	auto.DeleteUser("user_deleted")

	type view struct {
		ID, PrimaryEmail, FirstName, LastName string
		Emails                                []string
		CreatedAt, UpdatedAt                  int64
	}
	tests := []struct {
		name       string
		backend    clerksdk.Backend
		id         string
		want       view
		wantStatus int
	}{
		{name: "known", backend: backend, id: "user_alice", want: view{ID: "user_alice", PrimaryEmail: "alice@example.com",
			FirstName: "Alice", LastName: "Liddell", Emails: []string{"old@example.com", "alice@example.com"},
			CreatedAt: 1700000000123, UpdatedAt: 1700000000123 + 3600000}},
		{name: "phone only", backend: backend, id: "user_phone", want: view{ID: "user_phone", FirstName: "Pho"}},
		{name: "unknown", backend: backend, id: "user_nobody", wantStatus: http.StatusNotFound},
		{name: "deleted", backend: backend, id: "user_gone", wantStatus: http.StatusNotFound},
		{name: "auto", backend: autoBackend, id: "user_Zed42", want: view{ID: "user_Zed42", PrimaryEmail: "zed42@example.test",
			FirstName: "Dev", LastName: "User zed42", Emails: []string{"zed42@example.test"}}},
		{name: "auto deleted", backend: autoBackend, id: "user_deleted", wantStatus: http.StatusNotFound},
		{name: "auto malformed", backend: autoBackend, id: "org_1", wantStatus: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := (&user.Client{Backend: tt.backend}).Get(context.Background(), tt.id)
			if tt.wantStatus != 0 {
				if got := apiStatus(t, err); got != tt.wantStatus {
					t.Errorf("status %d, want %d", got, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := view{ID: u.ID, FirstName: deref(u.FirstName), LastName: deref(u.LastName)}
			for _, a := range u.EmailAddresses {
				got.Emails = append(got.Emails, a.EmailAddress)
				if u.PrimaryEmailAddressID != nil && a.ID == *u.PrimaryEmailAddressID {
					got.PrimaryEmail = a.EmailAddress
				}
			}
			if tt.want.CreatedAt != 0 {
				got.CreatedAt, got.UpdatedAt = u.CreatedAt, u.UpdatedAt
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("user (-want +got):\n%s", diff)
			}
		})
	}

	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		e.SetUsersStatus(status)
		_, err := (&user.Client{Backend: backend}).Get(context.Background(), "user_alice")
		if got := apiStatus(t, err); got != status {
			t.Errorf("SetUsersStatus(%d): status %d", status, got)
		}
	}
	e.SetUsersStatus(0)
	if _, err := (&user.Client{Backend: backend}).Get(context.Background(), "user_alice"); err != nil {
		t.Errorf("after SetUsersStatus(0): %v", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// mint mints a credential with an Emulator's Mint method, or fails the
// test.
func mint[S any](t *testing.T, mint func(S) (string, error), spec S) string {
	t.Helper()
	token, err := mint(spec)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestMachineTokens(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{})
	client := &m2m_token.Client{Backend: backend}
	valid := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a", Claims: map[string]any{"tenants": []string{"org_1"}}, Scopes: []string{"mch_b"}, TTL: time.Hour})
	forever := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a"})
	revoked := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a"})
	e.RevokeMachineToken(revoked)
	expired := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a", TTL: -time.Minute})
	created, err := client.Create(context.Background(), &m2m_token.CreateParams{
		SecondsUntilExpiration: clerksdk.Int64(60), Claims: clerksdk.JSONRawMessage(json.RawMessage(`{"k":"v"}`))})
	if err != nil {
		t.Fatal(err)
	}

	type view struct {
		Subject, Claims      string
		Scopes               []string
		Revoked, Expired     bool
		HasExpiration        bool
		TokenLooksRight, IDs bool
	}
	tests := []struct {
		name       string
		token      string
		reject     int
		want       view
		wantStatus int
	}{
		{name: "valid", token: valid, want: view{Subject: "mch_a", Claims: `{"tenants":["org_1"]}`, Scopes: []string{"mch_b"}, HasExpiration: true}},
		{name: "no expiry", token: forever, want: view{Subject: "mch_a", Claims: "null", Scopes: []string{}}},
		{name: "created over HTTP", token: created.Token, want: view{Subject: created.Subject, Claims: `{"k":"v"}`, Scopes: []string{}, HasExpiration: true}},
		{name: "revoked", token: revoked, want: view{Subject: "mch_a", Claims: "null", Scopes: []string{}, Revoked: true}},
		{name: "expired", token: expired, want: view{Subject: "mch_a", Claims: "null", Scopes: []string{}, Expired: true, HasExpiration: true}},
		{name: "revoked, reject mode", token: revoked, reject: http.StatusUnauthorized, wantStatus: http.StatusUnauthorized},
		{name: "expired, reject mode", token: expired, reject: http.StatusGone, wantStatus: http.StatusGone},
		{name: "valid, reject mode", token: valid, reject: http.StatusUnauthorized, want: view{Subject: "mch_a", Claims: `{"tenants":["org_1"]}`, Scopes: []string{"mch_b"}, HasExpiration: true}},
		{name: "unknown", token: "mt_" + strings.Repeat("0", 32), wantStatus: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRejectStatus(tt.reject)
			before := e.MachineVerifies()
			mt, err := client.Verify(context.Background(), &m2m_token.VerifyParams{Token: tt.token})
			if got := e.MachineVerifies() - before; got != 1 {
				t.Errorf("MachineVerifies grew by %d, want 1", got)
			}
			if tt.wantStatus != 0 {
				if got := apiStatus(t, err); got != tt.wantStatus {
					t.Errorf("status %d, want %d", got, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := view{Subject: mt.Subject, Claims: string(mt.Claims), Scopes: mt.Scopes, Revoked: mt.Revoked, Expired: mt.Expired,
				HasExpiration: mt.Expiration != nil, TokenLooksRight: true, IDs: strings.HasPrefix(mt.ID, "mt_") && mt.ID != tt.token}
			tt.want.TokenLooksRight, tt.want.IDs = true, true
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("verify (-want +got):\n%s", diff)
			}
		})
	}
	if len(valid) != len("mt_")+32 || !strings.HasPrefix(valid, "mt_") {
		t.Errorf("token %q: want mt_ + 32 characters", valid)
	}
	if got := e.UnknownVerifies(); got != 1 {
		t.Errorf("UnknownVerifies = %d, want 1 (only the unknown token; revoked and expired ones were issued)", got)
	}
}

func TestSignWebhook(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{WebhookSecret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))})
	body := []byte(`{"type":"user.created","data":{"id":"user_1"}}`)
	ts := time.Now()
	h := e.SignWebhook("msg_1", ts, body)

	// Recompute Svix's scheme by hand, so the emulator and a receiver using
	// the same library cannot agree on something else.
	mac := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
	fmt.Fprintf(mac, "msg_1.%d.%s", ts.Unix(), body)
	want := http.Header{
		"Svix-Id":        {"msg_1"},
		"Svix-Timestamp": {fmt.Sprint(ts.Unix())},
		"Svix-Signature": {"v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	wh, err := svix.NewWebhook(e.WebhookSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Errorf("svix Verify: %v", err)
	}
	if err := wh.Verify([]byte(`{"type":"user.deleted"}`), h); err == nil {
		t.Error("svix Verify accepted a different body")
	}

	random, _ := newEmulator(t, clerkemu.Options{})
	if !strings.HasPrefix(random.WebhookSecret(), "whsec_") || random.WebhookSecret() == e.WebhookSecret() {
		t.Errorf("default WebhookSecret = %q, want a random whsec_ secret", random.WebhookSecret())
	}
	if _, err := clerkemu.New(clerkemu.Options{Key: testKey(), WebhookSecret: "whsec_!!!"}); err == nil {
		t.Error("New accepted a webhook secret that is not base64")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".gatehouse", "clerk-key.pem")
	k1, err := clerkemu.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := clerkemu.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Error("second LoadOrCreateKey returned a different key")
	}
	// Same key, same kid: tokens from `gatehouse token` verify in `gatehouse dev`.
	e1, err := clerkemu.New(clerkemu.Options{Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := clerkemu.New(clerkemu.Options{Key: k2})
	if err != nil {
		t.Fatal(err)
	}
	if e1.KeyID() != e2.KeyID() || e1.PrivateKeyPEM() != e2.PrivateKeyPEM() {
		t.Errorf("kids %q and %q differ for the same key", e1.KeyID(), e2.KeyID())
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clerkemu.LoadOrCreateKey(bad); err == nil {
		t.Error("LoadOrCreateKey accepted a file without a key")
	}
}

// post sends body to the emulator's Backend API path through clerk-sdk-go's
// request machinery, as Gatehouse's client does, and decodes the answer.
type rawAnswer struct {
	clerksdk.APIResource
	Fields map[string]any
}

func (a *rawAnswer) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &a.Fields) }

type rawParams struct {
	clerksdk.APIParams
	body map[string]any
}

func (p *rawParams) MarshalJSON() ([]byte, error) { return json.Marshal(p.body) }

func post(backend clerksdk.Backend, path string, body map[string]any) (map[string]any, error) {
	req := clerksdk.NewAPIRequest(http.MethodPost, path)
	req.SetParams(&rawParams{body: body})
	ans := &rawAnswer{}
	err := backend.Call(context.Background(), req, ans)
	return ans.Fields, err
}

func TestAPIKeysAndOAuthTokens(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{})
	key := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "org_a", Scopes: []string{"org:projects:read"}, TTL: time.Hour})
	revokedKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "user_a"})
	e.RevokeAPIKey(revokedKey)
	expiredKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "user_a", TTL: -time.Minute})
	created, err := post(backend, "/api_keys", map[string]any{"name": "ci", "subject": "user_b", "scopes": []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	createdKey, _ := created["secret"].(string)
	oauth := mint(t, e.MintOAuthToken, clerkemu.OAuthToken{UserID: "user_a", ClientID: "client_1", Scopes: []string{"s"}, Audience: []string{"aud"}})
	revokedOAuth := mint(t, e.MintOAuthToken, clerkemu.OAuthToken{UserID: "user_a"})
	e.RevokeOAuthToken(revokedOAuth)
	minted, err := post(backend, "/emulator/oauth_access_tokens", map[string]any{"user_id": "user_c", "scopes": []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	mintedOAuth, _ := minted["token"].(string)

	type view struct {
		Object, Subject  string
		Revoked, Expired bool
		Status           int
	}
	tests := []struct {
		name   string
		path   string
		body   map[string]any
		reject int
		want   view
	}{
		{"key", "/api_keys/verify", map[string]any{"secret": key}, 0, view{Object: "api_key", Subject: "org_a"}},
		{"key created over HTTP", "/api_keys/verify", map[string]any{"secret": createdKey}, 0, view{Object: "api_key", Subject: "user_b"}},
		{"key revoked", "/api_keys/verify", map[string]any{"secret": revokedKey}, 0, view{Object: "api_key", Subject: "user_a", Revoked: true}},
		{"key expired", "/api_keys/verify", map[string]any{"secret": expiredKey}, 0, view{Object: "api_key", Subject: "user_a", Expired: true}},
		{"key revoked, reject mode", "/api_keys/verify", map[string]any{"secret": revokedKey}, http.StatusBadRequest, view{Status: http.StatusBadRequest}},
		{"key unknown", "/api_keys/verify", map[string]any{"secret": "ak_nope"}, 0, view{Status: http.StatusNotFound}},
		{"OAuth token", "/oauth_applications/access_tokens/verify", map[string]any{"access_token": oauth}, 0, view{Object: "clerk_idp_oauth_access_token", Subject: "user_a"}},
		{"OAuth token minted over HTTP", "/oauth_applications/access_tokens/verify", map[string]any{"access_token": mintedOAuth}, 0, view{Object: "clerk_idp_oauth_access_token", Subject: "user_c"}},
		{"OAuth revoked", "/oauth_applications/access_tokens/verify", map[string]any{"access_token": revokedOAuth}, 0, view{Object: "clerk_idp_oauth_access_token", Subject: "user_a", Revoked: true}},
		{"OAuth unknown", "/oauth_applications/access_tokens/verify", map[string]any{"access_token": "oat_nope"}, 0, view{Status: http.StatusNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRejectStatus(tt.reject)
			defer e.SetRejectStatus(0)
			ans, err := post(backend, tt.path, tt.body)
			var got view
			if err != nil {
				got.Status = apiStatus(t, err)
			} else {
				got.Object, _ = ans["object"].(string)
				got.Subject, _ = ans["subject"].(string)
				got.Revoked, _ = ans["revoked"].(bool)
				got.Expired, _ = ans["expired"].(bool)
				if _, ok := ans["secret"]; ok {
					t.Errorf("verify answered with the secret")
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("verify (-want +got):\n%s", diff)
			}
		})
	}
	for _, s := range []string{key, createdKey} {
		if !strings.HasPrefix(s, "ak_") || len(s) != len("ak_")+32 {
			t.Errorf("API key %q: want ak_ + 32 characters", s)
		}
	}
	for _, s := range []string{oauth, mintedOAuth} {
		if !strings.HasPrefix(s, "oat_") || len(s) != len("oat_")+32 {
			t.Errorf("OAuth token %q: want oat_ + 32 characters", s)
		}
	}
	if got := e.APIKeyVerifies(); got != 6 {
		t.Errorf("APIKeyVerifies = %d, want 6", got)
	}
	if got := e.OAuthVerifies(); got != 4 {
		t.Errorf("OAuthVerifies = %d, want 4", got)
	}
	if got := e.UnknownVerifies(); got != 2 {
		t.Errorf("UnknownVerifies = %d, want 2 (the unknown key and OAuth token)", got)
	}
}

// TestMachineAndOAuthJWTs: the JWT forms verify with the instance's JWKS
// key (clerk-sdk-go, as for sessions) and carry Clerk's headers and claims.
func TestMachineAndOAuthJWTs(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{})
	m2m, err := e.MintMachineToken(clerkemu.Machine{ID: "mch_a", JWT: true, Scopes: []string{"mch_b"}, Claims: map[string]any{"tenants": []string{"org_1"}}})
	if err != nil {
		t.Fatal(err)
	}
	oauth, err := e.MintOAuthToken(clerkemu.OAuthToken{UserID: "user_a", ClientID: "client_1", Scopes: []string{"a", "b"}, Audience: []string{"https://api"}, JWT: true})
	if err != nil {
		t.Fatal(err)
	}
	created, err := (&m2m_token.Client{Backend: backend}).Create(context.Background(), &m2m_token.CreateParams{})
	if err != nil {
		t.Fatal(err)
	}
	createdJWT, err := post(backend, "/m2m_tokens", map[string]any{"token_format": "jwt", "claims": map[string]any{"tenants": []string{"org_2"}}})
	if err != nil {
		t.Fatal(err)
	}
	createdJWTToken, _ := createdJWT["token"].(string)

	jwks, err := (&jwks.Client{Backend: backend}).Get(context.Background(), &jwks.GetParams{})
	if err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS: %v, %v", jwks, err)
	}
	type view struct {
		Typ, Cat string
		Claims   map[string]any
	}
	decode := func(t *testing.T, token string) view {
		t.Helper()
		parsed, err := josejwt.ParseSigned(token)
		if err != nil {
			t.Fatal(err)
		}
		claims := map[string]any{}
		if err := parsed.Claims(jwks.Keys[0].Key, &claims); err != nil {
			t.Fatalf("signature with the JWKS key: %v", err)
		}
		for _, k := range []string{"iat", "nbf", "exp", "jti"} {
			if _, ok := claims[k]; !ok {
				t.Errorf("no %s claim", k)
			}
			delete(claims, k)
		}
		h := parsed.Headers[0]
		cat, _ := h.ExtraHeaders["cat"].(string)
		typ, _ := h.ExtraHeaders["typ"].(string)
		if h.KeyID != e.KeyID() {
			t.Errorf("kid = %q, want %q", h.KeyID, e.KeyID())
		}
		return view{Typ: typ, Cat: cat, Claims: claims}
	}
	tests := []struct {
		name  string
		token string
		want  view
	}{
		{"M2M", m2m, view{Typ: "JWT", Cat: clerkemu.CategoryMachine, Claims: map[string]any{
			"iss": e.Issuer(), "sub": "mch_a", "scopes": "mch_b", "tenants": []any{"org_1"}}}},
		{"M2M created over HTTP", createdJWTToken, view{Typ: "JWT", Cat: clerkemu.CategoryMachine, Claims: map[string]any{
			"iss": e.Issuer(), "sub": createdJWT["subject"], "tenants": []any{"org_2"}}}},
		{"OAuth", oauth, view{Typ: "at+jwt", Claims: map[string]any{
			"iss": e.Issuer(), "sub": "user_a", "client_id": "client_1", "scope": "a b", "aud": []any{"https://api"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, decode(t, tt.token)); diff != "" {
				t.Errorf("JWT (-want +got):\n%s", diff)
			}
		})
	}
	if !strings.HasPrefix(created.Token, "mt_") {
		t.Errorf("default token_format: %q, want opaque mt_…", created.Token)
	}
	if e.Verifies() != 0 {
		t.Errorf("minting made %d verify requests", e.Verifies())
	}
}

// TestVerifyFaults: SetVerifyStatus answers every verify endpoint with the
// status; HoldVerifies keeps requests in flight until released, and counts
// those whose client went away.
func TestVerifyFaults(t *testing.T) {
	e, backend := newEmulator(t, clerkemu.Options{})
	key, err := e.MintAPIKey(clerkemu.APIKey{Subject: "user_a"})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]map[string]any{
		"/m2m_tokens/verify":                       {"token": "mt_x"},
		"/api_keys/verify":                         {"secret": key},
		"/oauth_applications/access_tokens/verify": {"access_token": "oat_x"},
	}
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		e.SetVerifyStatus(status)
		for path, body := range paths {
			if _, err := post(backend, path, body); apiStatus(t, err) != status {
				t.Errorf("%s with SetVerifyStatus(%d): %v", path, status, err)
			}
		}
	}
	e.SetVerifyStatus(0)
	if _, err := post(backend, "/api_keys/verify", paths["/api_keys/verify"]); err != nil {
		t.Errorf("after SetVerifyStatus(0): %v", err)
	}

	release := e.HoldVerifies()
	answered := make(chan error, 1)
	go func() { _, err := post(backend, "/api_keys/verify", paths["/api_keys/verify"]); answered <- err }()
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan error, 1)
	go func() {
		req := clerksdk.NewAPIRequest(http.MethodPost, "/api_keys/verify")
		req.SetParams(&rawParams{body: paths["/api_keys/verify"]})
		abandoned <- backend.Call(ctx, req, &rawAnswer{})
	}()
	for e.VerifiesInFlight() != 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-abandoned
	for e.VerifiesCanceled() != 1 {
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-answered; err != nil {
		t.Errorf("held request after release: %v", err)
	}
	if got := e.Verifies(); got != 9 {
		t.Errorf("Verifies = %d, want 9", got)
	}
}
