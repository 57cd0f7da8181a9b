// Package schema defines Gatehouse's ent schemas.
//
// Tenant-owned entities (Project, Membership) embed TenantMixin: an immutable,
// validated tenant_id that the store filters every query, update and delete
// by, and sets (or checks) on every insert; and no caller's write goes into a
// tenant Clerk has deleted. Mirrored Clerk entities (User, Organization) and
// the webhook log are written only by Gatehouse itself, under
// viewer.NewSystemContext; the mirrored ones (and Membership) embed
// ClerkMirrorMixin, which cleans every string from Clerk before it is
// stored.
package schema

import (
	"errors"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// TenantMixin makes an entity tenant-owned.
type TenantMixin struct {
	mixin.Schema
}

// Fields of the TenantMixin.
func (TenantMixin) Fields() []ent.Field {
	return []ent.Field{
		field.String("tenant_id").
			Immutable().
			NotEmpty().
			MaxLen(80).
			Validate(validTenantID).
			Comment("The organization (org_…) or personal tenant (user_…) that owns the row."),
	}
}

// Policy of the TenantMixin: every query, update and delete is filtered by the
// viewer's tenant; every insert gets (or must already carry) it.
func (TenantMixin) Policy() ent.Policy {
	return tenancy.TenantPolicy()
}

// Hooks of the TenantMixin: no viewer's write goes into a deleted tenant
// (checked in the write's transaction).
func (TenantMixin) Hooks() []ent.Hook {
	return []ent.Hook{tenancy.RefuseDeletedTenant()}
}

func validTenantID(id string) error {
	if !viewer.ValidTenantID(id) {
		return errors.New("malformed tenant id")
	}
	return nil
}
