package clerk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
)

// MachineToken is a machine (M2M) token that Clerk has verified as valid.
type MachineToken struct {
	// ID is the token's id (mt_…), not the token itself.
	ID string
	// Subject is the machine the token was issued to (mch_…).
	Subject string
	// Claims are the token's custom claims as JSON; nil if it has none.
	Claims json.RawMessage
	// Scopes are the machines this one may call.
	Scopes []string
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
}

// VerifyMachineToken asks Clerk whether token is a valid machine token
// (POST {APIURL}/m2m_tokens/verify). It returns ErrInvalidToken when Clerk
// rejects it, whether as a 4xx or as a 200 with revoked or expired set, and
// ErrUnavailable when Clerk cannot answer now. Errors never contain the token.
func (c *Client) VerifyMachineToken(ctx context.Context, token string) (*MachineToken, error) {
	if token == "" {
		return nil, fmt.Errorf("clerk: verify machine token: empty: %w", ErrInvalidToken)
	}
	var mt *clerksdk.M2MToken
	status, err := call(ctx, func(ctx context.Context) (err error) {
		mt, err = c.m2m.Verify(ctx, &m2m_token.VerifyParams{Token: token})
		return err
	})
	switch {
	case err == nil:
	case transient(status):
		return nil, fmt.Errorf("clerk: verify machine token: %w: %w", ErrUnavailable, err)
	case status < 300:
		// A decode error; its text describes JSON syntax, not the token.
		return nil, fmt.Errorf("clerk: verify machine token: decode: %w", err)
	default:
		return nil, fmt.Errorf("clerk: verify machine token: %w: %w", err, ErrInvalidToken)
	}

	expiresAt := unixTime(mt.Expiration)
	switch {
	case mt.Revoked:
		return nil, fmt.Errorf("clerk: verify machine token %s: revoked: %w", mt.ID, ErrInvalidToken)
	case mt.Expired, !expiresAt.IsZero() && !time.Now().Before(expiresAt):
		return nil, fmt.Errorf("clerk: verify machine token %s: expired: %w", mt.ID, ErrInvalidToken)
	}
	claims := mt.Claims
	if bytes.Equal(bytes.TrimSpace(claims), []byte("null")) {
		claims = nil
	}
	return &MachineToken{
		ID:        mt.ID,
		Subject:   mt.Subject,
		Claims:    claims,
		Scopes:    mt.Scopes,
		ExpiresAt: expiresAt,
	}, nil
}

// unixTime reads a Clerk timestamp. The Backend API uses Unix milliseconds,
// but the M2M docs and SDK fixtures show seconds; any value below 1e12
// (2001 in milliseconds, the year 33658 in seconds) is taken as seconds.
func unixTime(v *int64) time.Time {
	switch {
	case v == nil || *v <= 0:
		return time.Time{}
	case *v < 1e12:
		return time.Unix(*v, 0).UTC()
	default:
		return time.UnixMilli(*v).UTC()
	}
}
