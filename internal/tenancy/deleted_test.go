package tenancy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/organization"
	"github.com/gatehouse-dev/gatehouse/ent/project"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// deliverer applies Clerk events to a store through the real receiver.
type deliverer struct {
	t      *testing.T
	r      *webhook.Receiver
	secret string
}

func newDeliverer(t *testing.T, s *store.Store) *deliverer {
	t.Helper()
	key := make([]byte, 24)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	r, err := webhook.New(webhook.Config{Client: s.Client, Dialect: s.Dialect, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return &deliverer{t: t, r: r, secret: secret}
}

// deliver applies the sample event of typ and returns the HTTP status.
func (d *deliverer) deliver(typ string, s clerkemu.Sample) int {
	body, err := clerkemu.SampleEvent(typ, s)
	if err != nil {
		d.t.Error(err)
		return 0
	}
	req, err := clerkemu.NewWebhookRequest(context.Background(), "http://gatehouse/webhooks/clerk", d.secret, "", time.Now(), body)
	if err != nil {
		d.t.Error(err)
		return 0
	}
	w := httptest.NewRecorder()
	d.r.ServeHTTP(w, req)
	return w.Code
}

// started runs f in the background; the channel yields its result.
func started[T any](f func() T) chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

// stillWaiting reports whether ch has no result after a while: the work
// behind it is blocked (by a lock, or on SQLite by the one connection).
func stillWaiting[T any](ch chan T) bool {
	select {
	case v := <-ch:
		ch <- v // for the caller to receive
		return false
	case <-time.After(300 * time.Millisecond):
		return true
	}
}

func countProjects(t *testing.T, c *ent.Client, tenant string) int {
	t.Helper()
	n, err := c.Project.Query().Where(project.TenantID(tenant)).Count(viewer.NewSystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantTenantDeleted(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, tenancy.ErrTenantDeleted) || derrors.Status(err).Code() != codes.FailedPrecondition {
		t.Errorf("err = %v, want ErrTenantDeleted (FAILED_PRECONDITION)", err)
	}
}

// TestWritesIntoDeletedTenantsAreRefused: once the tenant's organization or
// user is a tombstone, a viewer's create or update there is refused; delete
// is not.
func TestWritesIntoDeletedTenantsAreRefused(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		sys := viewer.NewSystemContext(context.Background())
		now := time.Now()
		c.Organization.UpdateOneID(orgA).SetDeletedAt(now).ExecX(sys)
		c.User.UpdateOneID(carol).SetDeletedAt(now).ExecX(sys)
		before := projects(t, c)

		for _, tc := range []struct {
			tenant, user, project string
		}{{orgA, alice, w.projectA}, {carol, carol, w.projectCarol}} {
			ctx := asUser(tc.user, tc.tenant)
			wantTenantDeleted(t, tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
				return c.Project.Create().SetOwnerID(tc.user).SetName("after").Exec(ctx)
			}))
			wantTenantDeleted(t, tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
				return c.Project.UpdateOneID(tc.project).SetName("renamed").Exec(ctx)
			}))
			wantTenantDeleted(t, tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
				_, err := c.Project.Update().SetName("renamed").Save(ctx)
				return err
			}))
		}
		if diff := projects(t, c); len(diff) != len(before) {
			t.Errorf("refused writes changed the projects: %v", diff)
		}
		// Emptying a deleted tenant is allowed.
		if err := c.Project.DeleteOneID(w.projectA).Exec(asUser(alice, orgA)); err != nil {
			t.Errorf("delete in a deleted tenant: %v", err)
		}
		// A live tenant beside them is unaffected.
		if err := tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
			return c.Project.Create().SetOwnerID(dave).SetName("still here").Exec(asUser(dave, dave))
		}); err != nil {
			t.Errorf("create in a live tenant: %v", err)
		}
	})
}

// TestWritesOutsideATransactionAreRefused: the check needs the write's
// transaction, so a viewer's write without one is an error, not unchecked.
func TestWritesOutsideATransactionAreRefused(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ctx := asUser(alice, orgA)
		before := projects(t, c)
		if err := c.Project.Create().SetOwnerID(alice).SetName("unchecked").Exec(ctx); !errors.Is(err, tenancy.ErrNotInTx) {
			t.Errorf("create outside a transaction: %v, want the not-in-a-transaction error", err)
		}
		if err := c.Project.UpdateOneID(w.projectA).SetName("unchecked").Exec(ctx); !errors.Is(err, tenancy.ErrNotInTx) {
			t.Errorf("update outside a transaction: %v, want the not-in-a-transaction error", err)
		}
		if _, err := c.Project.Update().SetName("unchecked").Save(ctx); !errors.Is(err, tenancy.ErrNotInTx) {
			t.Errorf("bulk update outside a transaction: %v, want the not-in-a-transaction error", err)
		}
		if len(projects(t, c)) != len(before) || projects(t, c)[w.projectA].Name != before[w.projectA].Name {
			t.Error("a write outside a transaction changed the projects")
		}
	})
}

// TestInTx: the write commits when f succeeds; when f fails, or panics,
// nothing of it stays, and the store takes the next write.
func TestInTx(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ctx := asUser(dave, dave)
		create := func(name string) func(c *ent.Client) error {
			return func(c *ent.Client) error { return c.Project.Create().SetOwnerID(dave).SetName(name).Exec(ctx) }
		}
		failed := errors.New("f failed")
		if err := tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
			if err := create("failed")(c); err != nil {
				return err
			}
			return failed
		}); err != failed {
			t.Errorf("InTx = %v, want f's error as it is", err)
		}
		func() {
			defer func() {
				if v := recover(); v != "f panicked" {
					t.Errorf("recovered %v, want f's panic", v)
				}
			}()
			tenancy.InTx(context.Background(), c, func(c *ent.Client) error { //nolint:errcheck // it panics
				if err := create("panicked")(c); err != nil {
					return err
				}
				panic("f panicked")
			})
		}()
		if err := tenancy.InTx(context.Background(), c, create("committed")); err != nil {
			t.Fatalf("InTx after a failure and a panic: %v", err)
		}
		names := map[string]bool{}
		for _, p := range projects(t, c) {
			names[p.Name] = true
		}
		if names["failed"] || names["panicked"] || !names["committed"] {
			t.Errorf("projects named failed, panicked, committed: %v, %v, %v; want only committed", names["failed"], names["panicked"], names["committed"])
		}
	})
}

// TestWriteAndDeletionInterleaved drives a viewer's write and the deletion
// of its tenant into each order, with the first transaction held open while
// the second starts: the second waits, and no project outlives the
// deletion, whether the tenant's row existed or not.
func TestWriteAndDeletionInterleaved(t *testing.T) {
	const newOrg = "org_2oNeverSeen00000000000001"
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		d := newDeliverer(t, s)
		sys := viewer.NewSystemContext(context.Background())

		// The write first, open; then organization.deleted (as the webhook
		// applies it), which must wait for it and then delete its project.
		for _, tenant := range []string{orgA, newOrg} {
			tx, err := c.Tx(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Project.Create().SetOwnerID(alice).SetName("racing").Exec(asUser(alice, tenant)); err != nil {
				t.Fatalf("create in %s: %v", tenant, err)
			}
			deletion := started(func() int { return d.deliver(webhook.TypeOrganizationDeleted, clerkemu.Sample{OrgID: tenant}) })
			if !stillWaiting(deletion) {
				t.Errorf("%s: organization.deleted did not wait for the open write", tenant)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if code := <-deletion; code != http.StatusOK {
				t.Fatalf("organization.deleted: %d", code)
			}
			if n := countProjects(t, c, tenant); n != 0 {
				t.Errorf("%s: %d projects outlived organization.deleted", tenant, n)
			}
		}

		// The same for a personal tenant and user.deleted.
		tx, err := c.Tx(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Project.Create().SetOwnerID(dave).SetName("racing").Exec(asUser(dave, dave)); err != nil {
			t.Fatal(err)
		}
		deletion := started(func() int { return d.deliver(webhook.TypeUserDeleted, clerkemu.Sample{UserID: dave}) })
		if !stillWaiting(deletion) {
			t.Error("user.deleted did not wait for the open write")
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if code := <-deletion; code != http.StatusOK {
			t.Fatalf("user.deleted: %d", code)
		}
		if n := countProjects(t, c, dave); n != 0 {
			t.Errorf("%d projects outlived user.deleted", n)
		}

		// The deletion first, open (tombstoning the row as
		// organization.deleted does: locked FOR UPDATE, or inserted); then
		// the write, which must wait and then be refused.
		for _, tenant := range []string{orgB, "org_2oNeverSeen00000000000002"} {
			tx, err := c.Tx(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if tenant == orgB {
				q := tx.Organization.Query().Where(organization.ID(tenant))
				if s.Dialect == "postgres" {
					q.ForUpdate()
				}
				q.OnlyX(sys)
				tx.Organization.UpdateOneID(tenant).SetDeletedAt(now).ExecX(sys)
			} else {
				tx.Organization.Create().SetID(tenant).SetCreatedAt(now).SetUpdatedAt(now).SetDeletedAt(now).ExecX(sys)
			}
			tx.Project.Delete().Where(project.TenantID(tenant)).ExecX(sys)
			write := started(func() error {
				return tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
					return c.Project.Create().SetOwnerID(bob).SetName("late").Exec(asUser(bob, tenant))
				})
			})
			if !stillWaiting(write) {
				t.Errorf("%s: the write did not wait for the open deletion", tenant)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			wantTenantDeleted(t, <-write)
			if n := countProjects(t, c, tenant); n != 0 {
				t.Errorf("%s: %d projects in the deleted tenant", tenant, n)
			}
		}
	})
}
