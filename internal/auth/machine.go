package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// MachineTokenPrefix starts every Clerk machine token.
const MachineTokenPrefix = "mt_"

const (
	maxMachineTTL        = 30 * time.Second
	machineVerifyTimeout = 10 * time.Second
	defaultMachineCache  = 10_000
)

// MachineTokens verifies machine tokens with Clerk; *clerk.Client implements
// it. VerifyMachineToken returns clerk.ErrInvalidToken when Clerk rejects the
// token and clerk.ErrUnavailable when Clerk cannot answer.
type MachineTokens interface {
	VerifyMachineToken(ctx context.Context, token string) (*clerk.MachineToken, error)
}

var _ MachineTokens = (*clerk.Client)(nil)

// MachineConfig configures a MachineVerifier.
type MachineConfig struct {
	// Tokens asks Clerk about a token. Required.
	Tokens MachineTokens
	// TTL is how long Clerk's positive answer is trusted before asking
	// again; default and maximum 30 s. A token is never trusted past its
	// own expiry. Rejections are not cached.
	TTL time.Duration
	// CacheSize bounds the cache; 0 means 10,000, negative disables it.
	CacheSize int
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// MachineVerifier verifies Clerk machine (M2M) tokens and places the machine
// in the tenant it names. It is safe for concurrent use.
type MachineVerifier struct {
	tokens MachineTokens
	ttl    time.Duration
	now    func() time.Time
	cache  *tokenCache[*machineGrant]
	flight singleflight.Group
}

// machineGrant is what Clerk said about a token, independent of the tenant a
// call names: the tenant is checked on every call, never cached.
type machineGrant struct {
	id, subject string
	expiresAt   time.Time
	// restricted is set when the token's claims hold "tenants"; then only
	// those tenants are allowed.
	restricted bool
	tenants    []string
}

// NewMachineVerifier returns a MachineVerifier for cfg. It panics if
// cfg.Tokens is nil: without a Backend API, pass no MachineVerifier to the
// Authenticator at all.
func NewMachineVerifier(cfg MachineConfig) *MachineVerifier {
	if cfg.Tokens == nil {
		panic("auth: NewMachineVerifier: nil Tokens")
	}
	if cfg.TTL <= 0 || cfg.TTL > maxMachineTTL {
		cfg.TTL = maxMachineTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultMachineCache
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &MachineVerifier{
		tokens: cfg.Tokens,
		ttl:    cfg.TTL,
		now:    cfg.Now,
		cache:  newTokenCache[*machineGrant](cfg.CacheSize),
	}
}

// grant returns Clerk's answer for token, from the cache or from one request
// shared by every concurrent caller presenting the same token. Its errors are
// for errorOf.
func (v *MachineVerifier) grant(ctx context.Context, token string) (*machineGrant, error) {
	if !strings.HasPrefix(token, MachineTokenPrefix) || len(token) > maxTokenLen {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	if g, ok := v.cache.get(token, v.now()); ok {
		return g, nil
	}
	// The request keeps ctx's values but not its cancellation, so one
	// impatient caller does not fail the others sharing it.
	reqCtx := context.WithoutCancel(ctx)
	ch := v.flight.DoChan(token, func() (any, error) {
		reqCtx, cancel := context.WithTimeout(reqCtx, machineVerifyTimeout)
		defer cancel()
		mt, err := v.tokens.VerifyMachineToken(reqCtx, token)
		if err != nil {
			return nil, err
		}
		g := newMachineGrant(mt)
		now := v.now()
		until := now.Add(v.ttl)
		if !g.expiresAt.IsZero() {
			until = minTime(until, g.expiresAt)
		}
		v.cache.put(token, g, until, now)
		return g, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("verify machine token: %w: %w", errClerkWait, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, fmt.Errorf("%w: %w", errMachineTokens, res.Err)
		}
		g := res.Val.(*machineGrant)
		if g.subject == "" {
			return nil, unauthenticated(ReasonMalformed, nil)
		}
		return g, nil
	}
}

func newMachineGrant(mt *clerk.MachineToken) *machineGrant {
	g := &machineGrant{id: mt.ID, subject: mt.Subject, expiresAt: mt.ExpiresAt}
	g.restricted, g.tenants = tenantsClaim(mt.Claims)
	return g
}

// tenantsClaim reads the optional "tenants" custom claim. Claims that cannot
// be read at all, or a "tenants" that is not a list of strings, restrict the
// token to no tenant: a restriction that cannot be understood is not lifted.
func tenantsClaim(raw json.RawMessage) (restricted bool, tenants []string) {
	if len(raw) == 0 {
		return false, nil
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(raw, &claims); err != nil {
		return true, nil
	}
	list, ok := claims["tenants"]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(list, &tenants); err != nil {
		return true, nil
	}
	return true, tenants
}

func (g *machineGrant) principal(tenantID string) (*viewer.Principal, error) {
	switch {
	case tenantID == "":
		return nil, invalidArgument(ReasonMissingTenant)
	case !viewer.ValidTenantID(tenantID):
		return nil, invalidArgument(ReasonBadTenant)
	case g.restricted && !slices.Contains(g.tenants, tenantID):
		return nil, permissionDenied(ReasonTenantNotAllowed)
	}
	p := &viewer.Principal{
		Kind:        viewer.KindMachine,
		Subject:     g.subject,
		SessionID:   g.id,
		TenantID:    tenantID,
		Permissions: []string{PermProjectsRead},
		ExpiresAt:   g.expiresAt,
	}
	if strings.HasPrefix(tenantID, "org_") {
		p.OrgID = tenantID
	}
	return p, nil
}
