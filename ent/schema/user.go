package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// User mirrors a Clerk user. It has no edges: a project names its owner by
// id (Project.owner_id), and membership is looked up by tenant.
type User struct {
	ent.Schema
}

// Mixin of the User: its strings come from Clerk.
func (User) Mixin() []ent.Mixin {
	return []ent.Mixin{ClerkMirrorMixin{}}
}

// Fields of the User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			Immutable().
			NotEmpty().
			Comment("The Clerk user id (user_…)."),
		field.String("email").
			Default("").
			Comment("The primary email address; not unique, may be empty."),
		field.String("first_name").Default(""),
		field.String("last_name").Default(""),
		field.String("image_url").Default(""),
		field.Time("created_at"),
		field.Time("updated_at"),
		field.Int64("clerk_updated_at").
			Default(0).
			Comment("Clerk's updated_at in unix ms; 0 for a row known only from a token or a membership."),
		field.Time("deleted_at").
			Optional().
			Nillable().
			Comment("Set by user.deleted: a tombstone that nothing resurrects."),
	}
}

// Indexes of the User.
func (User) Indexes() []ent.Index {
	return []ent.Index{index.Fields("email")}
}

// Policy of the User: readable where it shares the viewer's tenant; written
// only by Gatehouse itself.
func (User) Policy() ent.Policy {
	return tenancy.UserPolicy()
}

// Annotations of the User.
func (User) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("users")}
}
