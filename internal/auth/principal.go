package auth

import (
	"context"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// machinePrincipal places a machine in the tenant it names. A machine holds
// org:projects:read, nothing more.
func machinePrincipal(g *grant, tenant string) (*viewer.Principal, *Error) {
	switch {
	case tenant == "":
		return nil, invalidArgument(ReasonMissingTenant)
	case g.restricted && !slices.Contains(g.tenants, tenant):
		return nil, permissionDenied(ReasonTenantNotAllowed)
	}
	p := &viewer.Principal{
		Kind:        viewer.KindMachine,
		Credential:  viewer.CredentialM2M,
		Subject:     g.subject,
		SessionID:   g.id,
		TenantID:    tenant,
		Permissions: []string{PermProjectsRead},
		ExpiresAt:   g.expiresAt,
	}
	if viewer.ValidOrgID(tenant) {
		p.OrgID = tenant
	}
	return p, nil
}

// organizationPrincipal is an organization's own API key, acting in that
// organization: a header naming any other tenant is PERMISSION_DENIED. The
// organization holds every Gatehouse permission; the key, those its scopes
// name.
func (a *Authenticator) organizationPrincipal(g *grant, tenant string) (*viewer.Principal, *Error) {
	if tenant != "" && tenant != g.subject {
		return nil, permissionDenied(ReasonTenantNotAllowed)
	}
	return &viewer.Principal{
		Kind:        viewer.KindOrganization,
		Credential:  g.kind,
		Subject:     g.subject,
		SessionID:   g.id,
		TenantID:    g.subject,
		OrgID:       g.subject,
		Permissions: scopedPermissions(g.scopes, gatehousePermissions),
		ExpiresAt:   g.expiresAt,
	}, nil
}

// userPrincipal is a user's API key, or an OAuth token an application holds
// for a user: the user is provisioned as a session's would be, and acts in
// their personal tenant, or in the organization the header names if the
// webhooks have mirrored a live membership of theirs there. The credential
// holds what its scopes name of what the user holds in that tenant.
func (a *Authenticator) userPrincipal(ctx context.Context, g *grant, tenant string) (*viewer.Principal, *Error) {
	p := &viewer.Principal{
		Kind:       viewer.KindUser,
		Credential: g.kind,
		Subject:    g.subject,
		SessionID:  g.id,
		TenantID:   g.subject,
		ExpiresAt:  g.expiresAt,
	}
	if a.provisioner != nil {
		if err := a.provisioner.EnsureUser(ctx, p); err != nil {
			return nil, errorOf(err)
		}
	}
	switch {
	case tenant == "" || tenant == g.subject:
		p.Permissions = scopedPermissions(g.scopes, a.sessions.personal)
	case !viewer.ValidOrgID(tenant):
		return nil, permissionDenied(ReasonTenantNotAllowed) // another user's personal tenant
	default:
		role := ""
		if a.roles != nil {
			var err error
			if role, err = a.roles.MembershipRole(ctx, tenant, g.subject); err != nil {
				return nil, errorOf(err)
			}
		}
		if role == "" {
			return nil, permissionDenied(ReasonNotMember)
		}
		p.TenantID, p.OrgID, p.OrgRole = tenant, tenant, role
		p.Permissions = scopedPermissions(g.scopes, a.sessions.roles[role])
	}
	return p, nil
}
