package auth

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Organizations and memberships of the credential tests.
const (
	orgAcme  = "org_acme"
	orgOther = "org_other"
)

var memberships = fakeRoles{orgAcme + "/" + testUser: "org:member"}

// principalView is the part of a principal the credential tests compare.
type principalView struct {
	Kind        string
	Credential  string
	Subject     string
	Tenant, Org string
	Role        string
	Permissions []string
}

func viewOf(p *viewer.Principal) principalView {
	return principalView{Kind: p.Kind.String(), Credential: p.Credential.String(), Subject: p.Subject,
		Tenant: p.TenantID, Org: p.OrgID, Role: p.OrgRole, Permissions: p.Permissions}
}

// rpc is one Gatehouse call with whatever request it needs.
type rpc func(s *testServer, ctx context.Context) error

var (
	getMe = func(s *testServer, ctx context.Context) error {
		_, err := s.users.GetMe(ctx, &gatehousev1.GetMeRequest{})
		return err
	}
	listProjects = func(s *testServer, ctx context.Context) error {
		_, err := s.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
		return err
	}
	createProject = func(s *testServer, ctx context.Context) error {
		_, err := s.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "x"})
		return err
	}
	deleteProject = func(s *testServer, ctx context.Context) error {
		_, err := s.projects.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: "prj_1"})
		return err
	}
)

// credentialCase is a call with a credential, and what it must come to.
type credentialCase struct {
	name   string
	token  string
	tenant string // x-gatehouse-tenant, if any
	call   rpc
	code   codes.Code
	reason string        // when code is not OK
	want   principalView // when code is OK
}

func runCredentialCases(t *testing.T, s *testServer, tests []credentialCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := bearer(tt.token)
			if tt.tenant != "" {
				kv = append(kv, TenantKey, tt.tenant)
			}
			s.svc.last.Store(nil)
			err := tt.call(s, outgoing(t, kv...))
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if diff := cmp.Diff(tt.want, viewOf(s.svc.last.Load())); diff != "" {
					t.Errorf("principal (-want +got):\n%s", diff)
				}
				return
			}
			st, _ := status.FromError(err)
			if st.Code() != tt.code || !strings.HasSuffix(st.Message(), ": "+tt.reason) {
				t.Errorf("status = %v %q, want %v …%s", st.Code(), st.Message(), tt.code, tt.reason)
			}
			if strings.Contains(st.Message(), tt.token) {
				t.Errorf("status message contains the token")
			}
			if s.svc.last.Load() != nil {
				t.Errorf("the handler ran")
			}
		})
	}
}

// TestAPIKeys covers DESIGN's api_key row: a user's key acts as the user,
// in their personal tenant or an organization they are a mirrored member
// of; an organization's key acts as the organization, in it only; scopes
// name permissions, capped by the subject's own; none named is read only.
func TestAPIKeys(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{roles: memberships})
	key := func(k clerkemu.APIKey) string { return e.mintAPIKey(t, k) }
	all := []string{PermProjectsCreate, PermProjectsDelete, PermProjectsRead, PermProjectsUpdate}

	unscoped := key(clerkemu.APIKey{Subject: testUser})
	scoped := key(clerkemu.APIKey{Subject: testUser, Scopes: []string{"org:projects:read", "org:projects:create", "org:billing:read", "email"}})
	deleter := key(clerkemu.APIKey{Subject: testUser, Scopes: []string{"org:projects:delete"}})
	orgKey := key(clerkemu.APIKey{Subject: orgAcme, Scopes: all})
	orgUnscoped := key(clerkemu.APIKey{Subject: orgAcme})
	revoked := key(clerkemu.APIKey{Subject: testUser})
	e.emu.RevokeAPIKey(revoked)
	expired := key(clerkemu.APIKey{Subject: testUser, TTL: -time.Minute})

	user := func(tenant, org, role string, perms ...string) principalView {
		return principalView{Kind: "user", Credential: "api_key", Subject: testUser, Tenant: tenant, Org: org, Role: role, Permissions: perms}
	}
	org := func(perms ...string) principalView {
		return principalView{Kind: "organization", Credential: "api_key", Subject: orgAcme, Tenant: orgAcme, Org: orgAcme, Permissions: perms}
	}
	runCredentialCases(t, s, []credentialCase{
		{name: "user's key, unscoped: read only", token: unscoped, call: listProjects, want: user(testUser, "", "", PermProjectsRead)},
		{name: "user's key, unscoped, cannot create", token: unscoped, call: createProject, code: codes.PermissionDenied, reason: ReasonMissingPermission},
		{name: "user's key, GetMe", token: unscoped, call: getMe, want: user(testUser, "", "", PermProjectsRead)},
		{name: "user's key, scoped: other scopes ignored", token: scoped, call: createProject,
			want: user(testUser, "", "", PermProjectsCreate, PermProjectsRead)},
		{name: "user's key, naming their own tenant", token: scoped, tenant: testUser, call: listProjects,
			want: user(testUser, "", "", PermProjectsCreate, PermProjectsRead)},
		{name: "user's key in an organization they are a member of", token: scoped, tenant: orgAcme, call: createProject,
			want: user(orgAcme, orgAcme, "org:member", PermProjectsCreate, PermProjectsRead)},
		{name: "user's key in an organization: capped by the member's role", token: deleter, tenant: orgAcme, call: deleteProject,
			code: codes.PermissionDenied, reason: ReasonMissingPermission},
		{name: "user's key in a personal tenant: not capped", token: deleter, call: deleteProject,
			want: user(testUser, "", "", PermProjectsDelete)},
		{name: "user's key in an organization without a mirrored membership", token: scoped, tenant: orgOther, call: listProjects,
			code: codes.PermissionDenied, reason: ReasonNotMember},
		{name: "user's key in another user's tenant", token: scoped, tenant: "user_someoneelse", call: listProjects,
			code: codes.PermissionDenied, reason: ReasonTenantNotAllowed},
		{name: "user's key, malformed tenant", token: scoped, tenant: "org_acme'--", call: listProjects,
			code: codes.InvalidArgument, reason: ReasonBadTenant},

		{name: "organization's key", token: orgKey, call: deleteProject, want: org(all...)},
		{name: "organization's key naming its organization", token: orgKey, tenant: orgAcme, call: createProject, want: org(all...)},
		{name: "organization's key naming another tenant", token: orgKey, tenant: orgOther, call: listProjects,
			code: codes.PermissionDenied, reason: ReasonTenantNotAllowed},
		{name: "organization's key naming a user", token: orgKey, tenant: testUser, call: listProjects,
			code: codes.PermissionDenied, reason: ReasonTenantNotAllowed},
		{name: "organization's key, unscoped: read only", token: orgUnscoped, call: listProjects, want: org(PermProjectsRead)},
		{name: "organization's key, unscoped, cannot create", token: orgUnscoped, call: createProject,
			code: codes.PermissionDenied, reason: ReasonMissingPermission},
		{name: "organization's key on GetMe", token: orgKey, call: getMe, code: codes.PermissionDenied, reason: ReasonUserRequired},

		{name: "revoked (200 with the flag)", token: revoked, call: listProjects, code: codes.Unauthenticated, reason: ReasonRevoked},
		{name: "expired (200 with the flag)", token: expired, call: listProjects, code: codes.Unauthenticated, reason: ReasonExpired},
		{name: "unknown (404)", token: "ak_" + strings.Repeat("Zz09", 8), call: listProjects, code: codes.Unauthenticated, reason: ReasonRejected},
		{name: "malformed", token: "ak_short", call: listProjects, code: codes.Unauthenticated, reason: ReasonMalformed},
	})

	t.Run("revoked and expired answered 4xx", func(t *testing.T) {
		e.emu.SetRejectStatus(http.StatusBadRequest)
		defer e.emu.SetRejectStatus(0)
		runCredentialCases(t, s, []credentialCase{
			{name: "a live key, with 4xx refusals on", token: key(clerkemu.APIKey{Subject: testUser}), call: listProjects, code: codes.OK, want: user(testUser, "", "", PermProjectsRead)},
		})
		late := key(clerkemu.APIKey{Subject: testUser})
		e.emu.RevokeAPIKey(late)
		runCredentialCases(t, s, []credentialCase{
			{name: "revoked, 4xx", token: late, call: listProjects, code: codes.Unauthenticated, reason: ReasonRejected},
			{name: "expired, 4xx", token: key(clerkemu.APIKey{Subject: testUser, TTL: -time.Second}), call: listProjects,
				code: codes.Unauthenticated, reason: ReasonRejected},
		})
	})
	if diff := cmp.Diff([]string{testUser}, uniq(s.prov.Calls())); diff != "" {
		t.Errorf("users provisioned (-want +got):\n%s", diff)
	}
}

// TestOAuthTokens covers DESIGN's oauth row, opaque and JWT: the token acts
// for its subject user, as a user's API key does.
func TestOAuthTokens(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{roles: memberships})
	oauth := func(o clerkemu.OAuthToken) string { return e.mintOAuth(t, o) }
	readCreate := []string{"org:projects:read", "org:projects:create", "profile"}

	opaque := oauth(clerkemu.OAuthToken{UserID: testUser, Scopes: readCreate})
	opaqueUnscoped := oauth(clerkemu.OAuthToken{UserID: testUser, Scopes: []string{"email"}})
	jwt := oauth(clerkemu.OAuthToken{UserID: testUser, Scopes: readCreate, JWT: true})
	jwtApplicationTyp := oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{Type: "application/at+jwt"}})
	revoked := oauth(clerkemu.OAuthToken{UserID: testUser})
	e.emu.RevokeOAuthToken(revoked)

	user := func(cred, tenant, org, role string, perms ...string) principalView {
		return principalView{Kind: "user", Credential: cred, Subject: testUser, Tenant: tenant, Org: org, Role: role, Permissions: perms}
	}
	runCredentialCases(t, s, []credentialCase{
		{name: "opaque, GetMe", token: opaque, call: getMe, want: user("oauth", testUser, "", "", PermProjectsCreate, PermProjectsRead)},
		{name: "opaque, in an organization", token: opaque, tenant: orgAcme, call: createProject,
			want: user("oauth", orgAcme, orgAcme, "org:member", PermProjectsCreate, PermProjectsRead)},
		{name: "opaque, not a member", token: opaque, tenant: orgOther, call: listProjects, code: codes.PermissionDenied, reason: ReasonNotMember},
		{name: "opaque, no Gatehouse scope: read only", token: opaqueUnscoped, call: listProjects, want: user("oauth", testUser, "", "", PermProjectsRead)},
		{name: "opaque, revoked", token: revoked, call: listProjects, code: codes.Unauthenticated, reason: ReasonRevoked},
		{name: "opaque, unknown", token: "oat_" + strings.Repeat("a", 40), call: listProjects, code: codes.Unauthenticated, reason: ReasonRejected},
		{name: "JWT, GetMe", token: jwt, call: getMe, want: user("oauth", testUser, "", "", PermProjectsCreate, PermProjectsRead)},
		{name: "JWT, in an organization", token: jwt, tenant: orgAcme, call: createProject,
			want: user("oauth", orgAcme, orgAcme, "org:member", PermProjectsCreate, PermProjectsRead)},
		{name: "JWT, typ application/at+jwt", token: jwtApplicationTyp, call: listProjects, want: user("oauth", testUser, "", "", PermProjectsRead)},
		{name: "JWT, expired", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, TTL: -time.Minute}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonExpired},
		{name: "JWT, no exp", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{OmitExp: true}}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonNoExpiry},
		{name: "JWT, forged", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{SigningKey: otherKey()}}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonBadSignature},
		{name: "JWT, wrong issuer", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{Issuer: "https://clerk.evil.test"}}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonWrongIssuer},
		{name: "JWT, a session's category", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{Category: clerkemu.CategorySession}}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonWrongCategory},
		{name: "JWT, subject not a user", token: oauth(clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{Extra: map[string]any{"sub": "org_acme"}}}), call: listProjects,
			code: codes.Unauthenticated, reason: ReasonBadSubject},
	})
}

// TestOAuthAudience: with GATEHOUSE_OAUTH_AUDIENCE set, an OAuth JWT must
// name one of its audiences; so must an opaque token whose verification
// reports an aud. Without it, aud is not checked.
func TestOAuthAudience(t *testing.T) {
	const api = "https://api.gatehouse.test"
	tests := []struct {
		name      string
		audiences []string
		token     clerkemu.OAuthToken
		code      codes.Code
	}{
		{"JWT naming the audience", []string{"https://other", api}, clerkemu.OAuthToken{JWT: true, Audience: []string{api}}, codes.OK},
		{"JWT naming it among others", []string{api}, clerkemu.OAuthToken{JWT: true, Audience: []string{"https://x", api}}, codes.OK},
		{"JWT naming another", []string{api}, clerkemu.OAuthToken{JWT: true, Audience: []string{"https://evil"}}, codes.Unauthenticated},
		{"JWT naming none", []string{api}, clerkemu.OAuthToken{JWT: true}, codes.Unauthenticated},
		{"JWT, no audience configured", nil, clerkemu.OAuthToken{JWT: true, Audience: []string{"https://anything"}}, codes.OK},
		{"opaque naming the audience", []string{api}, clerkemu.OAuthToken{Audience: []string{api}}, codes.OK},
		{"opaque naming another", []string{api}, clerkemu.OAuthToken{Audience: []string{"https://evil"}}, codes.Unauthenticated},
		{"opaque without aud", []string{api}, clerkemu.OAuthToken{}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{audiences: tt.audiences})
			s := startServer(t, e, serverOptions{})
			tt.token.UserID = testUser
			token := e.mintOAuth(t, tt.token)
			err := listProjects(s, outgoing(t, bearer(token)...))
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantStatus(t, err, tt.code, "invalid token: "+ReasonWrongAudience, token)
		})
	}
}

// TestJWTRouting: a JWT goes to the one verifier its header and claims
// name, and a session is never accepted as a machine or OAuth token, nor
// the reverse — whether the method takes the other kind or not, and whether
// the token was seen before or not.
func TestJWTRouting(t *testing.T) {
	e := newEnv(t, envOptions{})
	rules, err := LoadRules(testService(t, map[string]*gatehousev1.AccessRule{
		"Open":        {Public: true},
		"Guarded":     {}, // sessions only
		"Machines":    {Credentials: []gatehousev1.CredentialKind{gatehousev1.CredentialKind_CREDENTIAL_KIND_M2M, gatehousev1.CredentialKind_CREDENTIAL_KIND_OAUTH}},
		"Unspecified": {},
		"Forgotten":   {},
		"PublicKinds": {},
		"Contradiction": {Credentials: []gatehousev1.CredentialKind{gatehousev1.CredentialKind_CREDENTIAL_KIND_SESSION,
			gatehousev1.CredentialKind_CREDENTIAL_KIND_M2M, gatehousev1.CredentialKind_CREDENTIAL_KIND_OAUTH}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, e, serverOptions{rules: &rules, roles: memberships})
	const (
		sessionsOnly = "/acme.v1.Acme/Guarded"
		machinesOnly = "/acme.v1.Acme/Machines"
		anyKind      = "/acme.v1.Acme/Contradiction"
	)
	session := e.mint(t, clerkemu.Session{UserID: testUser})
	m2m := e.mintMachine(t, clerkemu.Machine{JWT: true})
	oauth := e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser, JWT: true})
	// Tokens carrying one kind's marks and another's routing.
	sessionMachineCat := e.mint(t, clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryMachine})
	sessionMachineSub := e.mint(t, clerkemu.Session{UserID: "mch_posing"})
	m2mSessionCat := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{Category: clerkemu.CategorySession}})
	m2mNoCat := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{Category: "-"}})
	oauthAsSession := e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser, JWT: true, Forge: clerkemu.Forge{
		Category: clerkemu.CategorySession, Extra: map[string]any{"sid": "sess_1", "azp": "http://localhost:3000"}}})

	tests := []struct {
		name   string
		token  string
		method string
		code   codes.Code
		reason string
		kind   viewer.Credential // when OK
	}{
		{"session where sessions are taken", session, sessionsOnly, codes.OK, "", viewer.CredentialSession},
		{"session where only machines and OAuth are", session, machinesOnly, codes.PermissionDenied, ReasonCredentialNotAllowed, 0},
		{"M2M JWT where only sessions are", m2m, sessionsOnly, codes.PermissionDenied, ReasonCredentialNotAllowed, 0},
		{"M2M JWT where machines are", m2m, machinesOnly, codes.OK, "", viewer.CredentialM2M},
		{"M2M JWT without cat where machines are", m2mNoCat, anyKind, codes.OK, "", viewer.CredentialM2M},
		{"OAuth JWT where only sessions are", oauth, sessionsOnly, codes.PermissionDenied, ReasonCredentialNotAllowed, 0},
		{"OAuth JWT where OAuth is", oauth, machinesOnly, codes.OK, "", viewer.CredentialOAuth},
		{"session with a machine's cat", sessionMachineCat, anyKind, codes.Unauthenticated, ReasonNotSessionToken, 0},
		{"session with a machine's sub", sessionMachineSub, anyKind, codes.Unauthenticated, ReasonWrongCategory, 0},
		{"M2M JWT with a session's cat", m2mSessionCat, anyKind, codes.Unauthenticated, ReasonWrongCategory, 0},
		{"OAuth typ on a session's claims and cat", oauthAsSession, anyKind, codes.Unauthenticated, ReasonWrongCategory, 0},
		{"OAuth typ on a session's claims, where only sessions are", oauthAsSession, sessionsOnly, codes.PermissionDenied, ReasonCredentialNotAllowed, 0},
	}
	// Twice: the second round finds the good tokens in the caches.
	for _, round := range []string{"first sight", "seen before"} {
		for _, tt := range tests {
			t.Run(round+"/"+tt.name, func(t *testing.T) {
				ctx, err := s.auth.Authenticate(incoming("10.0.0.1", AuthorizationKey, "Bearer "+tt.token, TenantKey, orgAcme), tt.method)
				if tt.code != codes.OK {
					wantAuthError(t, err, tt.code, tt.reason, tt.token)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if p, _ := viewer.FromContext(ctx); p.Credential != tt.kind {
					t.Errorf("credential = %v, want %v", p.Credential, tt.kind)
				}
			})
		}
	}

	// The verifiers themselves refuse the other kinds, whoever calls them.
	t.Run("verifiers", func(t *testing.T) {
		ctx := context.Background()
		for _, tok := range []string{m2m, m2mNoCat, oauth, oauthAsSession} {
			if _, err := e.sessions.Verify(ctx, tok); err == nil {
				t.Errorf("SessionVerifier accepted a machine or OAuth JWT")
			}
		}
		if _, err := e.jwts.verify(ctx, viewer.CredentialM2M, session); errorOf(err).Reason != ReasonWrongCategory {
			t.Errorf("M2M verification of a session: %v, want %s", err, ReasonWrongCategory)
		}
		if _, err := e.jwts.verify(ctx, viewer.CredentialOAuth, session); errorOf(err).Reason != ReasonMalformed {
			t.Errorf("OAuth verification of a session: %v, want %s", err, ReasonMalformed)
		}
		if _, err := e.jwts.verify(ctx, viewer.CredentialM2M, oauth); err == nil {
			t.Errorf("M2M verification accepted an OAuth token")
		}
	})
}

func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

// retryDelay is the google.rpc.RetryInfo delay of err's status; 0 if none.
func retryDelay(err error) time.Duration {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
