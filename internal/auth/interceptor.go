package auth

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/internal/metrics"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Metadata keys read by the Authenticator.
const (
	// AuthorizationKey carries "Bearer <token>"; the scheme is matched in
	// any case.
	AuthorizationKey = "authorization"
	// TenantKey names the tenant a machine acts in, or the organization a
	// user's API key or OAuth token acts in. Sessions ignore it.
	TenantKey = "x-gatehouse-tenant"
)

// Provisioner makes sure a verified user exists locally (first-sight
// creation for users the webhooks have not mirrored yet), and refuses
// deleted ones. *provision.Provisioner implements it.
//
// EnsureUser's refusals are provision.ErrDeletedUser,
// provision.ErrUnknownUser and provision.ErrBadSubject (UNAUTHENTICATED), and
// provision.ErrClerkUnavailable: UNAVAILABLE with RetryInfo as a
// *provision.UnavailableError, the caller's DEADLINE_EXCEEDED or CANCELED
// when it wraps a context error. A database outage (store.IsUnavailable) is
// UNAVAILABLE with RetryInfo; any other error is INTERNAL.
type Provisioner interface {
	EnsureUser(ctx context.Context, p *viewer.Principal) error
}

// RoleSource tells a user's role in an organization as the webhooks have
// mirrored it ("" when there is no live membership). It stands in for the
// role when a session token names an organization but carries no role, and
// decides whether a user's API key or OAuth token may act in an
// organization, and with what. *provision.Provisioner implements it. A
// database outage is UNAVAILABLE with RetryInfo; any other error is INTERNAL.
type RoleSource interface {
	MembershipRole(ctx context.Context, orgID, userID string) (string, error)
}

var (
	_ Provisioner = (*provision.Provisioner)(nil)
	_ RoleSource  = (*provision.Provisioner)(nil)
)

// Config configures an Authenticator.
type Config struct {
	// Sessions verifies session tokens. Required.
	Sessions *SessionVerifier
	// MachineJWTs verifies machine and OAuth tokens in JWT form. Required.
	MachineJWTs *MachineJWTVerifier
	// Opaque verifies opaque credentials (mt_, ak_, oat_) through the
	// Backend API; nil (no secret key) refuses them with UNAUTHENTICATED.
	Opaque *OpaqueVerifier
	// Rules are the access rules of the served RPCs.
	Rules Rules
	// Provisioner, if set, is called for every user a credential acts for.
	Provisioner Provisioner
	// Roles, if set, supplies the org role a session token lacks, and the
	// membership a user's API key or OAuth token needs to act in an
	// organization. Without it, they act only in the user's personal
	// tenant.
	Roles RoleSource
	// Registerer, if set, receives gatehouse_auth_failures_total{reason}.
	Registerer prometheus.Registerer
}

// Authenticator authenticates and authorizes gRPC calls. It is safe for
// concurrent use.
type Authenticator struct {
	sessions    *SessionVerifier
	jwts        *MachineJWTVerifier
	opaque      *OpaqueVerifier
	rules       Rules
	provisioner Provisioner
	roles       RoleSource
	failures    *prometheus.CounterVec
}

// New returns an Authenticator for cfg. It fails if cfg has no
// SessionVerifier or MachineJWTVerifier, or the metric cannot be
// registered.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("auth: no session verifier")
	}
	if cfg.MachineJWTs == nil {
		return nil, errors.New("auth: no machine JWT verifier")
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_auth_failures_total",
		Help: "Calls refused by authentication or authorization, by reason.",
	}, []string{"reason"})
	failures, err := metrics.Register(cfg.Registerer, failures)
	if err != nil {
		return nil, err
	}
	return &Authenticator{
		sessions:    cfg.Sessions,
		jwts:        cfg.MachineJWTs,
		opaque:      cfg.Opaque,
		rules:       cfg.Rules,
		provisioner: cfg.Provisioner,
		roles:       cfg.Roles,
		failures:    failures,
	}, nil
}

// Authenticate decides a call to fullMethod whose incoming metadata is in
// ctx, and returns ctx carrying the caller's Principal (unchanged for a
// public method). In order:
//
//  1. a public method passes, token or not;
//  2. the credential is routed to the one verifier of its kind — opaque
//     ones by prefix (mt_, ak_, oat_), JWTs by header and claims — and a
//     kind the method's rule does not list is PERMISSION_DENIED before any
//     verification;
//  3. the credential is verified: UNAUTHENTICATED if it fails (UNAVAILABLE
//     when Clerk cannot be reached, RESOURCE_EXHAUSTED when the caller is
//     over its budget of calls to Clerk); users are then provisioned;
//  4. a method that requires a user, called by an organization's key:
//     PERMISSION_DENIED;
//  5. the tenant: a machine names it in x-gatehouse-tenant (missing or
//     malformed: INVALID_ARGUMENT; not in its "tenants" claim:
//     PERMISSION_DENIED); an organization's key acts in its organization;
//     a user's key or OAuth token acts in the user's personal tenant, or in
//     the organization the header names if the user is a member
//     (otherwise PERMISSION_DENIED); sessions ignore the header;
//  6. a missing permission: PERMISSION_DENIED.
//
// A Gatehouse method without a rule is PERMISSION_DENIED. Errors are
// *Error; their cause, never shown to the caller, is what the per-call log
// line records for INTERNAL, UNAVAILABLE and RESOURCE_EXHAUSTED
// (Error.HiddenCause).
func (a *Authenticator) Authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	p, err := a.authenticate(ctx, fullMethod)
	if err != nil {
		a.failures.WithLabelValues(err.Reason).Inc()
		return nil, err
	}
	if p == nil {
		return ctx, nil
	}
	return viewer.NewContext(ctx, p), nil
}

// AuthFunc is Authenticate in go-grpc-middleware's auth.AuthFunc shape,
// taking the method from grpc.Method(ctx). Install it with that package's
// UnaryServerInterceptor and StreamServerInterceptor, which return its error
// unchanged. They call a service's AuthFuncOverride instead, if it has one:
// no Gatehouse service may, or its calls would skip the access rules.
func (a *Authenticator) AuthFunc(ctx context.Context) (context.Context, error) {
	method, ok := grpc.Method(ctx)
	if !ok {
		err := permissionDenied(ReasonNoAccessRule)
		a.failures.WithLabelValues(err.Reason).Inc()
		return nil, err
	}
	return a.Authenticate(ctx, method)
}

// authenticate returns the principal, or nil for a public method. It routes
// the credential: by prefix for opaque ones; for JWTs, the session cache
// first — so a session seen before costs one map lookup — then the
// machine-JWT cache, and only then a look at the header and claims.
//
// The metadata is read a key at a time: metadata.FromIncomingContext would
// copy all of it on every call.
func (a *Authenticator) authenticate(ctx context.Context, fullMethod string) (*viewer.Principal, *Error) {
	rule, ok := a.rules.Lookup(fullMethod)
	if !ok {
		return nil, permissionDenied(ReasonNoAccessRule)
	}
	if rule.Public {
		return nil, nil
	}
	token, err := bearerToken(metadata.ValueFromIncomingContext(ctx, AuthorizationKey))
	if err != nil {
		return nil, err
	}

	if kind, ok := opaqueKind(token); ok {
		if !rule.Credentials.Has(kind) {
			return nil, permissionDenied(ReasonCredentialNotAllowed)
		}
		if a.opaque == nil {
			return nil, unauthenticated(ReasonOpaqueDisabled, nil)
		}
		g, err := a.opaque.grant(ctx, kind, token)
		if err != nil {
			return nil, errorOf(err)
		}
		return a.granted(ctx, rule, g)
	}
	if p, ok := a.sessions.cached(token); ok {
		return a.session(ctx, rule, p)
	}
	if g, ok := a.jwts.cached(token); ok {
		return a.granted(ctx, rule, g)
	}
	kind, ok := jwtKind(token)
	switch {
	case !ok:
		return nil, unauthenticated(ReasonMalformed, nil)
	case !rule.Credentials.Has(kind):
		return nil, permissionDenied(ReasonCredentialNotAllowed)
	case kind == viewer.CredentialSession:
		p, err := a.sessions.Verify(ctx, token)
		if err != nil {
			return nil, errorOf(err)
		}
		return a.session(ctx, rule, p)
	default:
		g, err := a.jwts.verify(ctx, kind, token)
		if err != nil {
			return nil, errorOf(err)
		}
		return a.granted(ctx, rule, g)
	}
}

// session authorizes a verified session's principal p.
func (a *Authenticator) session(ctx context.Context, rule Rule, p *viewer.Principal) (*viewer.Principal, *Error) {
	if !rule.Credentials.Has(viewer.CredentialSession) {
		return nil, permissionDenied(ReasonCredentialNotAllowed)
	}
	if a.provisioner != nil {
		if err := a.provisioner.EnsureUser(ctx, p); err != nil {
			return nil, errorOf(err)
		}
	}
	if p.OrgID != "" && p.OrgRole == "" && a.roles != nil {
		role, err := a.roles.MembershipRole(ctx, p.OrgID, p.Subject)
		if err != nil {
			return nil, errorOf(err)
		}
		if role != "" {
			p = a.sessions.withRole(p, role)
		}
	}
	if !p.HasAll(rule.Permissions) {
		return nil, permissionDenied(ReasonMissingPermission)
	}
	return p, nil
}

// granted authorizes a verified credential other than a session, g, for
// this call: its kind, the user the rule may require, the tenant the call
// names, the permissions.
func (a *Authenticator) granted(ctx context.Context, rule Rule, g *grant) (*viewer.Principal, *Error) {
	if !rule.Credentials.Has(g.kind) {
		return nil, permissionDenied(ReasonCredentialNotAllowed)
	}
	if rule.RequireUser && !g.forUser() {
		return nil, permissionDenied(ReasonUserRequired)
	}
	tenant, err := tenantHeader(metadata.ValueFromIncomingContext(ctx, TenantKey))
	if err != nil {
		return nil, err
	}
	var p *viewer.Principal
	switch {
	case g.kind == viewer.CredentialM2M:
		p, err = machinePrincipal(g, tenant)
	case viewer.ValidOrgID(g.subject):
		p, err = a.organizationPrincipal(g, tenant)
	default:
		p, err = a.userPrincipal(ctx, g, tenant)
	}
	if err != nil {
		return nil, err
	}
	if !p.HasAll(rule.Permissions) {
		return nil, permissionDenied(ReasonMissingPermission)
	}
	return p, nil
}

// bearerToken extracts the token from the values of the authorization
// metadata: exactly one value, "Bearer" in any case, whitespace, the token.
// Errors never quote the values. It does not scan the token: the verifier of
// its kind checks every byte (compactJWS, wellFormedOpaque) before using it,
// and the caches hold only tokens that passed, so a cache hit needs no scan.
func bearerToken(values []string) (string, *Error) {
	switch len(values) {
	case 0:
		return "", unauthenticated(ReasonMissingToken, nil)
	case 1:
	default:
		return "", unauthenticated(ReasonMalformed, nil)
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", unauthenticated(ReasonMissingToken, nil)
	}
	scheme, token := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, token = v[:i], strings.TrimLeft(v[i:], " \t")
	}
	if !strings.EqualFold(scheme, "bearer") {
		return "", unauthenticated(ReasonMalformed, nil)
	}
	if token == "" {
		return "", unauthenticated(ReasonMissingToken, nil)
	}
	return token, nil
}

// tenantHeader reads x-gatehouse-tenant: one value, or none (""). A value
// present must have the shape of a tenant id.
func tenantHeader(values []string) (string, *Error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
		t := strings.TrimSpace(values[0])
		if t != "" && !viewer.ValidTenantID(t) {
			return "", invalidArgument(ReasonBadTenant)
		}
		return t, nil
	default:
		return "", invalidArgument(ReasonBadTenant)
	}
}
