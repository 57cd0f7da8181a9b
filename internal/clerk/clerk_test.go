package clerk_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newEmulator serves a Clerk emulator and returns it with a Client for it.
func newEmulator(t *testing.T, opts clerkemu.Options) (*clerkemu.Emulator, *clerk.Client) {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testKey()
	}
	e, err := clerkemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e, clerk.New(clerk.Config{APIURL: serve(t, e), SecretKey: e.SecretKey()})
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

// serve serves e's Backend API and returns its base URL.
func serve(t *testing.T, e *clerkemu.Emulator) string {
	t.Helper()
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

// newFixture serves one canned answer for every request.
func newFixture(t *testing.T, status int, body string) *clerk.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: "sk_test_x"})
}

// unreachable returns a Client for an address nothing listens on.
func unreachable(t *testing.T) *clerk.Client {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: "sk_test_x"})
}

// sentinel names the sentinel err wraps, for comparing in tables.
func sentinel(err error) string {
	for _, s := range []error{clerk.ErrNotFound, clerk.ErrUnavailable, clerk.ErrTokenRevoked, clerk.ErrTokenExpired, clerk.ErrInvalidToken, clerk.ErrUnknownKey} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err != nil {
		return "other"
	}
	return ""
}

func TestUser(t *testing.T) {
	created := time.UnixMilli(1700000000123).UTC()
	e, client := newEmulator(t, clerkemu.Options{})
	e.AddUser(clerkemu.User{ID: "user_alice", Email: "alice@example.com", SecondaryEmails: []string{"old@example.com"},
		FirstName: "Alice", LastName: "Liddell", ImageURL: "https://img.example/a.png", CreatedAt: created, UpdatedAt: created.Add(time.Second)})
	e.AddUser(clerkemu.User{ID: "user_phone", FirstName: "Pho", CreatedAt: created, UpdatedAt: created})
	e.AddUser(clerkemu.User{ID: "user_gone"})
	e.DeleteUser("user_gone")
	down, downClient := newEmulator(t, clerkemu.Options{})
	down.SetUsersStatus(http.StatusServiceUnavailable)
	limited, limitedClient := newEmulator(t, clerkemu.Options{})
	limited.SetUsersStatus(http.StatusTooManyRequests)
	wrongKey := clerk.New(clerk.Config{APIURL: serve(t, e), SecretKey: "sk_test_wrong"})

	tests := []struct {
		name   string
		client *clerk.Client
		id     string
		want   *clerk.User
		err    string
	}{
		{name: "primary email chosen by id", client: client, id: "user_alice", want: &clerk.User{ID: "user_alice", Email: "alice@example.com",
			FirstName: "Alice", LastName: "Liddell", ImageURL: "https://img.example/a.png", CreatedAt: created, UpdatedAt: created.Add(time.Second)}},
		{name: "phone only", client: client, id: "user_phone", want: &clerk.User{ID: "user_phone", FirstName: "Pho", CreatedAt: created, UpdatedAt: created}},
		{name: "unknown", client: client, id: "user_nobody", err: clerk.ErrNotFound.Error()},
		{name: "deleted", client: client, id: "user_gone", err: clerk.ErrNotFound.Error()},
		{name: "malformed id", client: client, id: "user_../jwks", err: clerk.ErrNotFound.Error()},
		{name: "503", client: downClient, id: "user_alice", err: clerk.ErrUnavailable.Error()},
		{name: "429", client: limitedClient, id: "user_alice", err: clerk.ErrUnavailable.Error()},
		{name: "502 from a proxy", client: newFixture(t, http.StatusBadGateway, "<html>Bad Gateway</html>"), id: "user_alice", err: clerk.ErrUnavailable.Error()},
		{name: "unreachable", client: unreachable(t), id: "user_alice", err: clerk.ErrUnavailable.Error()},
		{name: "wrong secret key", client: wrongKey, id: "user_alice", err: "other"},
		{name: "garbage 200", client: newFixture(t, http.StatusOK, "{"), id: "user_alice", err: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.client.User(context.Background(), tt.id)
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Fatalf("error %v (-want +got):\n%s", err, diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("User (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUserClerkJSON decodes a user as Clerk's Backend API documents it, so
// the client is not only checked against the emulator.
func TestUserClerkJSON(t *testing.T) {
	client := newFixture(t, http.StatusOK, `{
		"object": "user", "id": "user_29w83sxmDNGwOuEthce5gg56FcC",
		"username": null, "first_name": "Ada", "last_name": null,
		"image_url": "https://img.clerk.com/x", "has_image": true,
		"primary_email_address_id": "idn_2",
		"primary_phone_number_id": null,
		"email_addresses": [
			{"id": "idn_1", "object": "email_address", "email_address": "first@example.com", "reserved": false,
			 "verification": {"status": "verified", "strategy": "email_code", "attempts": null, "expire_at": null}, "linked_to": []},
			{"id": "idn_2", "object": "email_address", "email_address": "ada@example.com", "reserved": false,
			 "verification": {"status": "verified", "strategy": "email_code", "attempts": null, "expire_at": null}, "linked_to": []}
		],
		"phone_numbers": [], "web3_wallets": [], "external_accounts": [],
		"public_metadata": {}, "private_metadata": {}, "unsafe_metadata": {},
		"created_at": 1654012591514, "updated_at": 1654012591835
	}`)
	got, err := client.User(context.Background(), "user_29w83sxmDNGwOuEthce5gg56FcC")
	if err != nil {
		t.Fatal(err)
	}
	want := &clerk.User{ID: "user_29w83sxmDNGwOuEthce5gg56FcC", Email: "ada@example.com", FirstName: "Ada", ImageURL: "https://img.clerk.com/x",
		CreatedAt: time.UnixMilli(1654012591514).UTC(), UpdatedAt: time.UnixMilli(1654012591835).UTC()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("User (-want +got):\n%s", diff)
	}
}

func TestVerifyMachineToken(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	valid := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a", Claims: map[string]any{"tenants": []string{"org_1"}}, Scopes: []string{"mch_b"}, TTL: time.Hour})
	forever := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a"})
	revoked := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a"})
	e.RevokeMachineToken(revoked)
	expired := mint(t, e.MintMachineToken, clerkemu.Machine{ID: "mch_a", TTL: -time.Second})

	type view struct {
		Subject, Claims string
		Scopes          []string
		Expires         bool
	}
	tests := []struct {
		name   string
		client *clerk.Client
		token  string
		reject int // emulator answers revoked/expired with this status
		want   *view
		err    string
	}{
		{name: "valid", client: client, token: valid, want: &view{Subject: "mch_a", Claims: `{"tenants":["org_1"]}`, Scopes: []string{"mch_b"}, Expires: true}},
		{name: "no expiry, no claims", client: client, token: forever, want: &view{Subject: "mch_a", Scopes: []string{}}},
		{name: "revoked, 200", client: client, token: revoked, err: clerk.ErrTokenRevoked.Error()},
		{name: "expired, 200", client: client, token: expired, err: clerk.ErrTokenExpired.Error()},
		{name: "revoked, 4xx", client: client, token: revoked, reject: http.StatusUnauthorized, err: clerk.ErrInvalidToken.Error()},
		{name: "expired, 4xx", client: client, token: expired, reject: http.StatusGone, err: clerk.ErrInvalidToken.Error()},
		{name: "unknown", client: client, token: "mt_" + strings.Repeat("a", 32), err: clerk.ErrInvalidToken.Error()},
		{name: "empty", client: client, token: "", err: clerk.ErrInvalidToken.Error()},
		{name: "503", client: newFixture(t, http.StatusServiceUnavailable, `{"errors":[{"code":"internal","message":"x","long_message":"x"}]}`), token: valid, err: clerk.ErrUnavailable.Error()},
		{name: "429", client: newFixture(t, http.StatusTooManyRequests, "slow down"), token: valid, err: clerk.ErrUnavailable.Error()},
		{name: "unreachable", client: unreachable(t), token: valid, err: clerk.ErrUnavailable.Error()},
		{name: "4xx without a Clerk body", client: newFixture(t, http.StatusBadRequest, "bad request"), token: valid, err: clerk.ErrInvalidToken.Error()},
		{name: "expiration past, flag unset", client: newFixture(t, http.StatusOK,
			`{"object":"machine_to_machine_token","id":"mt_1","subject":"mch_a","revoked":false,"expired":false,"expiration":1716883200}`),
			token: valid, err: clerk.ErrTokenExpired.Error()},
		{name: "wrong secret key", client: clerk.New(clerk.Config{APIURL: serve(t, e), SecretKey: "sk_test_wrong"}), token: valid, err: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRejectStatus(tt.reject)
			mt, err := tt.client.VerifyMachineToken(context.Background(), tt.token)
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Fatalf("error %v (-want +got):\n%s", err, diff)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
			var got *view
			if mt != nil {
				got = &view{Subject: mt.Subject, Claims: string(mt.Claims), Scopes: mt.Scopes, Expires: !mt.ExpiresAt.IsZero()}
				if !strings.HasPrefix(mt.ID, "mt_") || mt.ID == tt.token {
					t.Errorf("ID = %q, want the token's mt_ id", mt.ID)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MachineToken (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifyMachineTokenExpiresAt(t *testing.T) {
	tests := []struct {
		name       string
		expiration string
		want       time.Time
	}{
		{"milliseconds", "4102444800000", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"seconds", "4102444800", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"none", "null", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"object": "machine_to_machine_token", "id": "mt_1", "subject": "mch_a",
				"claims": nil, "scopes": []string{}, "revoked": false, "expired": false, "expiration": json.RawMessage(tt.expiration)})
			mt, err := newFixture(t, http.StatusOK, string(body)).VerifyMachineToken(context.Background(), "mt_x")
			if err != nil {
				t.Fatal(err)
			}
			if !mt.ExpiresAt.Equal(tt.want) {
				t.Errorf("ExpiresAt = %v, want %v", mt.ExpiresAt, tt.want)
			}
		})
	}
}

// TestVerifyAPIKeyAndOAuthToken checks the two verifications the SDK has no
// client for, against the emulator and against answers shaped as Clerk
// documents them: what each answer means, and that no error quotes the
// credential.
func TestVerifyAPIKeyAndOAuthToken(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	userKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "user_a", Scopes: []string{"org:projects:read"}, Claims: map[string]any{"k": "v"}, TTL: time.Hour})
	orgKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "org_a"})
	revokedKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "user_a"})
	e.RevokeAPIKey(revokedKey)
	expiredKey := mint(t, e.MintAPIKey, clerkemu.APIKey{Subject: "user_a", TTL: -time.Second})
	oauth := mint(t, e.MintOAuthToken, clerkemu.OAuthToken{UserID: "user_a", ClientID: "client_1", Scopes: []string{"email", "org:projects:read"}, Audience: []string{"https://api.example.com"}})
	revokedOAuth := mint(t, e.MintOAuthToken, clerkemu.OAuthToken{UserID: "user_a"})
	e.RevokeOAuthToken(revokedOAuth)
	expiredOAuth := mint(t, e.MintOAuthToken, clerkemu.OAuthToken{UserID: "user_a", TTL: -time.Second})

	// view is what either verification returns, in one shape.
	type view struct {
		ID, Subject, ClientID, Claims string
		Scopes, Audience              []string
		Expires                       bool
	}
	apiKey := func(c *clerk.Client, s string) (*view, error) {
		k, err := c.VerifyAPIKey(context.Background(), s)
		if k == nil {
			return nil, err
		}
		return &view{ID: k.ID[:3], Subject: k.Subject, Claims: string(k.Claims), Scopes: k.Scopes, Expires: !k.ExpiresAt.IsZero()}, err
	}
	oauthToken := func(c *clerk.Client, s string) (*view, error) {
		o, err := c.VerifyOAuthToken(context.Background(), s)
		if o == nil {
			return nil, err
		}
		return &view{ID: o.ID[:4], Subject: o.Subject, ClientID: o.ClientID, Scopes: o.Scopes, Audience: o.Audience, Expires: !o.ExpiresAt.IsZero()}, err
	}
	// Clerk's documented answers (Backend API reference, POST
	// /api_keys/verify and /oauth_applications/access_tokens/verify).
	const clerkAPIKey = `{"object":"api_key","id":"ak_3beecc9c60adb5f9b850e91a8ee1e992","type":"api_key",
		"subject":"user_2xhFjEI5X2qWRvtV13BzSj8H6Dk","name":"MY_SERVICE_API_KEY","description":"This is my API Key",
		"claims":{"foo":"bar"},"scopes":["scope:read","scope:write"],"revoked":false,"revocation_reason":null,
		"expired":false,"expiration":null,"created_by":"user_2xhFjEI5X2qWRvtV13BzSj8H6Dk","last_used_at":1716883200,
		"created_at":1716883200,"updated_at":1716883200}`
	const clerkOAuth = `{"object":"clerk_idp_oauth_access_token","id":"oat_0ef5a7a33d87ed87ee7954c845d80450",
		"client_id":"client_2xhFjEI5X2qWRvtV13BzSj8H6Dk","subject":"user_2xhFjEI5X2qWRvtV13BzSj8H6Dk",
		"scopes":["read","write"],"revoked":false,"revocation_reason":null,"expired":false,"expiration":4102444800,
		"created_at":1716883200,"updated_at":1716883200}`
	const clerk404 = `{"errors":[{"code":"resource_not_found","message":"not found","long_message":"not found"}]}`
	wrongKey := clerk.New(clerk.Config{APIURL: serve(t, e), SecretKey: "sk_test_wrong"})

	tests := []struct {
		name   string
		verify func(*clerk.Client, string) (*view, error)
		client *clerk.Client
		token  string
		reject int
		want   *view
		err    string
	}{
		{name: "user's key", verify: apiKey, client: client, token: userKey,
			want: &view{ID: "ak_", Subject: "user_a", Claims: `{"k":"v"}`, Scopes: []string{"org:projects:read"}, Expires: true}},
		{name: "organization's key", verify: apiKey, client: client, token: orgKey, want: &view{ID: "ak_", Subject: "org_a", Scopes: []string{}}},
		{name: "key: Clerk's JSON", verify: apiKey, client: newFixture(t, http.StatusOK, clerkAPIKey), token: userKey,
			want: &view{ID: "ak_", Subject: "user_2xhFjEI5X2qWRvtV13BzSj8H6Dk", Claims: `{"foo":"bar"}`, Scopes: []string{"scope:read", "scope:write"}}},
		{name: "key revoked, 200", verify: apiKey, client: client, token: revokedKey, err: clerk.ErrTokenRevoked.Error()},
		{name: "key expired, 200", verify: apiKey, client: client, token: expiredKey, err: clerk.ErrTokenExpired.Error()},
		{name: "key revoked, 4xx", verify: apiKey, client: client, token: revokedKey, reject: http.StatusBadRequest, err: clerk.ErrInvalidToken.Error()},
		{name: "key unknown, 404", verify: apiKey, client: client, token: "ak_" + strings.Repeat("x", 32), err: clerk.ErrInvalidToken.Error()},
		{name: "key: wrong secret key", verify: apiKey, client: wrongKey, token: userKey, err: "other"},
		{name: "key: 503", verify: apiKey, client: newFixture(t, http.StatusServiceUnavailable, "<html>down</html>"), token: userKey, err: clerk.ErrUnavailable.Error()},
		{name: "key: 429", verify: apiKey, client: newFixture(t, http.StatusTooManyRequests, "slow down"), token: userKey, err: clerk.ErrUnavailable.Error()},
		{name: "key: unreachable", verify: apiKey, client: unreachable(t), token: userKey, err: clerk.ErrUnavailable.Error()},
		{name: "key: garbage 200", verify: apiKey, client: newFixture(t, http.StatusOK, "{"), token: userKey, err: "other"},
		{name: "key: empty", verify: apiKey, client: client, token: "", err: clerk.ErrInvalidToken.Error()},

		{name: "OAuth token", verify: oauthToken, client: client, token: oauth,
			want: &view{ID: "oat_", Subject: "user_a", ClientID: "client_1", Scopes: []string{"email", "org:projects:read"}, Audience: []string{"https://api.example.com"}, Expires: true}},
		{name: "OAuth: Clerk's JSON", verify: oauthToken, client: newFixture(t, http.StatusOK, clerkOAuth), token: oauth,
			want: &view{ID: "oat_", Subject: "user_2xhFjEI5X2qWRvtV13BzSj8H6Dk", ClientID: "client_2xhFjEI5X2qWRvtV13BzSj8H6Dk", Scopes: []string{"read", "write"}, Expires: true}},
		{name: "OAuth: aud as a string", verify: oauthToken, client: newFixture(t, http.StatusOK, `{"id":"oat_1","subject":"user_a","aud":"x"}`), token: oauth,
			want: &view{ID: "oat_", Subject: "user_a", Audience: []string{"x"}}},
		{name: "OAuth revoked, 200", verify: oauthToken, client: client, token: revokedOAuth, err: clerk.ErrTokenRevoked.Error()},
		{name: "OAuth expired, 200", verify: oauthToken, client: client, token: expiredOAuth, err: clerk.ErrTokenExpired.Error()},
		{name: "OAuth expired, 4xx", verify: oauthToken, client: client, token: expiredOAuth, reject: http.StatusGone, err: clerk.ErrInvalidToken.Error()},
		{name: "OAuth unknown, 404", verify: oauthToken, client: newFixture(t, http.StatusNotFound, clerk404), token: oauth, err: clerk.ErrInvalidToken.Error()},
		{name: "OAuth: 500", verify: oauthToken, client: newFixture(t, http.StatusInternalServerError, clerk404), token: oauth, err: clerk.ErrUnavailable.Error()},
		{name: "OAuth: wrong secret key", verify: oauthToken, client: wrongKey, token: oauth, err: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetRejectStatus(tt.reject)
			defer e.SetRejectStatus(0)
			got, err := tt.verify(tt.client, tt.token)
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Fatalf("error %v (-want +got):\n%s", err, diff)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the credential", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("verified (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifySendsClerksRequest pins the request bodies and paths, which the
// SDK does not build for these two endpoints.
func TestVerifySendsClerksRequest(t *testing.T) {
	type request struct{ Method, Path, Body, Auth string }
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Method, r.URL.Path, string(body), r.Header.Get("Authorization")}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"resource_not_found","message":"x","long_message":"x"}]}`)
	}))
	t.Cleanup(srv.Close)
	c := clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: "sk_test_x"})
	ctx := context.Background()
	tests := []struct {
		call func() error
		want request
	}{
		{func() error { _, err := c.VerifyAPIKey(ctx, "ak_secret"); return err },
			request{"POST", "/v1/api_keys/verify", `{"secret":"ak_secret"}`, "Bearer sk_test_x"}},
		{func() error { _, err := c.VerifyOAuthToken(ctx, "oat_secret"); return err },
			request{"POST", "/v1/oauth_applications/access_tokens/verify", `{"access_token":"oat_secret"}`, "Bearer sk_test_x"}},
		{func() error { _, err := c.VerifyMachineToken(ctx, "mt_secret"); return err },
			request{"POST", "/v1/m2m_tokens/verify", `{"token":"mt_secret"}`, "Bearer sk_test_x"}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Path, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, clerk.ErrInvalidToken) {
				t.Errorf("err = %v, want ErrInvalidToken", err)
			}
			if diff := cmp.Diff(tt.want, <-got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}
