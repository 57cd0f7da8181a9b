package provision_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// clerkAPI is an emulator served over HTTP, with the production client and
// a count of user fetches.
type clerkAPI struct {
	emu     *clerkemu.Emulator
	client  *clerk.Client
	fetches atomic.Int64
	delay   atomic.Int64 // nanoseconds added to each user fetch
}

func newClerkAPI(t *testing.T) *clerkAPI {
	t.Helper()
	emu, err := clerkemu.New(clerkemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &clerkAPI{emu: emu}
	h := emu.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/users/") {
			c.fetches.Add(1)
			time.Sleep(time.Duration(c.delay.Load()))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.client = clerk.New(clerk.Config{APIURL: srv.URL + "/v1", SecretKey: emu.SecretKey()})
	return c
}

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func principal(id string) *viewer.Principal {
	return &viewer.Principal{Kind: viewer.KindUser, Subject: id, TenantID: id}
}

// getUser reads a row as Gatehouse itself; nil if there is none.
func getUser(t *testing.T, s *store.Store, id string) *ent.User {
	t.Helper()
	u, err := s.Client.User.Get(viewer.NewSystemContext(context.Background()), id)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// wantError checks that err is the refusal want (auth maps each to the
// status the caller sees).
func wantError(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("error = %v, want %v", err, want)
	}
}

var (
	created = time.UnixMilli(1_700_000_000_000).UTC()
	updated = time.UnixMilli(1_700_000_123_456).UTC()
	// Databases keep time at different precisions and zones.
	timeOpts = cmpopts.EquateApproxTime(time.Millisecond)
	rowOpts  = cmp.Options{timeOpts, cmpopts.IgnoreUnexported(ent.User{})}
)

func TestEnsureUserFirstSight(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		api.emu.AddUser(clerkemu.User{
			ID: "user_ada", Email: "ada@example.com", SecondaryEmails: []string{"old@example.com"},
			FirstName: "Ada", LastName: "Lovelace", ImageURL: "https://img.example/ada.png",
			CreatedAt: created, UpdatedAt: updated,
		})
		p := provision.New(s.Client, api.client, provision.Options{})
		if err := p.EnsureUser(context.Background(), principal("user_ada")); err != nil {
			t.Fatal(err)
		}
		want := &ent.User{
			ID: "user_ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace",
			ImageURL: "https://img.example/ada.png", CreatedAt: created, UpdatedAt: updated,
			ClerkUpdatedAt: updated.UnixMilli(),
		}
		if diff := cmp.Diff(want, getUser(t, s, "user_ada"), rowOpts); diff != "" {
			t.Errorf("row (-want +got):\n%s", diff)
		}
		// Warm: no second fetch.
		if err := p.EnsureUser(context.Background(), principal("user_ada")); err != nil {
			t.Fatal(err)
		}
		if got := api.fetches.Load(); got != 1 {
			t.Errorf("Clerk fetches = %d, want 1", got)
		}
	})
}

func TestEnsureUserConcurrentFirstSight(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		api.emu.AddUser(clerkemu.User{ID: "user_ada", Email: "ada@example.com"})
		api.delay.Store(int64(100 * time.Millisecond))
		p := provision.New(s.Client, api.client, provision.Options{})
		var wg sync.WaitGroup
		errs := make([]error, 10)
		for i := range errs {
			wg.Go(func() { errs[i] = p.EnsureUser(context.Background(), principal("user_ada")) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		}
		if got := api.fetches.Load(); got != 1 {
			t.Errorf("10 concurrent first calls made %d Clerk fetches, want 1", got)
		}
		if getUser(t, s, "user_ada") == nil {
			t.Errorf("no row")
		}
	})
}

func TestEnsureUserReplicasRace(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		api.emu.AddUser(clerkemu.User{ID: "user_ada", Email: "ada@example.com"})
		api.delay.Store(int64(50 * time.Millisecond))
		// Replicas share the database, not their single flights: both
		// fetch, both insert, one insert does nothing, neither fails.
		replicas := []*provision.Provisioner{
			provision.New(s.Client, api.client, provision.Options{}),
			provision.New(s.Client, api.client, provision.Options{}),
		}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = replicas[i%2].EnsureUser(context.Background(), principal("user_ada")) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		}
		if got := getUser(t, s, "user_ada"); got == nil || got.Email != "ada@example.com" {
			t.Errorf("row = %+v", got)
		}
	})
}

func TestEnsureUserClerkUnavailable(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		api.emu.AddUser(clerkemu.User{ID: "user_ada"})
		api.emu.SetUsersStatus(http.StatusServiceUnavailable)
		p := provision.New(s.Client, api.client, provision.Options{})
		err := p.EnsureUser(context.Background(), principal("user_ada"))
		wantError(t, err, provision.ErrClerkUnavailable)
		var unavailable *provision.UnavailableError
		if !errors.As(err, &unavailable) || unavailable.RetryAfter != time.Second {
			t.Errorf("error = %v, want an *UnavailableError suggesting a retry after 1s", err)
		}
		if getUser(t, s, "user_ada") != nil {
			t.Errorf("a row was written although Clerk was unavailable")
		}

		// The retry the client makes succeeds once Clerk is back.
		api.emu.SetUsersStatus(0)
		if err := p.EnsureUser(context.Background(), principal("user_ada")); err != nil {
			t.Errorf("after Clerk recovered: %v", err)
		}
	})
}

func TestEnsureUserRefusals(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		clk := newClock()
		p := provision.New(s.Client, api.client, provision.Options{Now: clk.Now})
		sys := viewer.NewSystemContext(context.Background())
		deletedAt := time.Now().Add(-time.Minute).UTC()

		t.Run("unknown user", func(t *testing.T) {
			err := p.EnsureUser(context.Background(), principal("user_nobody"))
			wantError(t, err, provision.ErrUnknownUser)
			if getUser(t, s, "user_nobody") != nil {
				t.Errorf("a row was written for an unknown user")
			}
		})

		t.Run("tombstoned user", func(t *testing.T) {
			// Clerk still answers (a session lives on after deletion); the
			// tombstone decides.
			api.emu.AddUser(clerkemu.User{ID: "user_gone", Email: "new@example.com", FirstName: "New"})
			s.Client.User.Create().SetID("user_gone").SetCreatedAt(created).SetUpdatedAt(updated).
				SetClerkUpdatedAt(updated.UnixMilli()).SetDeletedAt(deletedAt).ExecX(sys)
			before := getUser(t, s, "user_gone")
			fetches := api.fetches.Load()
			err := p.EnsureUser(context.Background(), principal("user_gone"))
			wantError(t, err, provision.ErrDeletedUser)
			if diff := cmp.Diff(before, getUser(t, s, "user_gone"), rowOpts); diff != "" {
				t.Errorf("tombstone changed (-before +after):\n%s", diff)
			}
			if got := api.fetches.Load() - fetches; got != 0 {
				t.Errorf("Clerk fetches for a tombstoned user = %d, want 0", got)
			}
		})

		t.Run("tombstone written during the fetch wins", func(t *testing.T) {
			api.emu.AddUser(clerkemu.User{ID: "user_racer", Email: "racer@example.com"})
			tombstoning := sourceFunc(func(ctx context.Context, id string) (*clerk.User, error) {
				u, err := api.client.User(ctx, id)
				// user.deleted arrives while Clerk's answer is in flight.
				s.Client.User.Create().SetID(id).SetCreatedAt(created).SetUpdatedAt(updated).
					SetDeletedAt(deletedAt).ExecX(sys)
				return u, err
			})
			p := provision.New(s.Client, tombstoning, provision.Options{})
			err := p.EnsureUser(context.Background(), principal("user_racer"))
			wantError(t, err, provision.ErrDeletedUser)
			got := getUser(t, s, "user_racer")
			if got.DeletedAt == nil || got.Email != "" {
				t.Errorf("row = %+v, want the tombstone untouched", got)
			}
		})

		t.Run("webhook row wins", func(t *testing.T) {
			api.emu.AddUser(clerkemu.User{ID: "user_hooked", Email: "clerk@example.com"})
			s.Client.User.Create().SetID("user_hooked").SetEmail("webhook@example.com").
				SetCreatedAt(created).SetUpdatedAt(updated).SetClerkUpdatedAt(updated.UnixMilli()).ExecX(sys)
			before := getUser(t, s, "user_hooked")
			fetches := api.fetches.Load()
			if err := p.EnsureUser(context.Background(), principal("user_hooked")); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, getUser(t, s, "user_hooked"), rowOpts); diff != "" {
				t.Errorf("row changed (-before +after):\n%s", diff)
			}
			if got := api.fetches.Load() - fetches; got != 0 {
				t.Errorf("Clerk fetches for a mirrored user = %d, want 0", got)
			}
		})

		t.Run("deletion is noticed after the live window", func(t *testing.T) {
			api.emu.AddUser(clerkemu.User{ID: "user_later"})
			if err := p.EnsureUser(context.Background(), principal("user_later")); err != nil {
				t.Fatal(err)
			}
			s.Client.User.UpdateOneID("user_later").SetDeletedAt(deletedAt).ExecX(sys)
			// Within the window the cached answer stands: no database read.
			if err := p.EnsureUser(context.Background(), principal("user_later")); err != nil {
				t.Errorf("within the live window: %v", err)
			}
			clk.Advance(5 * time.Second)
			err := p.EnsureUser(context.Background(), principal("user_later"))
			wantError(t, err, provision.ErrDeletedUser)
		})

		t.Run("machines are not provisioned", func(t *testing.T) {
			fetches := api.fetches.Load()
			m := &viewer.Principal{Kind: viewer.KindMachine, Subject: "mch_1", TenantID: "org_acme"}
			if err := p.EnsureUser(context.Background(), m); err != nil {
				t.Errorf("EnsureUser(machine) = %v", err)
			}
			if got := api.fetches.Load() - fetches; got != 0 {
				t.Errorf("Clerk fetches = %d, want 0", got)
			}
		})
	})
}

func TestEnsureUserWithoutBackendAPI(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		clk := newClock()
		p := provision.New(s.Client, nil, provision.Options{Now: clk.Now})
		if err := p.EnsureUser(context.Background(), principal("user_tokenonly")); err != nil {
			t.Fatal(err)
		}
		want := &ent.User{ID: "user_tokenonly", CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
		if diff := cmp.Diff(want, getUser(t, s, "user_tokenonly"), rowOpts); diff != "" {
			t.Errorf("row (-want +got):\n%s", diff)
		}
	})
}

func TestEnsureUserCallerDeadline(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	api := newClerkAPI(t)
	api.emu.AddUser(clerkemu.User{ID: "user_slow"})
	api.delay.Store(int64(500 * time.Millisecond))
	p := provision.New(s.Client, api.client, provision.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.EnsureUser(ctx, principal("user_slow"))
	var unavailable *provision.UnavailableError
	if !errors.Is(err, provision.ErrClerkUnavailable) || !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &unavailable) {
		t.Errorf("error = %v, want ErrClerkUnavailable wrapping the caller's deadline", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("EnsureUser waited %v past the caller's deadline", d)
	}
	// The fetch went on for the next caller.
	time.Sleep(600 * time.Millisecond)
	if err := p.EnsureUser(context.Background(), principal("user_slow")); err != nil {
		t.Errorf("next call: %v", err)
	}
	if got := api.fetches.Load(); got != 1 {
		t.Errorf("Clerk fetches = %d, want 1", got)
	}
}

type sourceFunc func(ctx context.Context, id string) (*clerk.User, error)

func (f sourceFunc) User(ctx context.Context, id string) (*clerk.User, error) { return f(ctx, id) }

// TestInvalidationDuringALookUpWins: an invalidation of the user (a webhook
// changed them) that comes while EnsureUser is reading the row keeps that
// read from being trusted: the row read may be the very one the change
// replaced. An invalidation of another user does not.
func TestInvalidationDuringALookUpWins(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate func(*provision.Provisioner)
		trusted    bool
	}{
		{"the same user", func(p *provision.Provisioner) { p.Invalidate(invalidation.User("user_raced")) }, false},
		{"everyone", func(p *provision.Provisioner) { p.InvalidateAll() }, false},
		{"another user", func(p *provision.Provisioner) { p.Invalidate(invalidation.User("user_other")) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storetest.Open(t, "sqlite")
			p := provision.New(s.Client, nil, provision.Options{})
			ctx := context.Background()
			if err := p.EnsureUser(ctx, principal("user_raced")); err != nil {
				t.Fatal(err)
			}
			p.Invalidate(invalidation.User("user_raced"))

			reading, resume := make(chan struct{}), make(chan struct{})
			var once sync.Once
			s.Client.User.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
				return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
					v, err := next.Query(ctx, q)
					once.Do(func() { close(reading); <-resume }) // the row is read, not yet trusted
					return v, err
				})
			}))
			done := make(chan error, 1)
			go func() { done <- p.EnsureUser(ctx, principal("user_raced")) }()
			<-reading
			tc.invalidate(p)
			close(resume)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, ok := p.LiveUser("user_raced"); ok != tc.trusted {
				t.Errorf("the row read across an invalidation of %s: trusted = %v, want %v", tc.name, ok, tc.trusted)
			}
			if err := p.EnsureUser(ctx, principal("user_raced")); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.LiveUser("user_raced"); !ok {
				t.Error("a look-up after the invalidation is not trusted")
			}
			if n := provision.LookupsInFlight(p); n != 0 {
				t.Errorf("%d look-ups still registered after they ended", n)
			}
		})
	}
}

// TestInvalidate: the keys of users drop them, other keys nothing, and a
// reset drops everyone.
func TestInvalidate(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	p := provision.New(s.Client, nil, provision.Options{})
	ctx := context.Background()
	for _, id := range []string{"user_a", "user_b"} {
		if err := p.EnsureUser(ctx, principal(id)); err != nil {
			t.Fatal(err)
		}
	}
	p.Invalidate("organization:user_a")
	p.Invalidate("membership:org_x:user_a")
	if _, ok := p.LiveUser("user_a"); !ok {
		t.Error("a key of another kind dropped user_a")
	}
	p.Invalidate(invalidation.User("user_a"))
	if _, ok := p.LiveUser("user_a"); ok {
		t.Error("user_a is still trusted after Invalidate(User(user_a))")
	}
	if _, ok := p.LiveUser("user_b"); !ok {
		t.Error("Invalidate(User(user_a)) dropped user_b")
	}
	p.InvalidateAll()
	if _, ok := p.LiveUser("user_b"); ok {
		t.Error("user_b is still trusted after InvalidateAll")
	}
}

// TestEnsureUserCleansClerkStrings: a profile Postgres could not store as is
// (a NUL byte in a name) does not lock the user out, and is stored exactly
// as a webhook carrying the same profile stores it.
func TestEnsureUserCleansClerkStrings(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		api := newClerkAPI(t)
		profile := clerkemu.User{
			Email: "ada\x00@example.com", FirstName: "Ada\x00", LastName: strings.Repeat("Lovelace ", 300),
			CreatedAt: created, UpdatedAt: updated,
		}
		fetched := profile
		fetched.ID = "user_fetched"
		api.emu.AddUser(fetched)
		p := provision.New(s.Client, api.client, provision.Options{})
		if err := p.EnsureUser(context.Background(), principal("user_fetched")); err != nil {
			t.Fatalf("first sight of a profile with a NUL: %v", err)
		}

		// The same profile, from a webhook.
		secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("provision test secret, 32 bytes."))
		r, err := webhook.New(webhook.Config{Client: s.Client, Dialect: s.Dialect, Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		body, err := clerkemu.SampleEvent(webhook.TypeUserCreated, clerkemu.Sample{
			UserID: "user_hooked", Email: profile.Email, FirstName: profile.FirstName, LastName: profile.LastName, UpdatedAt: updated,
		})
		if err != nil {
			t.Fatal(err)
		}
		req, err := clerkemu.NewWebhookRequest(context.Background(), "http://gatehouse/webhooks/clerk", secret, "", time.Now(), body)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("webhook with the same profile: %d %s", w.Code, w.Body)
		}

		got, hooked := getUser(t, s, "user_fetched"), getUser(t, s, "user_hooked")
		if strings.ContainsRune(got.Email+got.FirstName+got.LastName, 0) || got.FirstName != "Ada" || got.Email != "ada@example.com" {
			t.Errorf("stored %q %q: want the NUL dropped", got.Email, got.FirstName)
		}
		if len(got.LastName) > 2048 || !strings.HasPrefix(got.LastName, "Lovelace Lovelace") {
			t.Errorf("stored a last name of %d bytes", len(got.LastName))
		}
		type strs struct{ Email, FirstName, LastName string }
		if diff := cmp.Diff(strs{hooked.Email, hooked.FirstName, hooked.LastName}, strs{got.Email, got.FirstName, got.LastName}); diff != "" {
			t.Errorf("first sight stores Clerk's strings unlike the webhook (-webhook +first sight):\n%s", diff)
		}
		// The user is not locked out: the next call finds the row live.
		if err := p.EnsureUser(context.Background(), principal("user_fetched")); err != nil {
			t.Errorf("second call: %v", err)
		}
	})
}
