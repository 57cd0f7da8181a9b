package schema

import (
	"regexp"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// Project is owned by a tenant. It has no edges: an edge to the unscoped
// users would let a mutation attach or detach rows without the Project
// policy, and its owner may be an organization's API key, not a user.
type Project struct {
	ent.Schema
}

// ownerID is the shape of a project's owner_id: a Clerk user id, or the id
// of the organization API key that created it.
var ownerID = regexp.MustCompile(`^(user|ak)_[A-Za-z0-9]+$`)

// Mixin of the Project.
func (Project) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}}
}

// Fields of the Project.
func (Project) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			Immutable().
			DefaultFunc(tenancy.NewProjectID).
			MaxLen(40),
		// No foreign key to users: an organization's API key creates
		// projects too, owned by the key's id.
		field.String("owner_id").
			Immutable().
			Match(ownerID).
			Comment("The user (user_…) or the organization's API key (ak_…) that created the project."),
		field.String("name").
			MaxLen(400),
		field.String("description").
			Default("").
			MaxLen(8000),
		field.Enum("status").
			Values("active", "archived").
			Default("active"),
		field.Time("created_at").
			Immutable().
			Default(time.Now),
		field.Time("updated_at").
			Default(time.Now).
			UpdateDefault(time.Now),
	}
}

// Indexes of the Project: each leads with tenant_id.
func (Project) Indexes() []ent.Index {
	return []ent.Index{
		// The conflict target for any upsert of a project.
		index.Fields("tenant_id", "id").Unique(),
		// ListProjects: newest first.
		index.Fields("tenant_id", "created_at", "id"),
	}
}

// Annotations of the Project.
func (Project) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("projects")}
}
