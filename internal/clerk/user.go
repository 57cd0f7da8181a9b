package clerk

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
)

// User is the part of a Clerk user that Gatehouse mirrors.
type User struct {
	ID string
	// Email is the primary email address; empty for users without one
	// (phone-only sign-up).
	Email     string
	FirstName string
	LastName  string
	ImageURL  string
	CreatedAt time.Time
	UpdatedAt time.Time
}

var userIDPattern = regexp.MustCompile(`^user_[A-Za-z0-9]+$`)

// User fetches a user by id (GET {APIURL}/users/{id}). It returns
// ErrNotFound when Clerk does not know the user (or has deleted it) and
// ErrUnavailable when Clerk cannot answer now; anything else (a bad secret
// key, a malformed answer) is an error callers should treat as internal.
func (c *Client) User(ctx context.Context, id string) (*User, error) {
	if !userIDPattern.MatchString(id) {
		// Never let a malformed id reach the URL path.
		return nil, fmt.Errorf("clerk: get user: malformed id: %w", ErrNotFound)
	}
	var cu *clerksdk.User
	status, err := call(ctx, func(ctx context.Context) (err error) {
		cu, err = c.users.Get(ctx, id)
		return err
	})
	switch {
	case err == nil:
		return userFromAPI(cu), nil
	case status == http.StatusNotFound:
		return nil, fmt.Errorf("clerk: get user %s: %w", id, ErrNotFound)
	case transient(status):
		return nil, fmt.Errorf("clerk: get user %s: %w: %w", id, ErrUnavailable, err)
	case status < 300:
		return nil, fmt.Errorf("clerk: get user %s: decode: %w", id, err)
	default:
		return nil, fmt.Errorf("clerk: get user %s: %w", id, err)
	}
}

func userFromAPI(cu *clerksdk.User) *User {
	u := &User{
		ID:        cu.ID,
		FirstName: deref(cu.FirstName),
		LastName:  deref(cu.LastName),
		ImageURL:  deref(cu.ImageURL),
		CreatedAt: time.UnixMilli(cu.CreatedAt).UTC(),
		UpdatedAt: time.UnixMilli(cu.UpdatedAt).UTC(),
	}
	if primary := deref(cu.PrimaryEmailAddressID); primary != "" {
		for _, e := range cu.EmailAddresses {
			if e != nil && e.ID == primary {
				u.Email = e.EmailAddress
				break
			}
		}
	}
	return u
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
