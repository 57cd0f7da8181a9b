package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// The Clerk event types Gatehouse applies.
const (
	TypeUserCreated                   = "user.created"
	TypeUserUpdated                   = "user.updated"
	TypeUserDeleted                   = "user.deleted"
	TypeOrganizationCreated           = "organization.created"
	TypeOrganizationUpdated           = "organization.updated"
	TypeOrganizationDeleted           = "organization.deleted"
	TypeOrganizationMembershipCreated = "organizationMembership.created"
	TypeOrganizationMembershipUpdated = "organizationMembership.updated"
	TypeOrganizationMembershipDeleted = "organizationMembership.deleted"
)

// HandledTypes lists the event types Gatehouse applies, in a stable order.
var HandledTypes = []string{
	TypeUserCreated, TypeUserUpdated, TypeUserDeleted,
	TypeOrganizationCreated, TypeOrganizationUpdated, TypeOrganizationDeleted,
	TypeOrganizationMembershipCreated, TypeOrganizationMembershipUpdated, TypeOrganizationMembershipDeleted,
}

// ErrMalformed is wrapped by every error DecodeEvent returns: the payload is
// not a Clerk event Gatehouse can apply. The receiver answers it with 400.
var ErrMalformed = errors.New("malformed Clerk event")

// Limits on what a decoded event may carry. Clerk's values are far shorter;
// the limits keep a signed but hostile or corrupted payload from reaching
// the database as something it must store. Text (names, email addresses,
// URLs) is not refused: the store cleans every string from Clerk before it
// writes it (ent/schema's ClerkMirrorMixin), as it does for first-sight
// fetches, so that no profile a user can set makes an event unappliable.
const (
	maxTypeLen  = 100
	maxIDLen    = 100
	maxEmails   = 100
	maxClerkTS  = 1 << 53 // unix ms; beyond this a float64-minded producer has lost precision
	objectEvent = "event"
)

// Event is a decoded, validated Clerk webhook event.
type Event struct {
	// Type is the Clerk event type, e.g. "user.updated".
	Type string
	// ObjectID is the id of the user, organization or membership the event
	// is about ("" when an unhandled event carries no usable id).
	ObjectID string
	// Handled reports whether Type is one of HandledTypes.
	Handled bool
	// UserID is the user whose personal data the event holds: the user of
	// a user.* event, the member of a membership event; "" for others.
	UserID string

	user       *clerkUser
	org        *clerkOrganization
	membership *clerkMembership
}

// envelope is Clerk's event wrapper. Fields Gatehouse does not use
// (timestamp, instance_id, event_attributes) are left to the raw payload,
// which is kept for audit.
type envelope struct {
	Type   string          `json:"type"`
	Object string          `json:"object"`
	Data   json.RawMessage `json:"data"`
}

// clerkUser is the part of Clerk's User object (and of the user.deleted
// stub, {"id","object","deleted"}) that Gatehouse mirrors. Clerk sends null
// for absent names; encoding/json leaves those strings empty.
type clerkUser struct {
	ID                    string              `json:"id"`
	Deleted               bool                `json:"deleted"`
	EmailAddresses        []clerkEmailAddress `json:"email_addresses"`
	PrimaryEmailAddressID *string             `json:"primary_email_address_id"`
	FirstName             string              `json:"first_name"`
	LastName              string              `json:"last_name"`
	ImageURL              string              `json:"image_url"`
	CreatedAt             int64               `json:"created_at"`
	UpdatedAt             int64               `json:"updated_at"`
}

type clerkEmailAddress struct {
	ID           string `json:"id"`
	EmailAddress string `json:"email_address"`
}

// primaryEmail is the address whose id is primary_email_address_id: not
// the first in the list (Clerk's order is not the primary's), and "" for a
// user without one (phone-only or web3 sign-up).
func (u *clerkUser) primaryEmail() string {
	if u.PrimaryEmailAddressID == nil || *u.PrimaryEmailAddressID == "" {
		return ""
	}
	for _, e := range u.EmailAddresses {
		if e.ID == *u.PrimaryEmailAddressID {
			return e.EmailAddress
		}
	}
	return ""
}

// clerkOrganization is the part of Clerk's Organization object (and of the
// organization.deleted stub) that Gatehouse mirrors.
type clerkOrganization struct {
	ID        string `json:"id"`
	Deleted   bool   `json:"deleted"`
	Name      string `json:"name"`
	Slug      string `json:"slug"`
	ImageURL  string `json:"image_url"`
	CreatedAt int64  `json:"created_at"`
	UpdatedAt int64  `json:"updated_at"`
}

// clerkMembership is Clerk's OrganizationMembership object. Deleted
// memberships are sent in full, updated_at included.
type clerkMembership struct {
	ID             string            `json:"id"`
	Role           string            `json:"role"`
	Organization   clerkOrganization `json:"organization"`
	PublicUserData struct {
		UserID     string `json:"user_id"`
		Identifier string `json:"identifier"`
		FirstName  string `json:"first_name"`
		LastName   string `json:"last_name"`
		ImageURL   string `json:"image_url"`
	} `json:"public_user_data"`
	CreatedAt int64 `json:"created_at"`
	UpdatedAt int64 `json:"updated_at"`
}

// DecodeEvent parses and validates a Clerk event envelope
// ({"type","object":"event","data":{…}}) and, for the handled types, its
// payload. Unhandled types decode with Handled false whatever their data
// holds (null, a string, nothing at all), and are not looked into beyond
// their id. Every error wraps ErrMalformed.
//
// Call it only on a body whose signature has been verified.
func DecodeEvent(body []byte) (*Event, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, malformed("envelope: %s", jsonProblem(err))
	}
	if env.Object != "" && env.Object != objectEvent {
		return nil, malformed("object is not %q", objectEvent)
	}
	if env.Type == "" || len(env.Type) > maxTypeLen || !printable(env.Type) {
		return nil, malformed("missing or unreadable type")
	}
	ev := &Event{Type: env.Type}
	data := bytes.TrimSpace(env.Data)
	if !slices.Contains(HandledTypes, env.Type) {
		// Not ours to apply, whatever its data: answered 200, so Svix does
		// not retry it. Keep its id for the audit record when it has a sane
		// one.
		var obj struct {
			ID any `json:"id"`
		}
		if len(data) > 0 && data[0] == '{' && json.Unmarshal(data, &obj) == nil {
			if id, ok := obj.ID.(string); ok && validClerkID(id, "") {
				ev.ObjectID = id
			}
		}
		return ev, nil
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, malformed("%s: data is not an object", env.Type)
	}
	var err error
	switch env.Type {
	case TypeUserCreated, TypeUserUpdated, TypeUserDeleted:
		ev.user, err = decodeUser(env.Type, data)
		if ev.user != nil {
			ev.ObjectID, ev.UserID = ev.user.ID, ev.user.ID
		}
	case TypeOrganizationCreated, TypeOrganizationUpdated, TypeOrganizationDeleted:
		ev.org, err = decodeOrganization(env.Type, data)
		if ev.org != nil {
			ev.ObjectID = ev.org.ID
		}
	case TypeOrganizationMembershipCreated, TypeOrganizationMembershipUpdated, TypeOrganizationMembershipDeleted:
		ev.membership, err = decodeMembership(env.Type, data)
		if ev.membership != nil {
			ev.ObjectID, ev.UserID = ev.membership.ID, ev.membership.PublicUserData.UserID
		}
	}
	if err != nil {
		return nil, err
	}
	ev.Handled = true
	return ev, nil
}

func decodeUser(typ string, data []byte) (*clerkUser, error) {
	var u clerkUser
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, malformed("%s: %s", typ, jsonProblem(err))
	}
	if !validClerkID(u.ID, "user_") {
		return nil, malformed("%s: bad user id", typ)
	}
	if typ == TypeUserDeleted {
		return &u, nil
	}
	if err := checkTimes(typ, u.CreatedAt, u.UpdatedAt); err != nil {
		return nil, err
	}
	if len(u.EmailAddresses) > maxEmails {
		return nil, malformed("%s: too many email addresses", typ)
	}
	return &u, nil
}

func decodeOrganization(typ string, data []byte) (*clerkOrganization, error) {
	var o clerkOrganization
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, malformed("%s: %s", typ, jsonProblem(err))
	}
	if err := checkOrganization(typ, &o, typ != TypeOrganizationDeleted); err != nil {
		return nil, err
	}
	return &o, nil
}

func checkOrganization(typ string, o *clerkOrganization, full bool) error {
	if !validClerkID(o.ID, "org_") {
		return malformed("%s: bad organization id", typ)
	}
	if !full {
		return nil
	}
	return checkTimes(typ, o.CreatedAt, o.UpdatedAt)
}

func decodeMembership(typ string, data []byte) (*clerkMembership, error) {
	var m clerkMembership
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, malformed("%s: %s", typ, jsonProblem(err))
	}
	if !validClerkID(m.ID, "orgmem_") {
		return nil, malformed("%s: bad membership id", typ)
	}
	// The embedded organization is complete in Clerk's payloads, but only
	// its id is needed to apply the membership.
	if err := checkOrganization(typ, &m.Organization, false); err != nil {
		return nil, err
	}
	if !validClerkID(m.PublicUserData.UserID, "user_") {
		return nil, malformed("%s: bad public_user_data.user_id", typ)
	}
	if err := checkTimes(typ, m.CreatedAt, m.UpdatedAt); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkTimes requires Clerk's created_at and updated_at (unix ms): without
// updated_at two events for one object cannot be ordered.
func checkTimes(typ string, created, updated int64) error {
	if updated <= 0 || updated > maxClerkTS || created < 0 || created > maxClerkTS {
		return malformed("%s: missing or out-of-range created_at/updated_at", typ)
	}
	return nil
}

// validClerkID reports whether id looks like a Clerk id with the prefix
// (any "xxx_" prefix when prefix is ""): ASCII letters and digits after it.
// Tenant ids are further checked by viewer.ValidTenantID.
func validClerkID(id, prefix string) bool {
	if len(id) > maxIDLen {
		return false
	}
	if prefix == "" {
		i := strings.IndexByte(id, '_')
		if i <= 0 {
			return false
		}
		prefix = id[:i+1]
		for j := 0; j < i; j++ {
			if !alnum(id[j]) {
				return false
			}
		}
	}
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if !alnum(rest[i]) {
			return false
		}
	}
	switch prefix {
	case "user_":
		return viewer.ValidUserID(id)
	case "org_":
		return viewer.ValidOrgID(id)
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// printable reports whether s is ASCII without control characters.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// jsonProblem describes a decoding error without quoting the payload
// (encoding/json's messages can carry values from it): the reason is
// logged and sent back for a rejected request.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at offset %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s: want %s", typ.Field, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "invalid JSON"
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
