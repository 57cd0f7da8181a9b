package auth

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// MachineJWTConfig configures a MachineJWTVerifier.
type MachineJWTConfig struct {
	// Keys finds signing keys: the same KeySource as the SessionVerifier's,
	// so both share one key cache and one refetch budget. Required.
	Keys KeySource
	// Issuer is the exact iss every token must carry, as for sessions.
	// Required.
	Issuer string
	// OAuthAudiences, when not empty, are the audiences an OAuth token must
	// name one of in aud (GATEHOUSE_OAUTH_AUDIENCE).
	OAuthAudiences []string
	// Leeway is the clock skew tolerated on exp, nbf and iat; default 5 s.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache; 0 means 10,000 and a
	// negative size disables it.
	CacheSize int
	// CacheTTL caps how long a verified token is cached (never past its
	// exp); default one minute.
	CacheTTL time.Duration
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// MachineJWTVerifier verifies the JWT forms of machine (M2M) tokens (sub
// mch_…, header cat cl_B7d4PD333AAA or none) and OAuth access tokens
// (header typ at+jwt): networkless, with the instance's keys, through
// clerk-sdk-go's jwt.Verify, exp required. It is safe for concurrent use.
type MachineJWTVerifier struct {
	instanceJWT
	audiences []string
	cacheTTL  time.Duration
	now       func() time.Time
	cache     *tokenCache[*grant]
}

// NewMachineJWTVerifier returns a MachineJWTVerifier for cfg, or an error
// naming what is missing.
func NewMachineJWTVerifier(cfg MachineJWTConfig) (*MachineJWTVerifier, error) {
	jwt, err := newInstanceJWT("machine JWT verifier", cfg.Keys, cfg.Issuer, cfg.Leeway)
	if err != nil {
		return nil, err
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultOpaqueCache
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &MachineJWTVerifier{
		instanceJWT: jwt,
		audiences:   slices.Clone(cfg.OAuthAudiences),
		cacheTTL:    cfg.CacheTTL,
		now:         cfg.Now,
		cache:       newTokenCache[*grant](cfg.CacheSize),
	}, nil
}

// cached returns what an earlier verification of token established, if it
// still holds.
func (v *MachineJWTVerifier) cached(token string) (*grant, bool) {
	return v.cache.get(token, v.now())
}

// verify verifies token as a JWT of kind (viewer.CredentialM2M or
// viewer.CredentialOAuth), as jwtKind routed it. Its errors are for
// errorOf: UNAUTHENTICATED for any fault of the token, UNAVAILABLE when the
// signing keys cannot be had.
func (v *MachineJWTVerifier) verify(ctx context.Context, kind viewer.Credential, token string) (*grant, error) {
	now := v.now()
	if g, ok := v.cache.get(token, now); ok && g.kind == kind {
		return g, nil
	}
	if !compactJWS(token) {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	h, ok := readHeader(token)
	if !ok {
		return nil, unauthenticated(ReasonMalformed, nil)
	}
	// Refuse what carries another kind's marks before any key lookup: a
	// JWT template, a session, or for an OAuth token a machine token,
	// signed with the same instance key.
	switch kind {
	case viewer.CredentialM2M:
		if h.hasCat && h.cat != categoryMachine {
			return nil, unauthenticated(ReasonWrongCategory, nil)
		}
	case viewer.CredentialOAuth:
		if h.typ != typeAccessToken && h.typ != typeAccessTokenApplication {
			return nil, unauthenticated(ReasonMalformed, nil)
		}
		if h.hasCat && slices.Contains([]string{CategorySession, CategoryIgnore, categoryTemplate, categoryMachine}, h.cat) {
			return nil, unauthenticated(ReasonWrongCategory, nil)
		}
	default:
		return nil, unauthenticated(ReasonMalformed, nil)
	}

	extra := map[string]json.RawMessage{}
	claims, expiresAt, err := v.verifySigned(ctx, token, h, now, &extra)
	if err != nil {
		return nil, err
	}
	g := &grant{kind: kind, id: claims.ID, subject: claims.Subject, expiresAt: expiresAt}
	switch kind {
	case viewer.CredentialM2M:
		if !viewer.ValidMachineID(claims.Subject) {
			return nil, unauthenticated(ReasonBadSubject, nil)
		}
		g.restricted, g.tenants = tenantsOf(extra)
	case viewer.CredentialOAuth:
		if !viewer.ValidUserID(claims.Subject) {
			return nil, unauthenticated(ReasonBadSubject, nil)
		}
		if len(v.audiences) > 0 && !audienceMatches(claims.Audience, v.audiences) {
			return nil, unauthenticated(ReasonWrongAudience, nil)
		}
		g.scopes = namedPermissions(oauthScopes(extra))
	}
	v.cache.put(token, g, minTime(expiresAt, now.Add(v.cacheTTL)), now)
	return g, nil
}

// oauthScopes reads an OAuth JWT's scopes: "scp" (a list) or "scope"
// (space-separated), as Clerk's SDK reads them. Claims of another type name
// no scopes.
func oauthScopes(claims map[string]json.RawMessage) []string {
	var scp []string
	if raw, ok := claims["scp"]; ok && json.Unmarshal(raw, &scp) == nil {
		return scp
	}
	var scope string
	if raw, ok := claims["scope"]; ok && json.Unmarshal(raw, &scope) == nil {
		return strings.Fields(scope)
	}
	return nil
}
