package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

func TestDecodeEvent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		wantType  string
		wantID    string
		handled   bool
		wantEmail string
	}{
		{
			name:     "user.deleted stub",
			body:     `{"data":{"deleted":true,"id":"user_29wBMCtzATuFJut8jO2VNTVekS4","object":"user"},"object":"event","type":"user.deleted"}`,
			wantType: "user.deleted", wantID: "user_29wBMCtzATuFJut8jO2VNTVekS4", handled: true,
		},
		{
			name: "primary email is chosen by id, not position",
			body: `{"type":"user.updated","object":"event","data":{"id":"user_1","created_at":1,"updated_at":2,
				"email_addresses":[{"id":"idn_a","email_address":"old@example.com"},{"id":"idn_b","email_address":"new@example.com"}],
				"primary_email_address_id":"idn_b"}}`,
			wantType: "user.updated", wantID: "user_1", handled: true, wantEmail: "new@example.com",
		},
		{
			name: "phone-only user: primary_email_address_id null",
			body: `{"type":"user.created","object":"event","data":{"id":"user_1","created_at":1,"updated_at":2,
				"email_addresses":[],"primary_email_address_id":null,"first_name":null,"phone_numbers":[{"id":"idn_p","phone_number":"+15555550100"}]}}`,
			wantType: "user.created", wantID: "user_1", handled: true,
		},
		{
			name:     "unhandled type keeps its id",
			body:     `{"type":"session.created","object":"event","data":{"id":"sess_123","user_id":"user_1"}}`,
			wantType: "session.created", wantID: "sess_123",
		},
		{
			name:     "unhandled type with an odd id",
			body:     `{"type":"email.created","object":"event","data":{"id":{"nested":1}}}`,
			wantType: "email.created",
		},
		{
			name:     "unhandled type, data null",
			body:     `{"type":"session.created","object":"event","data":null}`,
			wantType: "session.created",
		},
		{
			name:     "unhandled type, data a string",
			body:     `{"type":"session.created","object":"event","data":"x"}`,
			wantType: "session.created",
		},
		{
			name:     "unhandled type, no data",
			body:     `{"type":"waitlistEntry.created","object":"event"}`,
			wantType: "waitlistEntry.created",
		},
		{
			name:     "no object field",
			body:     `{"type":"organization.deleted","data":{"deleted":true,"id":"org_1","object":"organization"}}`,
			wantType: "organization.deleted", wantID: "org_1", handled: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != tc.wantType || ev.ObjectID != tc.wantID || ev.Handled != tc.handled {
				t.Errorf("got %s %q handled=%v, want %s %q handled=%v", ev.Type, ev.ObjectID, ev.Handled, tc.wantType, tc.wantID, tc.handled)
			}
			if ev.user != nil && ev.user.primaryEmail() != tc.wantEmail {
				t.Errorf("email = %q, want %q", ev.user.primaryEmail(), tc.wantEmail)
			}
		})
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":                         ``,
		"not JSON":                      `hello`,
		"truncated":                     `{"type":"user.created","data":{`,
		"trailing garbage":              `{"type":"user.created","data":{}} x`,
		"array":                         `[]`,
		"no type":                       `{"object":"event","data":{"id":"user_1"}}`,
		"type not a string":             `{"type":7,"data":{}}`,
		"type with control characters":  `{"type":"user.\u0000created","data":{}}`,
		"object not event":              `{"type":"user.created","object":"user","data":{}}`,
		"no data":                       `{"type":"user.created","object":"event"}`,
		"data null":                     `{"type":"user.created","object":"event","data":null}`,
		"data a string":                 `{"type":"user.deleted","object":"event","data":"x"}`,
		"user id missing":               `{"type":"user.deleted","data":{"deleted":true}}`,
		"user id of an org":             `{"type":"user.deleted","data":{"id":"org_1"}}`,
		"user id with SQL":              `{"type":"user.deleted","data":{"id":"user_1' OR '1'='1"}}`,
		"user id too long":              `{"type":"user.deleted","data":{"id":"user_` + strings.Repeat("a", 100) + `"}}`,
		"user without updated_at":       `{"type":"user.updated","data":{"id":"user_1","created_at":1}}`,
		"user with float updated_at":    `{"type":"user.updated","data":{"id":"user_1","created_at":1,"updated_at":1.5}}`,
		"user with negative created_at": `{"type":"user.updated","data":{"id":"user_1","created_at":-1,"updated_at":2}}`,
		"org id of a user":              `{"type":"organization.deleted","data":{"id":"user_1"}}`,
		"membership without org":        `{"type":"organizationMembership.created","data":{"id":"orgmem_1","created_at":1,"updated_at":2,"public_user_data":{"user_id":"user_1"}}}`,
		"membership without user":       `{"type":"organizationMembership.created","data":{"id":"orgmem_1","created_at":1,"updated_at":2,"organization":{"id":"org_1"}}}`,
		"membership with bad id":        `{"type":"organizationMembership.deleted","data":{"id":"mem_1","created_at":1,"updated_at":2,"organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(body))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %+v, %v; want ErrMalformed", ev, err)
			}
		})
	}
}

// TestFixtures: every handled type has a sample event, in Clerk's shape,
// that decodes; and SampleEvent applies its overrides.
func TestFixtures(t *testing.T) {
	if diff := cmp.Diff(HandledTypes, clerkemu.SampleEventTypes()); diff != "" {
		t.Errorf("sample event types (-handled +samples):\n%s", diff)
	}
	for _, typ := range clerkemu.SampleEventTypes() {
		body, err := clerkemu.SampleEvent(typ, clerkemu.Sample{})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := DecodeEvent(body)
		if err != nil || ev.Type != typ || !ev.Handled {
			t.Errorf("%s fixture: %+v, %v", typ, ev, err)
		}
	}
	if _, err := clerkemu.SampleEvent("session.created", clerkemu.Sample{}); err == nil {
		t.Error("SampleEvent(session.created) succeeded, want an error")
	}
}

func TestSampleEventOverrides(t *testing.T) {
	when := time.UnixMilli(1_800_000_000_123)
	s := clerkemu.Sample{
		UserID: "user_2oOverride0000000000001", OrgID: "org_2oOverride00000000000001", MembershipID: "orgmem_2oOverride000000000001",
		Email: "grace@example.net", FirstName: "Grace", LastName: "Hopper", OrgName: "Navy", Role: "org:member", UpdatedAt: when,
	}
	ev := decodeSample(t, TypeUserUpdated, s)
	if u := ev.user; u.ID != s.UserID || u.primaryEmail() != s.Email || u.FirstName != "Grace" || u.LastName != "Hopper" || u.UpdatedAt != when.UnixMilli() {
		t.Errorf("user.updated = %+v", u)
	}
	ev = decodeSample(t, TypeOrganizationCreated, s)
	if o := ev.org; o.ID != s.OrgID || o.Name != "Navy" || o.UpdatedAt != when.UnixMilli() {
		t.Errorf("organization.created = %+v", o)
	}
	ev = decodeSample(t, TypeOrganizationMembershipUpdated, s)
	if m := ev.membership; m.ID != s.MembershipID || m.Organization.ID != s.OrgID || m.PublicUserData.UserID != s.UserID ||
		m.PublicUserData.Identifier != s.Email || m.Role != "org:member" || m.UpdatedAt != when.UnixMilli() {
		t.Errorf("organizationMembership.updated = %+v", m)
	}
	if ev := decodeSample(t, TypeUserDeleted, s); ev.ObjectID != s.UserID {
		t.Errorf("user.deleted is about %s", ev.ObjectID)
	}
}

func decodeSample(t *testing.T, typ string, s clerkemu.Sample) *Event {
	t.Helper()
	ev, err := DecodeEvent(sample(t, typ, s))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// FuzzDecodeEvent: whatever a signed body holds, decoding neither panics
// nor lets through an event without the ids and times the appliers need.
// (Its text the store cleans: see ent/schema's FuzzCleanText.)
func FuzzDecodeEvent(f *testing.F) {
	for _, typ := range HandledTypes {
		body, err := clerkemu.SampleEvent(typ, clerkemu.Sample{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if ev.Type == "" || !printable(ev.Type) {
			t.Fatalf("type %q", ev.Type)
		}
		if ev.ObjectID != "" && !validClerkID(ev.ObjectID, "") {
			t.Fatalf("object id %q", ev.ObjectID)
		}
		if !ev.Handled {
			return
		}
		switch {
		case ev.user != nil:
			u := ev.user
			if !validClerkID(u.ID, "user_") {
				t.Fatalf("user %+v", u)
			}
			if ev.Type != TypeUserDeleted && u.UpdatedAt <= 0 {
				t.Fatalf("user without updated_at: %+v", u)
			}
		case ev.org != nil:
			if !validClerkID(ev.org.ID, "org_") {
				t.Fatalf("organization %+v", ev.org)
			}
		case ev.membership != nil:
			m := ev.membership
			if !validClerkID(m.ID, "orgmem_") || !validClerkID(m.Organization.ID, "org_") || !validClerkID(m.PublicUserData.UserID, "user_") || m.UpdatedAt <= 0 {
				t.Fatalf("membership %+v", m)
			}
		default:
			t.Fatalf("handled %s with no payload", ev.Type)
		}
	})
}
