package auth

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// BackendAPI verifies opaque credentials with Clerk; *clerk.Client
// implements it. Each method returns clerk.ErrInvalidToken (or
// clerk.ErrTokenRevoked, clerk.ErrTokenExpired) when Clerk refuses the
// credential and clerk.ErrUnavailable when Clerk cannot answer; any other
// error is INTERNAL.
type BackendAPI interface {
	VerifyMachineToken(ctx context.Context, token string) (*clerk.MachineToken, error)
	VerifyAPIKey(ctx context.Context, secret string) (*clerk.APIKey, error)
	VerifyOAuthToken(ctx context.Context, token string) (*clerk.OAuthToken, error)
}

var _ BackendAPI = (*clerk.Client)(nil)

const (
	maxOpaqueTTL         = 30 * time.Second
	defaultRefusalTTL    = 30 * time.Second
	defaultOpaqueCache   = 10_000
	defaultVerifyTimeout = 10 * time.Second
)

// OpaqueConfig configures an OpaqueVerifier. Zero values take the defaults.
type OpaqueConfig struct {
	// Clerk asks the Backend API about a credential. Required.
	Clerk BackendAPI
	// TTL is how long Clerk's positive answer is trusted, counted from
	// when the request was sent; default and maximum 30 s. It is never
	// trusted past the credential's own expiry.
	TTL time.Duration
	// RefusalTTL is how long a credential Clerk refused is refused from
	// memory; default 30 s.
	RefusalTTL time.Duration
	// CacheSize bounds the answers and the refusals kept, each; default
	// 10,000.
	CacheSize int
	// Burst and Rate are each caller address's token bucket of requests to
	// Clerk (GATEHOUSE_VERIFY_RATE); default 20 and 10 per second.
	Burst int
	Rate  float64
	// MaxCallers bounds the addresses whose buckets are kept; default
	// 10,000.
	MaxCallers int
	// TrustedProxies are the addresses of the proxies in front of
	// Gatehouse (GATEHOUSE_TRUSTED_PROXIES): a call from one is charged to
	// the address it was forwarded for (x-forwarded-for), not to the
	// proxy's. None: every call is charged to its peer address.
	TrustedProxies []netip.Prefix
	// MaxInFlight bounds the requests to Clerk in flight, for all callers
	// together; default 16.
	MaxInFlight int
	// Timeout bounds one request to Clerk; default 10 s.
	Timeout time.Duration
	// OAuthAudiences, when not empty, are the audiences an OAuth token must
	// name one of (GATEHOUSE_OAUTH_AUDIENCE), if Clerk reports its aud.
	OAuthAudiences []string
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// OpaqueVerifier verifies Clerk's opaque credentials — machine tokens
// (mt_…), API keys (ak_…) and OAuth access tokens (oat_…) — through the
// Backend API, and makes sure no stream of invented ones can spend the
// Clerk instance's Backend API rate limit, which every replica and every
// other service on the same secret key share. In order, a credential is:
//
//  1. refused without a request if it is not shaped as Clerk issues them;
//  2. answered from memory if Clerk accepted it less than TTL ago (counted
//     from when that request was sent, never past the credential's
//     expiry), or refused from memory if Clerk refused it less than
//     RefusalTTL ago;
//  3. joined to the request in flight for the same credential, if there is
//     one;
//  4. refused with RESOURCE_EXHAUSTED if its caller's address is over its
//     budget or too many requests are in flight — no request made (renewing
//     a credential Clerk accepted before needs only the latter);
//  5. sent to Clerk, in a request that is cancelled when no caller waits
//     for it any more. Clerk down, 5xx or 429 is UNAVAILABLE and not
//     remembered.
//
// It is safe for concurrent use.
type OpaqueVerifier struct {
	clerk      BackendAPI
	ttl        time.Duration
	refusalTTL time.Duration
	timeout    time.Duration
	audiences  []string
	now        func() time.Time

	accepted *tokenCache[*grant]
	refused  *tokenCache[*Error]
	budget   *verifyBudget
	proxies  []netip.Prefix // trusted
	flight   flight[*grant]
}

// NewOpaqueVerifier returns an OpaqueVerifier for cfg. It panics if
// cfg.Clerk is nil: without a Backend API, pass no OpaqueVerifier to the
// Authenticator at all.
func NewOpaqueVerifier(cfg OpaqueConfig) *OpaqueVerifier {
	if cfg.Clerk == nil {
		panic("auth: NewOpaqueVerifier: nil Clerk")
	}
	if cfg.TTL <= 0 || cfg.TTL > maxOpaqueTTL {
		cfg.TTL = maxOpaqueTTL
	}
	if cfg.RefusalTTL <= 0 {
		cfg.RefusalTTL = defaultRefusalTTL
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = defaultOpaqueCache
	}
	if cfg.Burst <= 0 {
		cfg.Burst = config.DefaultVerifyBurst
	}
	if cfg.Rate <= 0 {
		cfg.Rate = config.DefaultVerifyRate
	}
	if cfg.MaxCallers <= 0 {
		cfg.MaxCallers = defaultMaxCallers
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = defaultMaxInFlight
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultVerifyTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &OpaqueVerifier{
		clerk:      cfg.Clerk,
		ttl:        cfg.TTL,
		refusalTTL: cfg.RefusalTTL,
		timeout:    cfg.Timeout,
		audiences:  slices.Clone(cfg.OAuthAudiences),
		now:        cfg.Now,
		accepted:   newTokenCache[*grant](cfg.CacheSize),
		refused:    newTokenCache[*Error](cfg.CacheSize),
		budget:     newVerifyBudget(cfg.Burst, cfg.Rate, cfg.MaxCallers, cfg.MaxInFlight),
		proxies:    slices.Clone(cfg.TrustedProxies),
	}
}

// grant verifies token, an opaque credential of kind, for the caller of
// ctx. The caches come first: they hold only credentials that passed the
// shape check, so a hit needs neither it nor the caller's address. Its errors
// are for errorOf.
func (v *OpaqueVerifier) grant(ctx context.Context, kind viewer.Credential, token string) (*grant, error) {
	renewal := false // Clerk accepted token before: its answer ran out
	cached := func() (*grant, error, bool) {
		now := v.now()
		g, ok, expired := v.accepted.lookup(token, now)
		if ok {
			return g, nil, true
		}
		renewal = expired
		if e, ok := v.refused.get(token, now); ok {
			return nil, e, true
		}
		return nil, nil, false
	}
	if g, err, ok := cached(); ok {
		return g, err
	}
	if !wellFormedOpaque(token, prefixOf(kind)) {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	return v.flight.do(ctx, token, cached,
		func() (func(), error) { return v.budget.admit(callerAddress(ctx, v.proxies), v.now(), renewal) },
		func(ctx context.Context) (*grant, error) { return v.verify(ctx, kind, token) },
	)
}

// verify asks Clerk, once, and remembers the answer: an acceptance until
// TTL after the request was sent (or the credential's expiry, if sooner), a
// refusal for RefusalTTL. Its error is an *Error.
func (v *OpaqueVerifier) verify(ctx context.Context, kind viewer.Credential, token string) (*grant, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	sent := v.now()
	g, err := v.ask(ctx, kind, token)
	if err != nil {
		e := errorOf(err)
		if e.Code == codes.Unauthenticated {
			v.accepted.delete(token) // no longer renewable outside the budget
			now := v.now()
			v.refused.put(token, e, now.Add(v.refusalTTL), now)
		}
		return nil, e
	}
	until := sent.Add(v.ttl)
	if !g.expiresAt.IsZero() && g.expiresAt.Before(until) {
		until = g.expiresAt
	}
	v.accepted.put(token, g, until, v.now())
	return g, nil
}

// ask makes the one request to Clerk for kind and turns the answer into a
// grant, refusing what Clerk accepts but Gatehouse cannot: a subject of the
// wrong kind, an OAuth audience not configured.
func (v *OpaqueVerifier) ask(ctx context.Context, kind viewer.Credential, token string) (*grant, error) {
	switch kind {
	case viewer.CredentialM2M:
		mt, err := v.clerk.VerifyMachineToken(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errVerify, err)
		}
		if !viewer.ValidMachineID(mt.Subject) {
			return nil, unauthenticated(ReasonBadSubject, nil)
		}
		g := &grant{kind: kind, id: mt.ID, subject: mt.Subject, expiresAt: mt.ExpiresAt}
		g.restricted, g.tenants = tenantsClaim(mt.Claims)
		return g, nil
	case viewer.CredentialAPIKey:
		k, err := v.clerk.VerifyAPIKey(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errVerify, err)
		}
		if !viewer.ValidUserID(k.Subject) && !viewer.ValidOrgID(k.Subject) {
			return nil, unauthenticated(ReasonBadSubject, nil)
		}
		return &grant{kind: kind, id: k.ID, subject: k.Subject, expiresAt: k.ExpiresAt, scopes: namedPermissions(k.Scopes)}, nil
	case viewer.CredentialOAuth:
		o, err := v.clerk.VerifyOAuthToken(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errVerify, err)
		}
		if !viewer.ValidUserID(o.Subject) {
			return nil, unauthenticated(ReasonBadSubject, nil)
		}
		// Clerk's own SDK holds an opaque token's aud, when the answer has
		// one, to the configured audience as it does a JWT's.
		if len(v.audiences) > 0 && len(o.Audience) > 0 && !audienceMatches(o.Audience, v.audiences) {
			return nil, unauthenticated(ReasonWrongAudience, nil)
		}
		return &grant{kind: kind, id: o.ID, subject: o.Subject, expiresAt: o.ExpiresAt, scopes: namedPermissions(o.Scopes)}, nil
	}
	return nil, fmt.Errorf("auth: no opaque credential of kind %v", kind)
}

// audienceMatches reports whether aud names one of want.
func audienceMatches(aud, want []string) bool {
	for _, a := range aud {
		if a != "" && slices.Contains(want, a) {
			return true
		}
	}
	return false
}
