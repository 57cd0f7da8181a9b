package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	clerkjwt "github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// The organization permissions Gatehouse's RPCs ask for.
const (
	PermProjectsCreate = "org:projects:create"
	PermProjectsRead   = "org:projects:read"
	PermProjectsUpdate = "org:projects:update"
	PermProjectsDelete = "org:projects:delete"
)

// Clerk's session token categories, the JWT "cat" header. Only the first two
// are sessions.
const (
	CategorySession  = "cl_B7d4PD111AAA"
	CategoryIgnore   = "cl_I7d4PD111III"
	categoryTemplate = "cl_B7d4PD222AAA"
	categoryMachine  = "cl_B7d4PD333AAA"
)

const (
	defaultLeeway    = 5 * time.Second
	defaultCacheSize = 100_000
	defaultCacheTTL  = time.Minute
	// maxTokenLen bounds what is parsed at all. Clerk session tokens are
	// around 1 KiB; custom claims can grow them, but not to this.
	maxTokenLen = 16 << 10
)

// DefaultRolePermissions are the permissions each organization role holds
// in addition to those in its token, unless SessionConfig.RoleDefaults says
// otherwise.
func DefaultRolePermissions() map[string][]string {
	return map[string][]string{
		"org:admin":  {PermProjectsCreate, PermProjectsRead, PermProjectsUpdate, PermProjectsDelete},
		"org:member": {PermProjectsCreate, PermProjectsRead},
	}
}

// DefaultPersonalPermissions are the permissions a user holds in their own
// personal tenant, unless SessionConfig.PersonalPermissions says otherwise.
func DefaultPersonalPermissions() []string {
	return []string{PermProjectsCreate, PermProjectsDelete, PermProjectsRead, PermProjectsUpdate}
}

// KeySource finds the public key that signed a token (a session, or a
// machine or OAuth JWT) by its key id.
// *clerk.KeySet (the JWKS from the Backend API, refetched at most once per
// interval for unknown ids) and *clerk.StaticKey (CLERK_JWT_KEY) implement
// it.
//
// Key returns clerk.ErrUnknownKey when no key has the id,
// clerk.ErrUnavailable when the keys cannot be fetched, or ctx's error when
// the caller's deadline ends first.
type KeySource interface {
	Key(ctx context.Context, kid string) (*clerksdk.JSONWebKey, error)
}

var (
	_ KeySource = (*clerk.KeySet)(nil)
	_ KeySource = (*clerk.StaticKey)(nil)
)

// SessionConfig configures a SessionVerifier.
type SessionConfig struct {
	// Keys finds signing keys. Required.
	Keys KeySource
	// Issuer is the exact iss every token must carry, e.g.
	// "https://clerk.example.com". Required.
	Issuer string
	// AuthorizedParties are the origins allowed in azp. When empty, or when
	// a token has no azp, azp is not checked.
	AuthorizedParties []string
	// Leeway is the clock skew tolerated on exp, nbf and iat; default 5 s.
	Leeway time.Duration
	// RoleDefaults are the permissions each organization role ("org:admin")
	// holds besides those in the token; nil means DefaultRolePermissions.
	RoleDefaults map[string][]string
	// PersonalPermissions are held in a personal tenant; nil means
	// DefaultPersonalPermissions.
	PersonalPermissions []string
	// CacheSize bounds the verified-token cache; 0 means 100,000 and a
	// negative size disables the cache.
	CacheSize int
	// CacheTTL caps how long a verified token is cached (it is never cached
	// past its exp); default one minute.
	CacheTTL time.Duration
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// SessionVerifier verifies Clerk session tokens. It is safe for concurrent
// use.
type SessionVerifier struct {
	instanceJWT
	parties  []string
	roles    map[string][]string
	personal []string
	cacheTTL time.Duration
	now      func() time.Time
	cache    *tokenCache[*viewer.Principal]
}

// NewSessionVerifier returns a SessionVerifier for cfg, or an error naming
// what is missing.
func NewSessionVerifier(cfg SessionConfig) (*SessionVerifier, error) {
	jwt, err := newInstanceJWT("session verifier", cfg.Keys, cfg.Issuer, cfg.Leeway)
	if err != nil {
		return nil, err
	}
	if cfg.RoleDefaults == nil {
		cfg.RoleDefaults = DefaultRolePermissions()
	}
	if cfg.PersonalPermissions == nil {
		cfg.PersonalPermissions = DefaultPersonalPermissions()
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultCacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	roles := make(map[string][]string, len(cfg.RoleDefaults))
	for role, perms := range cfg.RoleDefaults {
		roles[role] = slices.Clone(perms)
	}
	return &SessionVerifier{
		instanceJWT: jwt,
		parties:     slices.Clone(cfg.AuthorizedParties),
		roles:       roles,
		personal:    normalize(slices.Clone(cfg.PersonalPermissions)),
		cacheTTL:    cfg.CacheTTL,
		now:         cfg.Now,
		cache:       newTokenCache[*viewer.Principal](cfg.CacheSize),
	}, nil
}

// Verify verifies a session token and returns the principal it names: a
// KindUser in the active organization's tenant, or in the user's personal
// tenant when there is none. A JWT of another kind — a machine's or JWT
// template's cat, an OAuth access token's typ — is never a session.
//
// The returned Principal may be shared with other calls presenting the same
// token: treat it as read-only.
//
// Errors are *Error: UNAUTHENTICATED for any fault of the token (Reason says
// which), UNAVAILABLE when the signing keys cannot be fetched, and
// DEADLINE_EXCEEDED or CANCELED when ctx ends while waiting for them.
func (v *SessionVerifier) Verify(ctx context.Context, token string) (*viewer.Principal, error) {
	now := v.now()
	if p, ok := v.cache.get(token, now); ok {
		return p, nil
	}
	p, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, errorOf(err)
	}
	v.cache.put(token, p, minTime(p.ExpiresAt, now.Add(v.cacheTTL)), now)
	return p, nil
}

// cached returns the principal of a session token verified before, if it
// still holds: the whole cost of a warm call's authentication.
func (v *SessionVerifier) cached(token string) (*viewer.Principal, bool) {
	return v.cache.get(token, v.now())
}

// sessionExtra holds the claims clerk.SessionClaims does not decode.
type sessionExtra struct {
	Status string `json:"sts"`
}

func (v *SessionVerifier) verify(ctx context.Context, token string, now time.Time) (*viewer.Principal, error) {
	if token == "" {
		return nil, unauthenticated(ReasonMissingToken, nil)
	}
	if !compactJWS(token) {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	// The header is read here, before the SDK, to find the key and to turn
	// away what is not an RS256 session token without any key lookup.
	h, ok := readHeader(token)
	if !ok {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	switch {
	case h.hasCat && h.cat != CategorySession && h.cat != CategoryIgnore,
		h.typ == typeAccessToken || h.typ == typeAccessTokenApplication:
		return nil, unauthenticated(ReasonNotSessionToken, nil)
	}

	extra := &sessionExtra{}
	claims, expiresAt, err := v.verifySigned(ctx, token, h, now, extra)
	if err != nil {
		return nil, err
	}
	switch {
	case claims.SessionID == "":
		return nil, unauthenticated(ReasonNoSession, nil)
	case extra.Status == "pending":
		return nil, unauthenticated(ReasonPendingSession, nil)
	case len(v.parties) > 0 && claims.AuthorizedParty != "" && !slices.Contains(v.parties, claims.AuthorizedParty):
		return nil, unauthenticated(ReasonWrongAZP, nil)
	case !viewer.ValidUserID(claims.Subject):
		return nil, unauthenticated(ReasonBadSubject, nil)
	}

	p := &viewer.Principal{
		Kind:       viewer.KindUser,
		Credential: viewer.CredentialSession,
		Subject:    claims.Subject,
		SessionID:  claims.SessionID,
		TenantID:   claims.Subject,
		ExpiresAt:  expiresAt,
	}
	if org := claims.ActiveOrganizationID; org != "" {
		if !viewer.ValidOrgID(org) {
			return nil, unauthenticated(ReasonBadOrganization, nil)
		}
		role := claims.ActiveOrganizationRole
		if role == "org:" {
			// clerk-sdk-go prefixes the v2 "o.rol" claim even when it is
			// empty.
			role = ""
		}
		p.TenantID, p.OrgID, p.OrgRole = org, org, role
		perms := slices.Clone(claims.ActiveOrganizationPermissions)
		perms = append(perms, v.roles[p.OrgRole]...)
		p.Permissions = normalize(perms)
	} else {
		p.Permissions = slices.Clone(v.personal)
	}
	return p, nil
}

// instanceJWT is what every JWT the Clerk instance signs is verified with,
// whatever its kind: the instance's keys, its issuer, and the clock skew
// tolerated. The session and machine-JWT verifiers share it.
type instanceJWT struct {
	keys   KeySource
	issuer string
	leeway time.Duration
}

// newInstanceJWT checks the settings of a JWT verifier (what names it in
// the error, which lists every problem) and applies the default leeway.
func newInstanceJWT(what string, keys KeySource, issuer string, leeway time.Duration) (instanceJWT, error) {
	var problems []string
	if keys == nil {
		problems = append(problems, "no key source")
	}
	if issuer == "" {
		problems = append(problems, "no issuer")
	}
	if leeway < 0 {
		problems = append(problems, "negative leeway")
	}
	if len(problems) > 0 {
		return instanceJWT{}, &configError{what, problems}
	}
	if leeway == 0 {
		leeway = defaultLeeway
	}
	return instanceJWT{keys: keys, issuer: issuer, leeway: leeway}, nil
}

// configError lists what a constructor's config lacks.
type configError struct {
	what     string
	problems []string
}

func (e *configError) Error() string {
	return "auth: " + e.what + ": " + strings.Join(e.problems, "; ")
}

// verifySigned makes the checks every Clerk JWT gets, whatever its kind:
// RS256 with a key id, the key from the key source, clerk-sdk-go's
// jwt.Verify (signature; exp, nbf and iat with the leeway; iss pinned
// exactly), and an exp present. extra, a pointer, receives the claims the
// SDK does not decode. It returns the claims and the expiry; its errors are
// for errorOf.
func (j instanceJWT) verifySigned(ctx context.Context, token string, h header, now time.Time, extra any) (*clerksdk.SessionClaims, time.Time, error) {
	if h.alg != string(jose.RS256) {
		return nil, time.Time{}, unauthenticated(ReasonBadAlgorithm, nil)
	}
	if h.kid == "" {
		return nil, time.Time{}, unauthenticated(ReasonMalformed, nil)
	}
	key, err := j.keys.Key(ctx, h.kid)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", errKeySource, err)
	}
	claims, err := clerkjwt.Verify(ctx, &clerkjwt.VerifyParams{
		Token:                   token,
		JWK:                     key,
		Clock:                   clockFunc(func() time.Time { return now }),
		Leeway:                  j.leeway,
		ProxyURL:                &j.issuer, // makes the SDK compare iss exactly
		CustomClaimsConstructor: func(context.Context) any { return extra },
	})
	if err != nil {
		return nil, time.Time{}, &jwtError{err}
	}
	switch {
	case claims.Issuer != j.issuer:
		return nil, time.Time{}, unauthenticated(ReasonWrongIssuer, nil)
	case claims.Expiry == nil:
		return nil, time.Time{}, unauthenticated(ReasonNoExpiry, nil)
	}
	// go-jose has checked these with the leeway already; a token that
	// claims to come from the future is refused here too in case a later
	// SDK stops doing so.
	if late := now.Add(j.leeway).Unix(); claims.NotBefore != nil && *claims.NotBefore > late ||
		claims.IssuedAt != nil && *claims.IssuedAt > late {
		return nil, time.Time{}, unauthenticated(ReasonNotYetValid, nil)
	}
	expiresAt := time.Unix(*claims.Expiry, 0)
	if now.Add(-j.leeway).After(expiresAt) {
		return nil, time.Time{}, unauthenticated(ReasonExpired, nil)
	}
	return claims, expiresAt, nil
}

// withRole returns a copy of p (which may be shared through the token cache)
// acting with role in its organization, holding the role's defaults too.
func (v *SessionVerifier) withRole(p *viewer.Principal, role string) *viewer.Principal {
	q := *p
	q.OrgRole = role
	q.Permissions = normalize(append(slices.Clone(p.Permissions), v.roles[role]...))
	return &q
}

// compactJWS reports whether token has the shape of a compact JWS: three
// base64url segments, the first and last non-empty. It keeps the JSON
// serialization (and its multiple signatures) away from the parser.
func compactJWS(token string) bool {
	if len(token) > maxTokenLen {
		return false
	}
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2 && token[0] != '.' && token[len(token)-1] != '.'
}

// header is the part of a token's JOSE header read before verification.
type header struct {
	alg, kid, typ string
	cat           string
	hasCat        bool
}

// readHeader decodes the protected header of a compact JWS. Keys are matched
// exactly, as go-jose does, and a "cat" that is not a string is a category
// that is not a session's. The SDK parses the header again (with go-jose)
// before it verifies anything, so a header the two read differently can only
// fail: the alg and kid read here choose the key, which must then verify.
func readHeader(token string) (header, bool) {
	seg, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return header{}, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return header{}, false
	}
	var h header
	if v, ok := fields["alg"]; ok && json.Unmarshal(v, &h.alg) != nil {
		return header{}, false
	}
	if v, ok := fields["kid"]; ok && json.Unmarshal(v, &h.kid) != nil {
		return header{}, false
	}
	if v, ok := fields["typ"]; ok && json.Unmarshal(v, &h.typ) != nil {
		return header{}, false
	}
	if cat, ok := fields["cat"]; ok {
		h.hasCat = true
		if json.Unmarshal(cat, &h.cat) != nil {
			h.cat = "?" // present but not a string
		}
	}
	return h, true
}

// normalize sorts perms and drops duplicates and empty strings, in place.
func normalize(perms []string) []string {
	perms = slices.DeleteFunc(perms, func(s string) bool { return s == "" })
	slices.Sort(perms)
	return slices.Compact(perms)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// clockFunc adapts a func to clerk-sdk-go's Clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }
