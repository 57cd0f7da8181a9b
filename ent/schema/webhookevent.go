package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// WebhookEvent records a delivered Clerk webhook: its svix-id, written in the
// same transaction as the event's effect, makes redelivery a no-op; the raw
// payload of a handled event is kept for audit. Rows are purged after the
// retention (GATEHOUSE_WEBHOOK_RETENTION); the payloads about a user are
// erased, in the same transaction, by their user.deleted.
type WebhookEvent struct {
	ent.Schema
}

// Fields of the WebhookEvent.
func (WebhookEvent) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			Immutable().
			NotEmpty().
			Comment("The svix-id of the delivery."),
		field.String("type").Immutable(),
		field.String("object_id").
			Immutable().
			Default("").
			Comment("The id of the user, organization or membership the event is about."),
		field.String("user_id").
			Immutable().
			Default("").
			Comment("The user whose personal data the payload holds (user.*: the user; memberships: public_user_data's), or empty."),
		field.String("result").
			Comment("applied, stale or ignored: written as applied with the svix-id, before the effect, and corrected in the same transaction."),
		field.Bytes("payload").
			Optional().
			Comment("The raw, verified request body of a handled event; NULL for an unhandled type (its shape, and so whose data it holds, is unknown) and once erased."),
		field.Time("erased_at").
			Optional().
			Nillable().
			Comment("When the payload was erased because its user was deleted."),
		field.Time("received_at").
			Immutable().
			Default(time.Now),
	}
}

// Indexes of the WebhookEvent.
func (WebhookEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("object_id", "received_at"),
		// user.deleted: the events whose payload to erase.
		index.Fields("user_id"),
		// The retention sweep: the oldest events first.
		index.Fields("received_at"),
	}
}

// Policy of the WebhookEvent: Gatehouse's own records only.
func (WebhookEvent) Policy() ent.Policy {
	return tenancy.SystemOnlyPolicy()
}

// Annotations of the WebhookEvent.
func (WebhookEvent) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("webhook_events")}
}
