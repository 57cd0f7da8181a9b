package clerkemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
)

// User is a Clerk user as the emulator serves it.
type User struct {
	ID string
	// Email is the primary address; empty for a phone-only user.
	Email string
	// SecondaryEmails are listed before the primary one in
	// email_addresses, as Clerk may, so clients must pick the primary by id.
	SecondaryEmails []string
	FirstName       string
	LastName        string
	ImageURL        string
	// CreatedAt and UpdatedAt default to the time of AddUser.
	CreatedAt time.Time
	UpdatedAt time.Time
}

var userIDPattern = regexp.MustCompile(`^user_[A-Za-z0-9]+$`)

// AddUser adds or replaces a user, undoing an earlier DeleteUser.
func (e *Emulator) AddUser(u User) {
	now := time.Now()
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = now
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.users[u.ID] = u
	delete(e.deleted, u.ID)
}

// DeleteUser deletes a user: GET /v1/users/{id} then answers 404, as Clerk
// does, even with AutoUsers.
func (e *Emulator) DeleteUser(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.users, id)
	e.deleted[id] = true
}

// SetUsersStatus makes GET /v1/users/{id} answer status with a Clerk error
// body (e.g. 503 or 429), for fault injection; 0 restores normal answers.
func (e *Emulator) SetUsersStatus(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.usersStatus = status
}

func (e *Emulator) serveUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	status := e.usersStatus
	u, ok := e.users[id]
	if !ok && e.autoUsers && !e.deleted[id] && userIDPattern.MatchString(id) {
		u, ok = syntheticUser(id), true
		e.users[id] = u
	}
	e.mu.Unlock()
	switch {
	case status != 0:
		writeError(w, status, "internal_clerk_error", http.StatusText(status), "Injected failure.")
	case !ok:
		writeError(w, http.StatusNotFound, "resource_not_found", "not found", "The requested resource was not found.")
	default:
		writeJSON(w, http.StatusOK, userJSON(u))
	}
}

// syntheticUser makes up a stable user for an unknown id (AutoUsers).
func syntheticUser(id string) User {
	now := time.Now()
	suffix := strings.ToLower(strings.TrimPrefix(id, "user_"))
	return User{
		ID:        id,
		Email:     suffix + "@example.test",
		FirstName: "Dev",
		LastName:  "User " + suffix[:min(len(suffix), 6)],
		CreatedAt: now,
		UpdatedAt: now,
	}
}

// userJSON renders u in the Backend API's user shape.
func userJSON(u User) *clerksdk.User {
	cu := &clerksdk.User{
		Object:         "user",
		ID:             u.ID,
		FirstName:      nullable(u.FirstName),
		LastName:       nullable(u.LastName),
		ImageURL:       &u.ImageURL,
		HasImage:       u.ImageURL != "",
		EmailAddresses: []*clerksdk.EmailAddress{},
		PhoneNumbers:   []*clerksdk.PhoneNumber{},
		PublicMetadata: json.RawMessage("{}"),
		CreatedAt:      u.CreatedAt.UnixMilli(),
		UpdatedAt:      u.UpdatedAt.UnixMilli(),
	}
	for _, addr := range u.SecondaryEmails {
		cu.EmailAddresses = append(cu.EmailAddresses, emailJSON(u.ID, addr))
	}
	if u.Email != "" {
		primary := emailJSON(u.ID, u.Email)
		cu.PrimaryEmailAddressID = &primary.ID
		cu.EmailAddresses = append(cu.EmailAddresses, primary)
	}
	return cu
}

func emailJSON(userID, addr string) *clerksdk.EmailAddress {
	sum := sha256.Sum256([]byte(userID + "\x00" + addr))
	return &clerksdk.EmailAddress{
		ID:           "idn_" + hex.EncodeToString(sum[:12]),
		Object:       "email_address",
		EmailAddress: addr,
		Verification: &clerksdk.Verification{Status: "verified", Strategy: "email_code"},
		LinkedTo:     []*clerksdk.LinkedIdentification{},
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
