package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// Organization mirrors a Clerk organization.
type Organization struct {
	ent.Schema
}

// Mixin of the Organization: its strings come from Clerk.
func (Organization) Mixin() []ent.Mixin {
	return []ent.Mixin{ClerkMirrorMixin{}}
}

// Fields of the Organization.
func (Organization) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			Immutable().
			NotEmpty().
			Comment("The Clerk organization id (org_…)."),
		field.String("name").Default(""),
		field.String("slug").Default(""),
		field.String("image_url").Default(""),
		field.Time("created_at"),
		field.Time("updated_at"),
		field.Int64("clerk_updated_at").Default(0),
		field.Time("deleted_at").Optional().Nillable(),
	}
}

// Policy of the Organization: a viewer reads only its own; written only by
// Gatehouse itself.
func (Organization) Policy() ent.Policy {
	return tenancy.OrganizationPolicy()
}

// Annotations of the Organization.
func (Organization) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("organizations")}
}
