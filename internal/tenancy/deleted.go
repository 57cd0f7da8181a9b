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
// user for a few seconds. Deletes pass: emptying a deleted tenant is fine.
// Gatehouse's own writes (the webhooks) pass: they check tombstones
// themselves.
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

// lockLiveTenant locks the row of tenantID's organization or user FOR SHARE
// through client (a transaction's), inserting a stub first if there is
// none, and returns ErrTenantDeleted if it is a tombstone.
func lockLiveTenant(ctx context.Context, client *ent.Client, tenantID string) error {
	sys := viewer.NewSystemContext(ctx)
	var (
		kind   string
		query  func() (*time.Time, error)
		insert func() error
	)
	now := time.Now().UTC()
	if strings.HasPrefix(tenantID, "org_") {
		kind = "organization"
		query = func() (*time.Time, error) {
			o, err := client.Organization.Query().Where(organization.ID(tenantID), forShare).Only(sys)
			if err != nil {
				return nil, err
			}
			return o.DeletedAt, nil
		}
		insert = func() error {
			return client.Organization.Create().SetID(tenantID).SetCreatedAt(now).SetUpdatedAt(now).
				OnConflictColumns(organization.FieldID).DoNothing().Exec(sys)
		}
	} else {
		kind = "user"
		query = func() (*time.Time, error) {
			u, err := client.User.Query().Where(user.ID(tenantID), forShare).Only(sys)
			if err != nil {
				return nil, err
			}
			return u.DeletedAt, nil
		}
		insert = func() error {
			return client.User.Create().SetID(tenantID).SetCreatedAt(now).SetUpdatedAt(now).
				OnConflictColumns(user.FieldID).DoNothing().Exec(sys)
		}
	}
	deletedAt, err := query()
	if ent.IsNotFound(err) {
		// An insert that conflicts with one in flight waits for it; ent
		// reports an insert that did nothing as sql.ErrNoRows.
		switch err = insert(); {
		case err == nil:
			return nil // a new row, locked by this transaction
		case errors.Is(err, sql.ErrNoRows):
			deletedAt, err = query()
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("tenancy: look up %s %s: %w", kind, tenantID, err)
	case deletedAt != nil:
		return fmt.Errorf("%s %s: %w", kind, tenantID, ErrTenantDeleted)
	}
	return nil
}

// forShare locks the selected rows FOR SHARE on Postgres. SQLite has no row
// locks and needs none: the store runs its transactions one at a time.
func forShare(s *entsql.Selector) {
	if s.Dialect() == dialect.Postgres {
		s.ForShare()
	}
}
