package tenancy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/organization"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// ErrTenantDeleted is the error of a write into a tenant whose organization
// or user Clerk has deleted; derrors shows it as FAILED_PRECONDITION.
var ErrTenantDeleted = errors.New("the tenant was deleted and takes no new data")

// errNotInTx is a write the store cannot check: the caller forgot the
// transaction. It is a bug, not the caller's fault.
var errNotInTx = errors.New("tenancy: a write of tenant-owned rows must run in a transaction")

// RefuseDeletedTenant is the hook of every tenant-owned entity (TenantMixin):
// a viewer's create or update of tenant-owned rows is refused with
// ErrTenantDeleted once the tenant's organization (org_…) or user (user_…)
// is a tombstone — a session stays valid for up to a minute after
// organization.deleted or user.deleted, and another replica trusts a live
// user until the deletion's notification reaches it, under a second (for up
// to 5 s, the provisioner's window, if notifications are lost). Deletes
// pass: emptying a deleted tenant is fine. Gatehouse's own writes (the
// webhooks) pass: they check tombstones themselves.
//
// The check runs in the write's own transaction, and takes the tenant row's
// lock FOR SHARE (on Postgres) until it commits; organization.deleted and
// user.deleted lock the same row FOR UPDATE before they tombstone it and
// delete the tenant's rows. So under READ COMMITTED either the write commits
// first and the deletion, which waits for it, then deletes what it wrote; or
// the deletion commits first and the write, which waits for it, then sees the
// tombstone. A tenant with no row yet (an organization whose webhook has not
// arrived) gets a stub row, inserted as the webhooks insert theirs, so that
// there is a row to lock: a concurrent deletion's insert of the tombstone
// then waits for this transaction too. SQLite runs one transaction at a time
// and needs no lock.
//
// A viewer's write outside a transaction is refused (an error that is not a
// privacy denial: it is a bug in the caller, shown as INTERNAL), since it
// could not be checked this way.
func RefuseDeletedTenant() ent.Hook {
	type txMutation interface {
		Tx() (*ent.Tx, error)
		Client() *ent.Client
	}
	return func(next ent.Mutator) ent.Mutator {
		return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
			if !m.Op().Is(ent.OpCreate | ent.OpUpdate | ent.OpUpdateOne) {
				return next.Mutate(ctx, m)
			}
			p, system, err := scope(ctx)
			switch {
			case err != nil:
				return nil, err
			case system:
				return next.Mutate(ctx, m)
			}
			tm, ok := m.(txMutation)
			if !ok {
				return nil, fmt.Errorf("tenancy: %T cannot be checked for a deleted tenant", m)
			}
			if _, err := tm.Tx(); err != nil {
				return nil, fmt.Errorf("%w (%s %s)", errNotInTx, m.Op(), m.Type())
			}
			if err := lockLiveTenant(ctx, tm.Client(), p.TenantID); err != nil {
				return nil, err
			}
			return next.Mutate(ctx, m)
		})
	}
}

// InTx runs f in a transaction of client, as every viewer's write of
// tenant-owned rows must run (RefuseDeletedTenant), and commits it if f
// succeeds. If f fails, or panics, the transaction is rolled back; f's
// error is returned as it is, and the panic goes on.
func InTx(ctx context.Context, client *ent.Client, f func(tx *ent.Client) error) error {
	tx, err := client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	finished := false
	defer func() {
		if !finished {
			tx.Rollback() //nolint:errcheck // f's error, or its panic, is the one to report
		}
	}()
	if err := f(tx.Client()); err != nil {
		return err
	}
	finished = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// lockLiveTenant locks the row of tenantID's organization or user FOR SHARE
// through client (a transaction's), inserting a stub first if there is
// none, and returns ErrTenantDeleted if it is a tombstone.
func lockLiveTenant(ctx context.Context, client *ent.Client, tenantID string) error {
	sys := viewer.NewSystemContext(ctx)
	now := time.Now().UTC()
	// Only the statements differ between the two kinds of tenant: ent's
	// builders are typed per entity.
	kind := "user"
	query := func(ctx context.Context) (*time.Time, error) {
		u, err := client.User.Query().Where(user.ID(tenantID), forShare).Only(ctx)
		if err != nil {
			return nil, err
		}
		return u.DeletedAt, nil
	}
	insert := func(ctx context.Context) error {
		return client.User.Create().SetID(tenantID).SetCreatedAt(now).SetUpdatedAt(now).
			OnConflictColumns(user.FieldID).DoNothing().Exec(ctx)
	}
	if strings.HasPrefix(tenantID, "org_") {
		kind = "organization"
		query = func(ctx context.Context) (*time.Time, error) {
			o, err := client.Organization.Query().Where(organization.ID(tenantID), forShare).Only(ctx)
			if err != nil {
				return nil, err
			}
			return o.DeletedAt, nil
		}
		insert = func(ctx context.Context) error {
			return client.Organization.Create().SetID(tenantID).SetCreatedAt(now).SetUpdatedAt(now).
				OnConflictColumns(organization.FieldID).DoNothing().Exec(ctx)
		}
	}
	// A stub this transaction inserted is live (deletedAt nil).
	deletedAt, _, err := LockOrInsert(sys, false, query, insert)
	switch {
	case err != nil:
		return fmt.Errorf("tenancy: look up %s %s: %w", kind, tenantID, err)
	case deletedAt != nil:
		return fmt.Errorf("%s %s: %w", kind, tenantID, ErrTenantDeleted)
	}
	return nil
}

// LockOrInsert reaches a row that may not exist yet and holds its lock for
// the rest of the transaction: query selects the row and locks it (FOR
// UPDATE or FOR SHARE on Postgres), and insert adds it by INSERT … ON
// CONFLICT DO NOTHING when query finds none (ent.IsNotFound). When the
// insert inserts, the new row is the caller's — an uncommitted insert is
// locked too — and inserted is true (row is then R's zero value). When a
// concurrent transaction inserted the row first, the insert waits for it
// to commit and does nothing (ent reports sql.ErrNoRows), and the committed
// row is selected and locked. With insertFirst the insert is tried before
// the select: for a row that is usually new, that saves a round trip.
//
// RefuseDeletedTenant and the webhook appliers (internal/webhook) reach the
// organization and user rows this way, so that a write into a tenant and
// the deletion that tombstones its row are ordered by that row's lock even
// when neither found the row there.
func LockOrInsert[R any](ctx context.Context, insertFirst bool, query func(context.Context) (R, error), insert func(context.Context) error) (row R, inserted bool, err error) {
	if !insertFirst {
		row, err = query(ctx)
		if !ent.IsNotFound(err) {
			return row, false, err
		}
	}
	var zero R
	switch err := insert(ctx); {
	case err == nil:
		return zero, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return zero, false, err
	}
	row, err = query(ctx)
	return row, false, err
}

// forShare locks the selected rows FOR SHARE on Postgres. SQLite has no row
// locks and needs none: the store runs its transactions one at a time.
func forShare(s *entsql.Selector) {
	if s.Dialect() == dialect.Postgres {
		s.ForShare()
	}
}
