package clerkemu

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// sampleEvents are sample events in Clerk's JSON shapes, one file per type,
// named <type>.json. They all describe one user (Ada) in one organization,
// with increasing updated_at in the order Clerk would send them.
//
//go:embed events/*.json
var sampleEvents embed.FS

// sampleTypes are the event types with a sample: the ones Gatehouse
// handles, in the order they are listed to a user.
var sampleTypes = []string{
	"user.created", "user.updated", "user.deleted",
	"organization.created", "organization.updated", "organization.deleted",
	"organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted",
}

// Sample overrides fields of a sample event; zero fields keep the sample's
// values. Fields that do not apply to the event type are ignored.
type Sample struct {
	// UserID is data.id of user.* events and public_user_data.user_id of
	// organizationMembership.* events.
	UserID string
	// OrgID is data.id of organization.* events and organization.id of
	// organizationMembership.* events.
	OrgID string
	// MembershipID is data.id of organizationMembership.* events.
	MembershipID string
	// Email is the primary email address of user.created/updated, and
	// public_user_data.identifier of memberships.
	Email string
	// FirstName and LastName of the user (user.* and public_user_data).
	FirstName, LastName string
	// OrgName is the organization's name (organization.* and the
	// membership's embedded organization).
	OrgName string
	// Role is a membership's role, in Clerk's "org:admin" form.
	Role string
	// UpdatedAt sets data.updated_at and the envelope's timestamp. The
	// samples' own times are in 2024: a sender that wants a fresh event
	// applied over an earlier one (e.g. `gatehouse webhook send`) should
	// pass time.Now().
	UpdatedAt time.Time
}

// SampleEventTypes lists the event types SampleEvent can build.
func SampleEventTypes() []string { return append([]string(nil), sampleTypes...) }

// SampleEvent returns a Clerk event of eventType built from the embedded
// sample and s, ready to sign and send (see SendWebhook). It fails for a
// type with no sample.
func SampleEvent(eventType string, s Sample) ([]byte, error) {
	raw, err := sampleEvents.ReadFile("events/" + eventType + ".json")
	if err != nil {
		return nil, fmt.Errorf("webhook: no sample for event type %q (have %v)", eventType, sampleTypes)
	}
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("webhook: fixture %s: %w", eventType, err)
	}
	data, _ := ev["data"].(map[string]any)
	if data == nil {
		return nil, fmt.Errorf("webhook: fixture %s has no data", eventType)
	}
	set := func(m map[string]any, key, v string) {
		if v != "" && m != nil {
			m[key] = v
		}
	}
	ms := s.UpdatedAt.UnixMilli()
	object, action, _ := strings.Cut(eventType, ".")
	switch object {
	case "user":
		set(data, "id", s.UserID)
		if action == "deleted" {
			break
		}
		set(data, "first_name", s.FirstName)
		set(data, "last_name", s.LastName)
		if s.Email != "" {
			primary, _ := data["primary_email_address_id"].(string)
			emails, _ := data["email_addresses"].([]any)
			for _, e := range emails {
				if e, ok := e.(map[string]any); ok && e["id"] == primary {
					e["email_address"] = s.Email
				}
			}
		}
	case "organization":
		set(data, "id", s.OrgID)
		if action != "deleted" {
			set(data, "name", s.OrgName)
		}
	case "organizationMembership":
		set(data, "id", s.MembershipID)
		set(data, "role", s.Role)
		org, _ := data["organization"].(map[string]any)
		set(org, "id", s.OrgID)
		set(org, "name", s.OrgName)
		pud, _ := data["public_user_data"].(map[string]any)
		set(pud, "user_id", s.UserID)
		set(pud, "identifier", s.Email)
		set(pud, "first_name", s.FirstName)
		set(pud, "last_name", s.LastName)
	}
	if !s.UpdatedAt.IsZero() {
		if _, ok := data["updated_at"]; ok {
			data["updated_at"] = ms
		}
		ev["timestamp"] = ms
	}
	return json.Marshal(ev)
}
