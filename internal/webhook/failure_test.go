package webhook

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/hook"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// TestConcurrentApplyPastTheFastPath races the transactions themselves
// (applyOnce, without apply's reruns): only the svix-id insert that opens
// each of them can keep the effect to one.
func TestConcurrentApplyPastTheFastPath(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		body := sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{})
		ev, err := DecodeEvent(body)
		if err != nil {
			t.Fatal(err)
		}
		msgID := clerkemu.NewMessageID()
		const n = 5
		results := make([]Result, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { results[i], errs[i] = e.receiver.applyOnce(sysctx(), msgID, ev, body) })
		}
		wg.Wait()
		count := map[Result]int{}
		for i := range n {
			if errs[i] != nil {
				t.Errorf("apply: %v", errs[i])
			}
			count[results[i]]++
		}
		if diff := cmp.Diff(map[Result]int{ResultApplied: 1, ResultDuplicate: n - 1}, count); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		want := map[string]int{"users": 1, "organizations": 1, "memberships": 1, "projects": 0, "webhook_events": 1}
		if diff := cmp.Diff(want, rowCounts(t, s.Client)); diff != "" {
			t.Errorf("rows (-want +got):\n%s", diff)
		}
	})
}

// TestDatabaseGoneThenRedelivered: with the pool closed the delivery gets
// 503 and nothing is written; Svix's redelivery to a working instance
// applies it in full.
func TestDatabaseGoneThenRedelivered(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := storetest.URL(t, dialect)
			secret := newSecret()
			down := openURL(t, url)
			e := newEndpoint(t, down, secret)
			body := sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{})
			msgID := clerkemu.NewMessageID()
			down.Close()

			if got := e.deliver(msgID, body); got != (answer{http.StatusServiceUnavailable, "failed"}) {
				t.Fatalf("with the database gone: got %+v, want 503 failed", got)
			}
			up := openURL(t, url)
			want := map[string]int{"users": 0, "organizations": 0, "memberships": 0, "projects": 0, "webhook_events": 0}
			if diff := cmp.Diff(want, rowCounts(t, up.Client)); diff != "" {
				t.Errorf("rows after 503 (-want +got):\n%s", diff)
			}
			if got := newEndpoint(t, up, secret).deliver(msgID, body); got != (answer{200, "applied"}) {
				t.Fatalf("redelivery: got %+v, want 200 applied", got)
			}
			want = map[string]int{"users": 1, "organizations": 1, "memberships": 1, "projects": 0, "webhook_events": 1}
			if diff := cmp.Diff(want, rowCounts(t, up.Client)); diff != "" {
				t.Errorf("rows after redelivery (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDatabaseDiesMidApply: organization.deleted fails after tombstoning
// the organization and deleting its projects, before ending its
// memberships. On Postgres the transaction's connection is killed; SQLite
// gets an injected error. The answer is 5xx and nothing is half-written;
// the redelivery applies everything.
func TestDatabaseDiesMidApply(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		for _, typ := range []string{TypeUserCreated, TypeOrganizationCreated, TypeOrganizationMembershipCreated} {
			if got := e.deliver("", sample(t, typ, clerkemu.Sample{})); got.Result != "applied" {
				t.Fatalf("setup %s: %+v", typ, got)
			}
		}
		seedProject(t, s.Client, "prj_engines", engines, ada)
		before := dumpMirror(t, s.Client)

		var fail atomic.Bool
		fail.Store(true)
		s.Client.Membership.Use(func(next ent.Mutator) ent.Mutator {
			return hook.MembershipFunc(func(ctx context.Context, m *ent.MembershipMutation) (ent.Value, error) {
				if m.Op().Is(ent.OpUpdate) && fail.CompareAndSwap(true, false) {
					if err := killConnection(ctx, s, m); err != nil {
						return nil, err
					}
				}
				return next.Mutate(ctx, m)
			})
		})
		msgID := clerkemu.NewMessageID()
		body := sample(t, TypeOrganizationDeleted, clerkemu.Sample{})
		want := answer{http.StatusServiceUnavailable, "failed"} // a killed connection is an outage
		if s.Dialect != "postgres" {
			want.Status = http.StatusInternalServerError // an injected I/O error is not
		}
		if got := e.deliver(msgID, body); got != want {
			t.Fatalf("mid-apply failure: got %+v, want %+v", got, want)
		}
		if diff := cmp.Diff(before, dumpMirror(t, s.Client)); diff != "" {
			t.Errorf("half-written (-before +after):\n%s", diff)
		}
		if n := rowCounts(t, s.Client)["webhook_events"]; n != 3 {
			t.Errorf("%d webhook events recorded, want the 3 of the setup", n)
		}
		if got := e.deliver(msgID, body); got != (answer{200, "applied"}) {
			t.Fatalf("redelivery: got %+v, want 200 applied", got)
		}
		after := dumpMirror(t, s.Client)
		if len(after.Projects) != 0 || len(after.Memberships) != 0 || !after.Orgs[0].Deleted {
			t.Errorf("after redelivery: %+v, want the organization deleted with its projects and memberships", after)
		}
	})
}

// killConnection makes the database go away under the transaction m runs
// in: on Postgres the backend holding it (the one connection of this
// database idle in a transaction while the hook runs) is terminated, waiting
// until it is gone; SQLite gets an injected error instead.
func killConnection(ctx context.Context, s *store.Store, _ *ent.MembershipMutation) error {
	if s.Dialect != "postgres" {
		return errors.New("injected: disk I/O error")
	}
	var killed int
	err := s.DB.QueryRowContext(ctx, `
		SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()
		  AND state LIKE 'idle in transaction%'`).Scan(&killed)
	if err == nil && killed != 1 {
		err = fmt.Errorf("terminated %d backends, want the 1 holding the transaction", killed)
	}
	return err
}

// TestReplicasConverge: two instances sharing one database, receiving a
// stream of deliveries duplicated and shuffled, concurrently, end in the
// same state as one instance receiving the stream once, in order.
func TestReplicasConverge(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			secret := newSecret()
			stream := eventStream(t)

			// One instance, each delivery once, in order.
			inOrder := openURL(t, storetest.URL(t, dialect))
			seedStream(t, inOrder.Client)
			one := newEndpoint(t, inOrder, secret)
			for _, d := range stream {
				if got := one.deliver(d.msgID, d.body); got.Status != 200 {
					t.Fatalf("in order: %s: %+v", d.name, got)
				}
			}

			// Two instances on one database, every delivery one to three
			// times, shuffled, eight at a time; 5xx is retried as Svix would.
			url := storetest.URL(t, dialect)
			a, b := openURL(t, url), openURL(t, url)
			seedStream(t, a.Client)
			replicas := []*endpoint{newEndpoint(t, a, secret), newEndpoint(t, b, secret)}
			var deliveries []delivered
			for _, d := range stream {
				for range 1 + rand.IntN(3) {
					deliveries = append(deliveries, d)
				}
			}
			rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
			work := make(chan int)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for i := range work {
						d := deliveries[i]
						for try := 0; ; try++ {
							got := replicas[(i+try)%2].deliver(d.msgID, d.body)
							if got.Status == 200 {
								break
							}
							if got.Status < 500 || try == 10 {
								t.Errorf("%s: %+v", d.name, got)
								break
							}
							time.Sleep(time.Duration(try*10) * time.Millisecond)
						}
					}
				})
			}
			for i := range deliveries {
				work <- i
			}
			close(work)
			wg.Wait()

			want := dumpMirror(t, inOrder.Client)
			if diff := cmp.Diff(want, dumpMirror(t, b.Client)); diff != "" {
				t.Errorf("replicas diverge from the in-order run (-in order +replicas):\n%s", diff)
			}
			if got, want := rowCounts(t, a.Client)["webhook_events"], len(stream); got != want {
				t.Errorf("%d webhook events recorded, want %d (one per svix-id)", got, want)
			}
			// The stream must exercise what it claims to.
			if len(want.Memberships) == 0 || len(want.Projects) == 0 || len(want.Users) < 5 {
				t.Fatalf("degenerate stream: %+v", want)
			}
		})
	}
}

type delivered struct {
	name  string
	msgID string
	body  []byte
}

const (
	grace   = "user_2oGraceHopper00000000001"
	alan    = "user_2oAlanTuring000000000001"
	stub    = "user_2oKnownOnlyByMembership01"
	harvard = "org_2oHarvardMarkOne0000000001"
)

// seedStream seeds what exists before the stream: users known from
// tokens, and projects in each tenant the stream deletes or keeps.
func seedStream(t *testing.T, c *ent.Client) {
	t.Helper()
	for _, u := range []string{ada, charles, grace} {
		seedUser(t, c, u)
	}
	seedProject(t, c, "prj_ada", ada, ada)
	seedProject(t, c, "prj_charles", charles, charles)
	seedProject(t, c, "prj_grace", grace, grace)
	seedProject(t, c, "prj_engines", engines, ada)
	seedProject(t, c, "prj_harvard", harvard, grace)
}

// eventStream is a history as Clerk would send it, in order.
func eventStream(t *testing.T) []delivered {
	var ds []delivered
	var clock int64
	add := func(typ string, s clerkemu.Sample) {
		clock += 10
		if s.UpdatedAt.IsZero() {
			s.UpdatedAt = at(clock)
		}
		ds = append(ds, delivered{name: typ + " " + s.UserID + s.OrgID + s.MembershipID, msgID: clerkemu.NewMessageID(), body: sample(t, typ, s)})
	}
	mem := func(id, userID, orgID, role string) clerkemu.Sample {
		return clerkemu.Sample{MembershipID: id, UserID: userID, OrgID: orgID, Role: role}
	}
	for _, u := range []string{ada, charles, grace, alan} {
		add(TypeUserCreated, clerkemu.Sample{UserID: u, FirstName: u[5:12]})
	}
	add(TypeOrganizationCreated, clerkemu.Sample{OrgID: engines})
	add(TypeOrganizationCreated, clerkemu.Sample{OrgID: harvard, OrgName: "Harvard Mark I"})
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS1", ada, engines, "org:admin"))
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS2", charles, engines, "org:member"))
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS3", grace, harvard, "org:admin"))
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS4", alan, harvard, "org:member"))
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS5", stub, engines, "org:member"))
	add(TypeUserUpdated, clerkemu.Sample{UserID: ada, FirstName: "Augusta"})
	add(TypeUserUpdated, clerkemu.Sample{UserID: ada, FirstName: "Augusta Ada", Email: "countess@example.org"})
	add(TypeOrganizationUpdated, clerkemu.Sample{OrgID: engines, OrgName: "Engines Ltd"})
	add(TypeOrganizationMembershipUpdated, mem("orgmem_2oS2", charles, engines, "org:admin"))
	add(TypeOrganizationMembershipUpdated, mem("orgmem_2oS2", charles, engines, "org:billing"))
	add(TypeOrganizationMembershipDeleted, mem("orgmem_2oS4", alan, harvard, "org:member"))
	add(TypeOrganizationMembershipCreated, mem("orgmem_2oS6", alan, engines, "org:member"))
	add(TypeUserDeleted, clerkemu.Sample{UserID: charles})
	add(TypeUserUpdated, clerkemu.Sample{UserID: grace, LastName: "Hopper"})
	add(TypeOrganizationDeleted, clerkemu.Sample{OrgID: harvard})
	add(TypeUserUpdated, clerkemu.Sample{UserID: alan, FirstName: "Alan"})
	return ds
}

// TestConcurrentEventsForOneNewObject: two events for an object not yet
// mirrored (its created and its updated event, delivered at the same moment
// under different svix-ids) both get 200, for every kind of object. On
// Postgres the membership's two inserts race on a unique key that is not
// their ON CONFLICT target; the receiver must retry, not answer 503.
func TestConcurrentEventsForOneNewObject(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		rounds := 300
		if s.Dialect != "postgres" {
			rounds = 10 // SQLite runs one transaction at a time: no race to lose
		}
		// Each event says something else of the object: a name, a role.
		says := map[bool]string{false: "Created", true: "Updated"}
		roles := map[bool]string{false: "org:member", true: "org:admin"}
		kinds := []struct {
			name             string
			created, updated string
			sample           func(i int, updated bool) clerkemu.Sample
		}{
			{"membership", TypeOrganizationMembershipCreated, TypeOrganizationMembershipUpdated, func(i int, updated bool) clerkemu.Sample {
				return clerkemu.Sample{MembershipID: fmt.Sprintf("orgmem_2oRace%d", i), Role: roles[updated]}
			}},
			{"user", TypeUserCreated, TypeUserUpdated, func(i int, updated bool) clerkemu.Sample {
				return clerkemu.Sample{UserID: fmt.Sprintf("user_2oRace%d", i), FirstName: says[updated]}
			}},
			{"organization", TypeOrganizationCreated, TypeOrganizationUpdated, func(i int, updated bool) clerkemu.Sample {
				return clerkemu.Sample{OrgID: fmt.Sprintf("org_2oRace%d", i), OrgName: says[updated]}
			}},
		}
		failed := map[string]int{}
		for i := range rounds {
			for _, k := range kinds {
				s := k.sample(i, false)
				s.UpdatedAt = at(100)
				created := sample(t, k.created, s)
				s = k.sample(i, true)
				s.UpdatedAt = at(200)
				updated := sample(t, k.updated, s)
				var got [2]answer
				start := make(chan struct{})
				var wg sync.WaitGroup
				for j, body := range [][]byte{created, updated} {
					wg.Go(func() {
						<-start
						got[j] = e.deliver("", body)
					})
				}
				close(start)
				wg.Wait()
				for _, a := range got {
					if a.Status != http.StatusOK {
						failed[k.name]++
					}
				}
			}
		}
		if len(failed) > 0 {
			t.Errorf("deliveries not answered 200, by object (of %d rounds): %v", rounds, failed)
		}
		// Every object ended as its updated event says, whichever of its
		// two events was applied first.
		m := dumpMirror(t, s.Client)
		wantMs := at(200).UnixMilli()
		ended := map[string]int{}   // objects seen, by kind
		wrong := map[string]int{}   // of them, not as the updated event says
		example := map[string]any{} // the first of those, by kind
		check := func(kind string, asUpdated bool, row any) {
			ended[kind]++
			if !asUpdated {
				wrong[kind]++
				if example[kind] == nil {
					example[kind] = row
				}
			}
		}
		for _, u := range m.Users {
			if strings.HasPrefix(u.ID, "user_2oRace") {
				check("user", u.FirstName == says[true] && u.ClerkUpdatedAt == wantMs, u)
			}
		}
		for _, o := range m.Orgs {
			if strings.HasPrefix(o.ID, "org_2oRace") {
				check("organization", o.Name == says[true] && o.ClerkUpdatedAt == wantMs, o)
			}
		}
		for _, x := range m.Memberships {
			if strings.HasPrefix(x.ID, "orgmem_2oRace") {
				check("membership", x.Role == roles[true] && x.ClerkUpdatedAt == wantMs, x)
			}
		}
		for _, k := range kinds {
			if ended[k.name] != rounds || wrong[k.name] > 0 {
				t.Errorf("%s: %d live, want %d; %d not as the updated event says (its name or role, clerk_updated_at %d), e.g. %+v",
					k.name, ended[k.name], rounds, wrong[k.name], wantMs, example[k.name])
			}
		}
	})
}
