package clerk_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

// keySource is the interface the auth package declares.
type keySource interface {
	Key(ctx context.Context, kid string) (*clerksdk.JSONWebKey, error)
}

var (
	_ keySource = (*clerk.KeySet)(nil)
	_ keySource = (*clerk.StaticKey)(nil)
)

// clock is a settable Now for KeySetOptions.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fetchLog records OnFetch results.
type fetchLog struct {
	mu      sync.Mutex
	results []string
}

func (l *fetchLog) OnFetch(result string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.results = append(l.results, result)
}

func (l *fetchLog) Results() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.results...)
}

// newKeySet returns a KeySet on a frozen clock, with its fetch log.
func newKeySet(t *testing.T, c *clerk.Client) (*clerk.KeySet, *clock, *fetchLog) {
	t.Helper()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	log := &fetchLog{}
	return c.NewKeySet(clerk.KeySetOptions{RefetchInterval: 5 * time.Second, OnFetch: log.OnFetch, Now: clk.Now}), clk, log
}

func TestKeySetVerifiesSession(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	ks, _, log := newKeySet(t, client)
	if ks.Ready() {
		t.Fatal("Ready before any fetch")
	}
	token := mint(t, e.MintSession, clerkemu.Session{UserID: "user_1"})
	key, err := ks.Key(context.Background(), e.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	iss := e.Issuer()
	claims, err := jwt.Verify(context.Background(), &jwt.VerifyParams{Token: token, JWK: key, ProxyURL: &iss})
	if err != nil {
		t.Fatalf("jwt.Verify with the fetched key: %v", err)
	}
	if claims.Subject != "user_1" {
		t.Errorf("sub = %q", claims.Subject)
	}
	if !ks.Ready() {
		t.Error("not Ready after a successful fetch")
	}
	for range 10 {
		if _, err := ks.Key(context.Background(), e.KeyID()); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"ok"}, log.Results()); diff != "" {
		t.Errorf("fetches (-want +got):\n%s", diff)
	}
}

func TestKeySetForgedKidsFetchOncePerWindow(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	ks, clk, log := newKeySet(t, client)
	lookupRandom := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		var unknown atomic.Int64
		for i := range n {
			wg.Go(func() {
				_, err := ks.Key(context.Background(), fmt.Sprintf("ins_forged_%d_%d", i, time.Now().UnixNano()))
				if errors.Is(err, clerk.ErrUnknownKey) {
					unknown.Add(1)
				} else {
					t.Errorf("forged kid: err = %v, want ErrUnknownKey", err)
				}
			})
		}
		wg.Wait()
		if got := unknown.Load(); got != int64(n) {
			t.Errorf("%d of %d lookups were ErrUnknownKey", got, n)
		}
	}

	steps := []struct {
		name        string
		advance     time.Duration
		lookups     int
		wantFetches int64
	}{
		{"flood", 0, 1000, 1},
		{"same window", 4 * time.Second, 100, 1},
		{"next window", 1 * time.Second, 1000, 2},
		{"window after", 5 * time.Second, 1, 3},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		lookupRandom(st.lookups)
		if got := e.JWKSFetches(); got != st.wantFetches {
			t.Errorf("%s: %d JWKS fetches, want %d", st.name, got, st.wantFetches)
		}
	}
	if _, err := ks.Key(context.Background(), e.KeyID()); err != nil {
		t.Errorf("real kid after the flood: %v", err)
	}
	if diff := cmp.Diff([]string{"ok", "ok", "ok"}, log.Results()); diff != "" {
		t.Errorf("fetches (-want +got):\n%s", diff)
	}
}

func TestKeySetRotation(t *testing.T) {
	tests := []struct {
		name       string
		keepOld    bool
		wantOldErr error
	}{
		{"rotate", false, clerk.ErrUnknownKey},
		{"rotate keeping the old key", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, client := newEmulator(t, clerkemu.Options{})
			ks, clk, _ := newKeySet(t, client)
			ctx := context.Background()
			oldKid := e.KeyID()
			if _, err := ks.Key(ctx, oldKid); err != nil {
				t.Fatal(err)
			}
			rotate := e.RotateKey
			if tt.keepOld {
				rotate = e.RotateKeyKeepOld
			}
			newKid, err := rotate()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Key(ctx, newKid); !errors.Is(err, clerk.ErrUnknownKey) {
				t.Errorf("new kid within the window: err = %v, want ErrUnknownKey", err)
			}
			clk.Advance(5 * time.Second)
			if _, err := ks.Key(ctx, newKid); err != nil {
				t.Errorf("new kid after the window: %v", err)
			}
			if _, err := ks.Key(ctx, oldKid); !errors.Is(err, tt.wantOldErr) {
				t.Errorf("old kid after refetch: err = %v, want %v", err, tt.wantOldErr)
			}
			if got := e.JWKSFetches(); got != 2 {
				t.Errorf("%d JWKS fetches, want 2", got)
			}
		})
	}
}

func TestKeySetCallerDeadline(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	e.SetJWKSDelay(500 * time.Millisecond)
	ks, _, log := newKeySet(t, client)

	impatient := make(chan error, 1)
	var elapsed time.Duration
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := ks.Key(ctx, e.KeyID())
		elapsed = time.Since(start)
		impatient <- err
	}()
	for e.JWKSFetches() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The clock is frozen: this caller finds the key only by joining the
	// fetch the impatient one started.
	key, err := ks.Key(context.Background(), e.KeyID())
	if err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if key.KeyID != e.KeyID() {
		t.Errorf("kid = %q", key.KeyID)
	}
	if err := <-impatient; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: err = %v, want context.DeadlineExceeded", err)
	}
	if elapsed > 300*time.Millisecond {
		t.Errorf("impatient caller returned after %v, want about its 50ms deadline", elapsed)
	}
	if got := e.JWKSFetches(); got != 1 {
		t.Errorf("%d JWKS fetches, want 1", got)
	}
	if diff := cmp.Diff([]string{"ok"}, log.Results()); diff != "" {
		t.Errorf("fetches (-want +got):\n%s", diff)
	}
}

func TestKeySetFetchFailure(t *testing.T) {
	var hits atomic.Int64
	failing := func(status int) *clerk.Client {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(status)
			fmt.Fprint(w, `{"errors":[{"code":"x","message":"x","long_message":"x"}]}`)
		}))
		t.Cleanup(srv.Close)
		return clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: "sk_test_x"})
	}
	tests := []struct {
		name      string
		client    *clerk.Client
		err       string
		wantHits  int64
		wantFetch []string
	}{
		{"503", failing(http.StatusServiceUnavailable), clerk.ErrUnavailable.Error(), 1, []string{"error"}},
		{"401", failing(http.StatusUnauthorized), "other", 1, []string{"error"}},
		{"unreachable", unreachable(t), clerk.ErrUnavailable.Error(), 0, []string{"error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits.Store(0)
			ks, _, log := newKeySet(t, tt.client)
			_, err := ks.Key(context.Background(), "ins_1")
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Errorf("first lookup: error %v (-want +got):\n%s", err, diff)
			}
			// Within the window a failed fetch is not retried, and its
			// failure, not ErrUnknownKey, answers every unknown kid.
			_, err = ks.Key(context.Background(), "ins_2")
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Errorf("lookup within the window: error %v (-want +got):\n%s", err, diff)
			}
			err = ks.Refresh(context.Background())
			if diff := cmp.Diff(tt.err, sentinel(err)); diff != "" {
				t.Errorf("Refresh within the window: error %v (-want +got):\n%s", err, diff)
			}
			if hits.Load() != tt.wantHits {
				t.Errorf("%d requests, want %d", hits.Load(), tt.wantHits)
			}
			if diff := cmp.Diff(tt.wantFetch, log.Results()); diff != "" {
				t.Errorf("fetches (-want +got):\n%s", diff)
			}
			if ks.Ready() {
				t.Error("Ready after failed fetches only")
			}
		})
	}
}

func TestKeySetKeepsOnlyRS256SigningKeys(t *testing.T) {
	rsaKey := func(kid, alg, use string) jose.JSONWebKey {
		return jose.JSONWebKey{Key: &testKey().PublicKey, KeyID: kid, Algorithm: alg, Use: use}
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(map[string]any{"keys": []jose.JSONWebKey{
		rsaKey("sig", "RS256", "sig"),
		rsaKey("no-use", "RS256", ""),
		rsaKey("enc", "RS256", "enc"),
		rsaKey("rs512", "RS512", "sig"),
		rsaKey("", "RS256", "sig"),
		{Key: &ec.PublicKey, KeyID: "ec", Algorithm: "ES256", Use: "sig"},
		{Key: &ec.PublicKey, KeyID: "ec-claims-rs256", Algorithm: "RS256", Use: "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ks, clk, _ := newKeySet(t, newFixture(t, http.StatusOK, string(set)))
	var got []string
	for _, kid := range []string{"sig", "no-use", "enc", "rs512", "ec", "ec-claims-rs256"} {
		clk.Advance(time.Minute) // every lookup may fetch
		if _, err := ks.Key(context.Background(), kid); err == nil {
			got = append(got, kid)
		} else if !errors.Is(err, clerk.ErrUnknownKey) {
			t.Errorf("kid %q: %v", kid, err)
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"no-use", "sig"}, got); diff != "" {
		t.Errorf("usable keys (-want +got):\n%s", diff)
	}
}

func TestKeySetRefresh(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	ks, clk, _ := newKeySet(t, client)
	ctx := context.Background()
	steps := []struct {
		advance     time.Duration
		wantFetches int64
	}{{0, 1}, {time.Second, 1}, {5 * time.Second, 2}}
	for i, st := range steps {
		clk.Advance(st.advance)
		if err := ks.Refresh(ctx); err != nil {
			t.Fatalf("Refresh %d: %v", i, err)
		}
		if got := e.JWKSFetches(); got != st.wantFetches {
			t.Errorf("after Refresh %d: %d fetches, want %d", i, got, st.wantFetches)
		}
	}
	if !ks.Ready() {
		t.Error("not Ready after Refresh")
	}
	if _, err := ks.Key(ctx, e.KeyID()); err != nil {
		t.Errorf("Key after Refresh: %v", err)
	}
	if got := e.JWKSFetches(); got != 2 {
		t.Errorf("Key after Refresh fetched again: %d fetches", got)
	}
}

func TestKeySetHitDoesNotAllocate(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	ks, _, _ := newKeySet(t, client)
	ctx, kid := context.Background(), e.KeyID()
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := ks.Key(ctx, kid); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Key on a cached kid allocates %v times, want 0", allocs)
	}
}

func BenchmarkKeySetHit(b *testing.B) {
	e, err := clerkemu.New(clerkemu.Options{Key: testKey()})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	ks := clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: e.SecretKey()}).NewKeySet(clerk.KeySetOptions{})
	ctx, kid := context.Background(), e.KeyID()
	if err := ks.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ks.Key(ctx, kid); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestStaticKey(t *testing.T) {
	e, _ := newEmulator(t, clerkemu.Options{})
	sk, err := clerk.NewStaticKey(e.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Ready() {
		t.Error("StaticKey not Ready")
	}
	iss := e.Issuer()
	for _, kid := range []string{e.KeyID(), "ins_whatever", ""} {
		key, err := sk.Key(context.Background(), kid)
		if err != nil {
			t.Fatalf("Key(%q): %v", kid, err)
		}
		token := mint(t, e.MintSession, clerkemu.Session{UserID: "user_1", KeyID: kid})
		if _, err := jwt.Verify(context.Background(), &jwt.VerifyParams{Token: token, JWK: key, ProxyURL: &iss}); err != nil {
			t.Errorf("kid %q: jwt.Verify: %v", kid, err)
		}
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"empty":       "",
		"private key": e.PrivateKeyPEM(),
		"EC key":      string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})),
	} {
		if _, err := clerk.NewStaticKey(bad); err == nil {
			t.Errorf("NewStaticKey(%s) succeeded, want error", name)
		}
	}
}

// TestKeySetOutage: while the JWKS cannot be fetched, a cached key keeps
// working, and an unknown key id is ErrUnavailable — not ErrUnknownKey —
// for the whole refetch window, without another request; once Clerk is
// back, the next window's fetch answers as usual.
func TestKeySetOutage(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	ks, clk, log := newKeySet(t, client)
	ctx := context.Background()
	if _, err := ks.Key(ctx, e.KeyID()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Second)
	e.SetJWKSStatus(http.StatusServiceUnavailable)

	steps := []struct {
		name    string
		advance time.Duration
		kid     string
		err     string
		fetches int64
	}{
		{"cached key", 0, e.KeyID(), "", 1},
		{"unknown kid: the fetch fails", 0, "ins_new", clerk.ErrUnavailable.Error(), 2},
		{"unknown kid, same window", 4900 * time.Millisecond, "ins_other", clerk.ErrUnavailable.Error(), 2},
		{"cached key, same window", 0, e.KeyID(), "", 2},
		{"next window: fetched again, fails again", 100 * time.Millisecond, "ins_new", clerk.ErrUnavailable.Error(), 3},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		_, err := ks.Key(ctx, st.kid)
		if diff := cmp.Diff(st.err, sentinel(err)); diff != "" {
			t.Errorf("%s: error %v (-want +got):\n%s", st.name, err, diff)
		}
		if got := e.JWKSFetches(); got != st.fetches {
			t.Errorf("%s: %d JWKS fetches, want %d", st.name, got, st.fetches)
		}
	}

	e.SetJWKSStatus(0)
	if _, err := ks.Key(ctx, "ins_new"); !errors.Is(err, clerk.ErrUnavailable) {
		t.Errorf("Clerk back, same window: err = %v, want ErrUnavailable until the window ends", err)
	}
	clk.Advance(5 * time.Second)
	if _, err := ks.Key(ctx, "ins_new"); !errors.Is(err, clerk.ErrUnknownKey) {
		t.Errorf("Clerk back, next window: err = %v, want ErrUnknownKey", err)
	}
	if diff := cmp.Diff([]string{"ok", "error", "error", "ok"}, log.Results()); diff != "" {
		t.Errorf("fetches (-want +got):\n%s", diff)
	}
}

// TestKeySetFetchTimeout: a fetch that runs out of its own time is
// ErrUnavailable for the caller that waited for it, not the caller's own
// deadline.
func TestKeySetFetchTimeout(t *testing.T) {
	e, client := newEmulator(t, clerkemu.Options{})
	e.SetJWKSDelay(2 * time.Second)
	ks := client.NewKeySet(clerk.KeySetOptions{FetchTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ks.Key(ctx, e.KeyID())
	if !errors.Is(err, clerk.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the caller's own deadline passed: %v", ctx.Err())
	}
}
