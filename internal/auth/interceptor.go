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
	// TenantKey names the tenant a machine acts in.
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
// role when a session token names an organization but carries no role.
// *provision.Provisioner implements it. A database outage is UNAVAILABLE
// with RetryInfo; any other error is INTERNAL.
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
	// Machines verifies machine tokens; nil (no Backend API secret key)
	// refuses them with UNAUTHENTICATED.
	Machines *MachineVerifier
	// Rules are the access rules of the served RPCs.
	Rules Rules
	// Provisioner, if set, is called for every authenticated user.
	Provisioner Provisioner
	// Roles, if set, supplies the org role a session token lacks.
	Roles RoleSource
	// Registerer, if set, receives gatehouse_auth_failures_total{reason}.
	Registerer prometheus.Registerer
}

// Authenticator authenticates and authorizes gRPC calls. It is safe for
// concurrent use.
type Authenticator struct {
	sessions    *SessionVerifier
	machines    *MachineVerifier
	rules       Rules
	provisioner Provisioner
	roles       RoleSource
	failures    *prometheus.CounterVec
}

// New returns an Authenticator for cfg. It fails if cfg has no
// SessionVerifier or the metric cannot be registered.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("auth: no session verifier")
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
		machines:    cfg.Machines,
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
//  2. the token is verified: UNAUTHENTICATED (or UNAVAILABLE when Clerk
//     cannot be reached) if it fails; users are then provisioned;
//  3. a machine on a method without allow_machines: PERMISSION_DENIED;
//     a machine without a well-formed x-gatehouse-tenant: INVALID_ARGUMENT;
//     a tenant its token's "tenants" claim omits: PERMISSION_DENIED;
//  4. a missing permission: PERMISSION_DENIED.
//
// A Gatehouse method without a rule is PERMISSION_DENIED. Errors are *Error.
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

// authenticate returns the principal, or nil for a public method.
func (a *Authenticator) authenticate(ctx context.Context, fullMethod string) (*viewer.Principal, *Error) {
	rule, ok := a.rules.Lookup(fullMethod)
	if !ok {
		return nil, permissionDenied(ReasonNoAccessRule)
	}
	if rule.Public {
		return nil, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	token, err := bearerToken(md.Get(AuthorizationKey))
	if err != nil {
		return nil, err
	}

	var p *viewer.Principal
	if strings.HasPrefix(token, MachineTokenPrefix) {
		if a.machines == nil {
			return nil, unauthenticated(ReasonMachinesDisabled, nil)
		}
		g, err := a.machines.grant(ctx, token)
		if err != nil {
			return nil, errorOf(err)
		}
		if !rule.AllowMachines {
			return nil, permissionDenied(ReasonMachineNotAllowed)
		}
		tenant, terr := tenantHeader(md.Get(TenantKey))
		if terr != nil {
			return nil, terr
		}
		if p, err = g.principal(tenant); err != nil {
			return nil, errorOf(err)
		}
	} else {
		var err error
		if p, err = a.sessions.Verify(ctx, token); err != nil {
			return nil, errorOf(err)
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
	}
	if !p.HasAll(rule.Permissions) {
		return nil, permissionDenied(ReasonMissingPermission)
	}
	return p, nil
}

// bearerToken extracts the token from the values of the authorization
// metadata: exactly one value, "Bearer" in any case, whitespace, the token.
// Errors never quote the values.
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
	switch {
	case token == "":
		return "", unauthenticated(ReasonMissingToken, nil)
	case strings.ContainsFunc(token, isSpaceOrControl):
		return "", unauthenticated(ReasonMalformed, nil)
	}
	return token, nil
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// tenantHeader reads x-gatehouse-tenant: one value, or none.
func tenantHeader(values []string) (string, *Error) {
	switch len(values) {
	case 0:
		return "", nil // principal reports missing_tenant
	case 1:
		return strings.TrimSpace(values[0]), nil
	default:
		return "", invalidArgument(ReasonBadTenant)
	}
}
