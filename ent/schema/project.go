package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// Project is owned by a tenant.
type Project struct {
	ent.Schema
}

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
		field.String("owner_id").
			Immutable().
			Comment("The user who created the project."),
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

// Edges of the Project. The owner edge is declared here only: an edge on the
// unscoped User side would let a mutation of a user attach or detach another
// tenant's projects without passing through the Project policy.
func (Project) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("owner", User.Type).
			Field("owner_id").
			Unique().
			Required().
			Immutable().
			Annotations(entsql.OnDelete(entsql.Restrict)),
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
