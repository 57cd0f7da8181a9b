// Package tenancy holds the privacy rules by which the store itself scopes
// every read and write of tenant data to the caller's tenant, so that a
// handler that forgets a filter cannot leak another tenant's rows.
//
// The ent schemas attach these policies; ent runs them on every query and
// mutation. The viewer in the context decides:
//
//   - no viewer, or a viewer with a malformed tenant: denied;
//   - viewer.NewSystemContext: unscoped (webhooks, provisioning);
//   - any other viewer: its tenant only.
//
// Four holes that ent's privacy filters leave open are closed here and in the
// schemas (each has a test in tenancy_test.go):
//
//  1. Filters do not apply to INSERT: on create the tenant is set from the
//     viewer, and a mismatching tenant_id is denied.
//  2. An upsert's UPDATE branch bypasses filters: a caller may not choose a
//     project's id (the store replaces it with a fresh one), and every
//     unique key of a tenant table leads with tenant_id, so an insert can
//     only ever conflict with a row of its own tenant.
//  3. Edges from an unscoped entity could attach another tenant's rows: no
//     entity has edges; a project names its owner by an immutable owner_id.
//  4. tenant_id is Immutable, so no update can move a row between tenants.
//
// And one that tenancy alone does not cover: a tenant Clerk has deleted (an
// organization, or a user's personal tenant) takes no new rows, although
// sessions in it stay valid for a while. RefuseDeletedTenant checks it in
// the write's own transaction, which every viewer's write of tenant-owned
// rows must therefore run in.
package tenancy

import (
	"context"
	"crypto/rand"

	"entgo.io/ent/dialect/sql"
	"entgo.io/ent/entql"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/membership"
	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// NewProjectID returns a fresh, unguessable project id.
func NewProjectID() string { return "prj_" + rand.Text() }

// scope returns the tenant a context may reach, or system=true for
// Gatehouse's own unscoped work. It denies contexts without a usable viewer.
func scope(ctx context.Context) (p *viewer.Principal, system bool, err error) {
	p, ok := viewer.FromContext(ctx)
	if !ok {
		return nil, false, privacy.Denyf("tenancy: no viewer in context")
	}
	if p.Kind == viewer.KindSystem {
		return p, true, nil
	}
	if !viewer.ValidTenantID(p.TenantID) {
		return nil, false, privacy.Denyf("tenancy: viewer has no valid tenant")
	}
	return p, false, nil
}

// TenantPolicy is the policy of every tenant-owned entity (TenantMixin).
func TenantPolicy() privacy.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			filterByTenant(),
		},
		Mutation: privacy.MutationPolicy{
			privacy.OnMutationOperation(setTenantOnCreate(), ent.OpCreate),
			filterByTenant(),
		},
	}
}

// filterByTenant adds "tenant_id = viewer's tenant" to queries, updates and
// deletes. (ent ignores these predicates on INSERT: see setTenantOnCreate.)
func filterByTenant() privacy.QueryMutationRule {
	type tenantFilter interface {
		WhereTenantID(entql.StringP)
	}
	return privacy.FilterFunc(func(ctx context.Context, f privacy.Filter) error {
		p, system, err := scope(ctx)
		if err != nil || system {
			return orSkip(err)
		}
		tf, ok := f.(tenantFilter)
		if !ok {
			return privacy.Denyf("tenancy: %T has no tenant_id", f)
		}
		tf.WhereTenantID(entql.StringEQ(p.TenantID))
		return privacy.Skip
	})
}

// setTenantOnCreate closes holes 1 and 2 for callers: the tenant comes from
// the viewer, and ids are not the caller's to choose.
func setTenantOnCreate() privacy.MutationRule {
	type tenantMutation interface {
		TenantID() (string, bool)
		SetTenantID(string)
	}
	type idMutation interface {
		ID() (string, bool)
	}
	return privacy.MutationRuleFunc(func(ctx context.Context, m ent.Mutation) error {
		p, system, err := scope(ctx)
		if err != nil || system {
			return orSkip(err)
		}
		tm, ok := m.(tenantMutation)
		if !ok {
			return privacy.Denyf("tenancy: %T has no tenant_id", m)
		}
		// ent applies the schema's DefaultFunc before any hook runs, so a
		// set id cannot tell a caller's choice from the default. Project ids
		// are the store's to choose: whatever is set is replaced by a fresh
		// one, so an insert can never conflict with (nor an upsert update)
		// a row of another tenant. Other tenant rows take Clerk's ids and
		// are written by Gatehouse only.
		if pm, ok := m.(*ent.ProjectMutation); ok {
			pm.SetID(NewProjectID())
		} else if im, ok := m.(idMutation); ok {
			if _, set := im.ID(); set {
				return privacy.Denyf("tenancy: ids of tenant-owned rows are generated")
			}
		}
		if t, set := tm.TenantID(); set && t != p.TenantID {
			return privacy.Denyf("tenancy: create in another tenant")
		}
		tm.SetTenantID(p.TenantID)
		return privacy.Skip
	})
}

// SystemOnlyMutations denies every mutation not made under
// viewer.NewSystemContext: mirrored Clerk data changes only through webhooks
// and provisioning.
func SystemOnlyMutations() privacy.MutationRule {
	return privacy.MutationRuleFunc(func(ctx context.Context, _ ent.Mutation) error {
		_, system, err := scope(ctx)
		if err != nil {
			return err
		}
		if !system {
			return privacy.Denyf("tenancy: mirrored data is written by Gatehouse only")
		}
		return privacy.Skip
	})
}

// MembershipPolicy adds to TenantPolicy: memberships come from webhooks only.
func MembershipPolicy() privacy.Policy {
	return privacy.Policy{
		Mutation: privacy.MutationPolicy{SystemOnlyMutations()},
	}
}

// UserPolicy lets a viewer read the users who share its tenant: itself, the
// owner of its personal tenant, and live members of its organization.
func UserPolicy() privacy.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			privacy.UserQueryRuleFunc(func(ctx context.Context, q *ent.UserQuery) error {
				p, system, err := scope(ctx)
				if err != nil || system {
					return orSkip(err)
				}
				q.Where(VisibleUsers(p))
				return privacy.Skip
			}),
		},
		Mutation: privacy.MutationPolicy{SystemOnlyMutations()},
	}
}

// VisibleUsers is the predicate UserPolicy applies for p.
func VisibleUsers(p *viewer.Principal) func(*sql.Selector) {
	return func(s *sql.Selector) {
		m := sql.Table(membership.Table)
		members := sql.Select(m.C(membership.FieldUserID)).
			From(m).
			Where(sql.And(
				sql.EQ(m.C(membership.FieldTenantID), p.TenantID),
				sql.IsNull(m.C(membership.FieldDeletedAt)),
			))
		ors := []*sql.Predicate{sql.In(s.C(user.FieldID), members)}
		if p.Kind == viewer.KindUser {
			ors = append(ors, sql.EQ(s.C(user.FieldID), p.Subject))
		}
		if p.TenantID != p.Subject && len(p.TenantID) > 5 && p.TenantID[:5] == "user_" {
			ors = append(ors, sql.EQ(s.C(user.FieldID), p.TenantID))
		}
		s.Where(sql.Or(ors...))
	}
}

// OrganizationPolicy lets a viewer read only its own organization.
func OrganizationPolicy() privacy.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			privacy.FilterFunc(func(ctx context.Context, f privacy.Filter) error {
				p, system, err := scope(ctx)
				if err != nil || system {
					return orSkip(err)
				}
				of, ok := f.(*ent.OrganizationFilter)
				if !ok {
					return privacy.Denyf("tenancy: unexpected filter %T", f)
				}
				of.WhereID(entql.StringEQ(p.TenantID))
				return privacy.Skip
			}),
		},
		Mutation: privacy.MutationPolicy{SystemOnlyMutations()},
	}
}

// SystemOnlyPolicy keeps an entity to Gatehouse's own work.
func SystemOnlyPolicy() privacy.Policy {
	systemOnly := privacy.ContextQueryMutationRule(func(ctx context.Context) error {
		if !viewer.IsSystem(ctx) {
			return privacy.Denyf("tenancy: system records")
		}
		return privacy.Skip
	})
	return privacy.Policy{
		Query:    privacy.QueryPolicy{systemOnly},
		Mutation: privacy.MutationPolicy{systemOnly},
	}
}

func orSkip(err error) error {
	if err != nil {
		return err
	}
	return privacy.Skip
}
