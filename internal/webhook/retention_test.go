package webhook

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/ent/webhookevent"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// fakeClock is the receiver's clock for received_at (Svix's verifier keeps
// the real one).
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time)      { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Add(d time.Duration)  { c.ns.Add(int64(d)) }
func newFakeClock(t time.Time) *fakeClock { c := &fakeClock{}; c.Set(t); return c }

// recordedIDs lists the svix-ids recorded.
func recordedIDs(t *testing.T, s *store.Store) []string {
	t.Helper()
	ids, err := s.Client.WebhookEvent.Query().IDs(sysctx())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// TestSweepPurgesExpiredRecords: the records of deliveries older than the
// retention go, in bounded batches; younger ones stay, and their svix-ids
// still dedupe. A redelivery of a purged event is applied again, and changes
// nothing: the appliers find it stale.
func TestSweepPurgesExpiredRecords(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		clock := newFakeClock(time.Now().Add(-10 * 24 * time.Hour))
		e.receiver.now = clock.Now
		e.receiver.purgeBatch = 2

		// Eight days old: five records, the first of them user.created.
		oldCreate := clerkemu.NewMessageID()
		body := sample(t, TypeUserCreated, clerkemu.Sample{UpdatedAt: at(100)})
		if got := e.deliver(oldCreate, body); got != (answer{200, "applied"}) {
			t.Fatalf("user.created: %+v", got)
		}
		for i := range 4 {
			e.deliver("", sample(t, TypeOrganizationCreated, clerkemu.Sample{OrgID: fmt.Sprintf("org_2oOld%d", i)}))
		}
		// One day old: three records, one a newer user.updated.
		clock.Add(7 * 24 * time.Hour)
		var young []string
		for i := range 3 {
			id := clerkemu.NewMessageID()
			young = append(young, id)
			typ, s := TypeOrganizationCreated, clerkemu.Sample{OrgID: fmt.Sprintf("org_2oYoung%d", i)}
			if i == 0 {
				typ, s = TypeUserUpdated, clerkemu.Sample{UpdatedAt: at(200), FirstName: "Augusta"}
			}
			if got := e.deliver(id, sample(t, typ, s)); got != (answer{200, "applied"}) {
				t.Fatalf("%s: %+v", typ, got)
			}
		}
		clock.Add(24 * time.Hour)

		// One statement deletes no more than its batch.
		cutoff := clock.Now().Add(-config.DefaultWebhookRetention)
		if n, err := e.receiver.purgeOnce(context.Background(), cutoff, 2); err != nil || n != 2 {
			t.Fatalf("purgeOnce(limit 2) = %d, %v; want 2", n, err)
		}
		if n, err := e.receiver.purge(context.Background(), cutoff); err != nil || n != 3 {
			t.Fatalf("purge = %d, %v; want the other 3", n, err)
		}
		sort.Strings(young)
		if diff := cmp.Diff(young, recordedIDs(t, s)); diff != "" {
			t.Errorf("records left (-want +got):\n%s", diff)
		}
		if got := e.deliver(young[1], sample(t, TypeUserCreated, clerkemu.Sample{})); got != (answer{200, "duplicate"}) {
			t.Errorf("redelivery of a kept record: %+v, want duplicate", got)
		}
		// The purged user.created, redelivered: recorded again, but stale.
		if got := e.deliver(oldCreate, body); got != (answer{200, "stale"}) {
			t.Errorf("redelivery of a purged user.created: %+v, want stale", got)
		}
		if u := getUser(t, s.Client, ada); u.FirstName != "Augusta" {
			t.Errorf("first name %q after the redelivery, want Augusta (from the newer update)", u.FirstName)
		}
	})
}

// TestSweepsOnReplicasShareTheWork: sweeps running at once on two
// replicas purge every expired record between them, without error or
// waiting on each other.
func TestSweepsOnReplicasShareTheWork(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := storetest.URL(t, dialect)
			a, b := openURL(t, url), openURL(t, url)
			old := time.Now().Add(-30 * 24 * time.Hour).UTC()
			const n = 600
			for i := range n {
				err := a.Client.WebhookEvent.Create().SetID(fmt.Sprintf("msg_old%04d", i)).SetType(TypeUserCreated).
					SetResult("applied").SetPayload([]byte(`{}`)).SetReceivedAt(old.Add(time.Duration(i) * time.Second)).Exec(sysctx())
				if err != nil {
					t.Fatal(err)
				}
			}
			a.Client.WebhookEvent.Create().SetID("msg_new").SetType(TypeUserCreated).SetResult("applied").
				SetReceivedAt(time.Now().UTC()).ExecX(sysctx())
			var purged atomic.Int64
			var wg sync.WaitGroup
			for _, st := range []*store.Store{a, b, a, b} {
				r := newEndpoint(t, st, newSecret()).receiver
				r.purgeBatch = 25
				wg.Go(func() {
					n, err := r.purge(context.Background(), time.Now().Add(-config.DefaultWebhookRetention))
					if err != nil {
						t.Errorf("purge: %v", err)
					}
					purged.Add(int64(n))
				})
			}
			wg.Wait()
			// A sweep that found only locked rows stops early; the next one
			// takes what is left.
			r := newEndpoint(t, a, newSecret()).receiver
			n2, err := r.purge(context.Background(), time.Now().Add(-config.DefaultWebhookRetention))
			if err != nil {
				t.Fatal(err)
			}
			if got := purged.Load() + int64(n2); got != n {
				t.Errorf("purged %d records in all, want %d", got, n)
			}
			if diff := cmp.Diff([]string{"msg_new"}, recordedIDs(t, a)); diff != "" {
				t.Errorf("records left (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSweepRunsUntilItsContextEnds: Sweep purges at once and then on its
// interval, and returns when its context ends.
func TestSweepRunsUntilItsContextEnds(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	r := newEndpoint(t, s, newSecret()).receiver
	r.sweepEvery = 20 * time.Millisecond
	r.retention = time.Hour
	add := func(id string) {
		s.Client.WebhookEvent.Create().SetID(id).SetType(TypeUserCreated).SetResult("applied").
			SetReceivedAt(time.Now().Add(-2 * time.Hour).UTC()).ExecX(sysctx())
	}
	add("msg_before")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Sweep(ctx) }()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	empty := func() bool {
		n, err := s.Client.WebhookEvent.Query().Where(webhookevent.ReceivedAtLT(time.Now().Add(-time.Hour))).Count(sysctx())
		return err == nil && n == 0
	}
	waitUntil("the first sweep", empty)
	add("msg_later")
	waitUntil("a later sweep", empty)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Sweep returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sweep did not return after its context ended")
	}
}
