package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// Membership mirrors a Clerk organization membership. Its tenant is the
// organization. Memberships come from webhooks only; a deleted membership is
// kept as a tombstone so that a late update cannot bring it back.
type Membership struct {
	ent.Schema
}

// Mixin of the Membership: tenant-owned, and its strings come from Clerk.
func (Membership) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, ClerkMirrorMixin{}}
}

// Fields of the Membership.
func (Membership) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			Immutable().
			NotEmpty().
			Comment("The Clerk membership id (orgmem_…)."),
		field.String("user_id").
			Immutable().
			NotEmpty(),
		field.String("role").
			Default("").
			Comment(`In Clerk's "org:admin" form.`),
		field.Time("created_at"),
		field.Time("updated_at"),
		field.Int64("clerk_updated_at").
			Default(0).
			Comment("Clerk's updated_at in unix ms: an older event is ignored."),
		field.Time("deleted_at").
			Optional().
			Nillable(),
	}
}

// Indexes of the Membership: each leads with tenant_id.
func (Membership) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "id").Unique(),
		index.Fields("tenant_id", "user_id"),
	}
}

// Policy of the Membership, on top of TenantMixin's: written only by Gatehouse
// itself (the webhooks).
func (Membership) Policy() ent.Policy {
	return tenancy.MembershipPolicy()
}

// Annotations of the Membership.
func (Membership) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("memberships")}
}
