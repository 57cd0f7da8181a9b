// Package viewer says who is calling: the authenticated Principal carried in a
// request's context, and the tenant it acts in.
//
// The auth interceptor puts a Principal in the context; the store reads it back
// to scope every tenant-owned query and mutation. A context without a Principal
// reaches no tenant data at all. Background work that must see every tenant
// (the webhook appliers, first-sight provisioning) runs under NewSystemContext,
// which is never reachable from a request.
package viewer

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Kind says what sort of caller a Principal is.
type Kind uint8

const (
	// KindUser is a person signed in with a Clerk session token.
	KindUser Kind = iota + 1
	// KindMachine is a service calling with a Clerk machine (M2M) token.
	KindMachine
	// KindSystem is Gatehouse itself (webhooks, provisioning); it is never
	// derived from a token.
	KindSystem
	// KindOrganization is an organization acting as itself, through an API
	// key it owns (not a user's).
	KindOrganization
)

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindMachine:
		return "machine"
	case KindSystem:
		return "system"
	case KindOrganization:
		return "organization"
	}
	return "unknown"
}

// Credential is the kind of Clerk credential a call was made with.
type Credential uint8

const (
	// CredentialSession is a session token (a signed-in user).
	CredentialSession Credential = iota + 1
	// CredentialM2M is a machine token, opaque (mt_…) or a JWT.
	CredentialM2M
	// CredentialAPIKey is an API key (ak_…) of a user or an organization.
	CredentialAPIKey
	// CredentialOAuth is an OAuth access token, opaque (oat_…) or a JWT.
	CredentialOAuth
)

// String returns the name GetMe reports: "session", "m2m", "api_key" or
// "oauth".
func (c Credential) String() string {
	switch c {
	case CredentialSession:
		return "session"
	case CredentialM2M:
		return "m2m"
	case CredentialAPIKey:
		return "api_key"
	case CredentialOAuth:
		return "oauth"
	}
	return ""
}

// Principal is an authenticated caller and the tenant it acts in.
type Principal struct {
	Kind Kind
	// Credential is what the call was made with. A user (KindUser) may call
	// with a session, an API key of theirs, or an OAuth token an
	// application holds for them.
	Credential Credential
	// Subject is the Clerk id of the caller: user_… for users, mch_… for
	// machines, org_… for an organization.
	Subject string
	// SessionID is the credential's id: the Clerk session (sid) of a
	// session token, else the token's or key's id (mt_…, ak_…, oat_…),
	// never the credential itself.
	SessionID string
	// TenantID is the active organization (org_…) when there is one, else
	// the user's own id: every user has a personal tenant. A machine names
	// its tenant; an organization's key acts in that organization.
	TenantID string
	// OrgID and OrgRole describe the active organization; both are empty in a
	// personal tenant. OrgRole is in Clerk's "org:admin" form.
	OrgID   string
	OrgRole string
	// Permissions are the effective permissions in TenantID, sorted and
	// without duplicates.
	Permissions []string
	// ExpiresAt is when the credential stops being valid.
	ExpiresAt time.Time
}

// Has reports whether p holds permission in its tenant.
func (p *Principal) Has(permission string) bool {
	_, ok := slices.BinarySearch(p.Permissions, permission)
	return ok
}

// HasAll reports whether p holds every one of permissions.
func (p *Principal) HasAll(permissions []string) bool {
	for _, perm := range permissions {
		if !p.Has(perm) {
			return false
		}
	}
	return true
}

// Personal reports whether p acts in a user's own personal tenant.
func (p *Principal) Personal() bool {
	return p.Kind == KindUser && p.TenantID == p.Subject
}

// ID returns the principal's subject, for logs and metrics.
func (p *Principal) ID() string {
	if p == nil {
		return ""
	}
	return p.Subject
}

type contextKey struct{}

// NewContext returns a context carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, contextKey{}, p)
}

// FromContext returns the Principal in ctx, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(contextKey{}).(*Principal)
	return p, ok && p != nil
}

var system = &Principal{Kind: KindSystem, Subject: "system"}

// NewSystemContext returns a context in which the store allows access across
// every tenant. Use it only for Gatehouse's own work, never on behalf of a
// caller.
func NewSystemContext(ctx context.Context) context.Context {
	return NewContext(ctx, system)
}

// IsSystem reports whether ctx was made by NewSystemContext.
func IsSystem(ctx context.Context) bool {
	p, ok := FromContext(ctx)
	return ok && p.Kind == KindSystem
}

// ValidUserID reports whether id has the shape of a Clerk user id
// (^user_[A-Za-z0-9]{1,64}$).
func ValidUserID(id string) bool { return validID(id, "user_") }

// ValidOrgID reports whether id has the shape of a Clerk organization id
// (^org_[A-Za-z0-9]{1,64}$).
func ValidOrgID(id string) bool { return validID(id, "org_") }

// ValidMachineID reports whether id has the shape of a Clerk machine id
// (^mch_[A-Za-z0-9]{1,64}$).
func ValidMachineID(id string) bool { return validID(id, "mch_") }

// ValidTenantID reports whether id has the shape of a Clerk organization or
// user id. Ids are checked before they reach SQL.
func ValidTenantID(id string) bool { return ValidOrgID(id) || ValidUserID(id) }

// validID reports whether id is prefix followed by 1 to 64 letters and
// digits.
func validID(id, prefix string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || rest == "" || len(rest) > 64 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
