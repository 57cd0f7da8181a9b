package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// wantStatus checks a call's error: its code, its message, and that the
// message does not contain the token.
func wantStatus(t *testing.T, err error, code codes.Code, msg, token string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || (msg != "" && st.Message() != msg) {
		t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
	if token != "" && strings.Contains(st.Message(), token) {
		t.Errorf("status message contains the token")
	}
}

func TestInterceptorRejectsBadTokens(t *testing.T) {
	e := newEnv(t, envOptions{session: SessionConfig{AuthorizedParties: []string{"http://localhost:3000"}}})
	s := startServer(t, e, serverOptions{})
	now := e.clock.Now()
	tests := []struct {
		name   string
		md     func(t *testing.T) (token string, kv []string)
		reason string
	}{
		{"no metadata", func(*testing.T) (string, []string) { return "", nil }, ReasonMissingToken},
		{"empty bearer", func(*testing.T) (string, []string) { return "", []string{AuthorizationKey, "Bearer "} }, ReasonMissingToken},
		{"bare scheme", func(*testing.T) (string, []string) { return "", []string{AuthorizationKey, "Bearer"} }, ReasonMissingToken},
		{"other scheme", func(t *testing.T) (string, []string) {
			tok := e.mint(t, clerkemu.Session{UserID: testUser})
			return tok, []string{AuthorizationKey, "Basic " + tok}
		}, ReasonMalformed},
		{"two authorization values", func(t *testing.T) (string, []string) {
			tok := e.mint(t, clerkemu.Session{UserID: testUser})
			return tok, []string{AuthorizationKey, "Bearer " + tok, AuthorizationKey, "Bearer " + tok}
		}, ReasonMalformed},
		{"garbage", tokenMD("garbage-token-text"), ReasonMalformed},
		{"a good token with a space inside", func(t *testing.T) (string, []string) {
			tok := e.mint(t, clerkemu.Session{UserID: testUser})
			return tok, bearer(tok[:20] + " " + tok[20:])
		}, ReasonMalformed},
		{"a good token and more", func(t *testing.T) (string, []string) {
			tok := e.mint(t, clerkemu.Session{UserID: testUser})
			return tok, bearer(tok + " more")
		}, ReasonMalformed},
		{"an opaque token with a space inside", tokenMD("ak_0123456789abcdef 0123456789abcdef0123"), ReasonMalformed},
		{"expired", mintMD(e, clerkemu.Session{UserID: testUser, IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour}), ReasonExpired},
		{"not yet valid", mintMD(e, clerkemu.Session{UserID: testUser, IssuedAt: now, NotBefore: now.Add(time.Hour)}), ReasonNotYetValid},
		{"wrong issuer", mintMD(e, clerkemu.Session{UserID: testUser, Issuer: "https://clerk.other.test"}), ReasonWrongIssuer},
		{"wrong azp", mintMD(e, clerkemu.Session{UserID: testUser, AuthorizedParty: "https://evil.test"}), ReasonWrongAZP},
		{"no sid", mintMD(e, clerkemu.Session{UserID: testUser, OmitSID: true}), ReasonNoSession},
		{"pending", mintMD(e, clerkemu.Session{UserID: testUser, Status: "pending"}), ReasonPendingSession},
		{"JWT template", mintMD(e, clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryTemplate}), ReasonNotSessionToken},
		{"machine category", mintMD(e, clerkemu.Session{UserID: testUser, Category: clerkemu.CategoryMachine}), ReasonNotSessionToken},
		{"no exp", mintMD(e, clerkemu.Session{UserID: testUser, OmitExp: true}), ReasonNoExpiry},
		{"wrong key", mintMD(e, clerkemu.Session{UserID: testUser, SigningKey: otherKey()}), ReasonBadSignature},
		{"alg none", func(*testing.T) (string, []string) { tok := unsigned(e, "c2ln"); return tok, bearer(tok) }, ReasonBadAlgorithm},
		{"HS256 with public key", func(t *testing.T) (string, []string) { tok := hs256WithPublicKey(t, e); return tok, bearer(tok) }, ReasonBadAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, kv := tt.md(t)
			before := failures(t, s, tt.reason)
			_, err := s.users.GetMe(outgoing(t, kv...), &gatehousev1.GetMeRequest{})
			wantStatus(t, err, codes.Unauthenticated, "invalid token: "+tt.reason, token)
			if got := failures(t, s, tt.reason) - before; got != 1 {
				t.Errorf("gatehouse_auth_failures_total{reason=%q} grew by %v, want 1", tt.reason, got)
			}
		})
	}
	if got := s.prov.Calls(); len(got) != 0 {
		t.Errorf("provisioner called for rejected tokens: %v", got)
	}
}

// failures reads gatehouse_auth_failures_total{reason} from the registry the
// Authenticator registered with.
func failures(t *testing.T, s *testServer, reason string) float64 {
	t.Helper()
	families, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "gatehouse_auth_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func tokenMD(tok string) func(*testing.T) (string, []string) {
	return func(*testing.T) (string, []string) { return tok, bearer(tok) }
}

func mintMD(e *env, s clerkemu.Session) func(*testing.T) (string, []string) {
	return func(t *testing.T) (string, []string) {
		t.Helper()
		tok := e.mint(t, s)
		return tok, bearer(tok)
	}
}

func TestInterceptorSessions(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{})
	member := e.mint(t, clerkemu.Session{UserID: testUser, OrgID: "org_acme", OrgRole: "org:member"})
	admin := e.mint(t, clerkemu.Session{UserID: testUser, OrgID: "org_acme", OrgRole: "org:admin"})
	personal := e.mint(t, clerkemu.Session{UserID: testUser})

	t.Run("health is public", func(t *testing.T) {
		if _, err := s.health.Check(outgoing(t), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Health.Check without a token: %v", err)
		}
		if _, err := s.health.Check(outgoing(t, bearer("garbage")...), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Health.Check with a bad token: %v", err)
		}
	})
	t.Run("health watch (streaming) is public", func(t *testing.T) {
		stream, err := s.health.Watch(outgoing(t), &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Errorf("Health.Watch without a token: %v", err)
		}
	})
	t.Run("GetMe returns the session", func(t *testing.T) {
		resp, err := s.users.GetMe(outgoing(t, bearer(member)...), &gatehousev1.GetMeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := &gatehousev1.Session{
			TenantId: "org_acme", OrganizationId: "org_acme", OrganizationRole: "org:member",
			Permissions: []string{PermProjectsCreate, PermProjectsRead}, Credential: "session",
		}
		if diff := cmp.Diff(want.String(), resp.GetSession().String()); diff != "" {
			t.Errorf("session (-want +got):\n%s", diff)
		}
	})
	t.Run("scheme in any case", func(t *testing.T) {
		for _, scheme := range []string{"bearer", "BEARER", "bEaReR"} {
			if _, err := s.users.GetMe(outgoing(t, AuthorizationKey, scheme+"  "+personal), &gatehousev1.GetMeRequest{}); err != nil {
				t.Errorf("scheme %q: %v", scheme, err)
			}
		}
	})
	t.Run("the provisioner sees users", func(t *testing.T) {
		before := len(s.prov.Calls())
		if _, err := s.users.GetMe(outgoing(t, bearer(personal)...), &gatehousev1.GetMeRequest{}); err != nil {
			t.Fatal(err)
		}
		calls := s.prov.Calls()
		if diff := cmp.Diff([]string{testUser}, calls[before:]); diff != "" {
			t.Errorf("provisioner calls (-want +got):\n%s", diff)
		}
	})
	t.Run("provisioner errors reach the caller", func(t *testing.T) {
		s.prov.mu.Lock()
		s.prov.err = provision.ErrDeletedUser
		s.prov.mu.Unlock()
		defer func() { s.prov.mu.Lock(); s.prov.err = nil; s.prov.mu.Unlock() }()
		_, err := s.users.GetMe(outgoing(t, bearer(personal)...), &gatehousev1.GetMeRequest{})
		wantStatus(t, err, codes.Unauthenticated, "invalid token: deleted_user", personal)

		s.prov.mu.Lock()
		s.prov.err = errors.New("connection refused: secret detail")
		s.prov.mu.Unlock()
		_, err = s.users.GetMe(outgoing(t, bearer(personal)...), &gatehousev1.GetMeRequest{})
		wantStatus(t, err, codes.Internal, "authentication failed: internal", personal)
	})

	tests := []struct {
		name  string
		token string
		call  func(ctx context.Context) error
		want  codes.Code
	}{
		{"member creates", member, func(ctx context.Context) error {
			_, err := s.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "x"})
			return err
		}, codes.OK},
		{"member cannot delete", member, func(ctx context.Context) error {
			_, err := s.projects.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: "prj_1"})
			return err
		}, codes.PermissionDenied},
		{"admin deletes", admin, func(ctx context.Context) error {
			_, err := s.projects.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: "prj_1"})
			return err
		}, codes.OK},
		{"personal tenant deletes", personal, func(ctx context.Context) error {
			_, err := s.projects.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: "prj_1"})
			return err
		}, codes.OK},
		{"unimplemented handler still needs a token", "", func(ctx context.Context) error {
			_, err := s.projects.UpdateProject(ctx, &gatehousev1.UpdateProjectRequest{})
			return err
		}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			if tt.token != "" {
				kv = bearer(tt.token)
			}
			err := tt.call(outgoing(t, kv...))
			if got := status.Code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestInterceptorMachines(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{})
	ctx := func(t *testing.T, token, tenant string) context.Context {
		t.Helper()
		kv := bearer(token)
		if tenant != "" {
			kv = append(kv, TenantKey, tenant)
		}
		return outgoing(t, kv...)
	}
	listProjects := func(ctx context.Context) error {
		_, err := s.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
		return err
	}

	open := e.mintMachine(t, clerkemu.Machine{ID: "mch_open", TTL: time.Hour})
	scoped := e.mintMachine(t, clerkemu.Machine{ID: "mch_scoped", TTL: time.Hour, Claims: map[string]any{"tenants": []string{"org_acme"}}})
	revoked := e.mintMachine(t, clerkemu.Machine{ID: "mch_revoked", TTL: time.Hour})
	e.emu.RevokeMachineToken(revoked)
	expired := e.mintMachine(t, clerkemu.Machine{ID: "mch_expired", TTL: -time.Minute})
	openJWT := e.mintMachine(t, clerkemu.Machine{ID: "mch_open", JWT: true})
	scopedJWT := e.mintMachine(t, clerkemu.Machine{ID: "mch_scoped", JWT: true, Claims: map[string]any{"tenants": []string{"org_acme"}}})
	expiredJWT := e.mintMachine(t, clerkemu.Machine{ID: "mch_old", JWT: true, TTL: -time.Minute})
	noExpJWT := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{OmitExp: true}})
	sessionCatJWT := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{Category: clerkemu.CategorySession}})
	otherIssuerJWT := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{Issuer: "https://clerk.other.test"}})
	forgedJWT := e.mintMachine(t, clerkemu.Machine{JWT: true, Forge: clerkemu.Forge{SigningKey: otherKey()}})

	tests := []struct {
		name   string
		token  string
		tenant string
		call   func(ctx context.Context) error
		code   codes.Code
		reason string
	}{
		{"read in a named tenant", open, "org_acme", listProjects, codes.OK, ""},
		{"read in a personal tenant", open, "user_abc", listProjects, codes.OK, ""},
		{"write method", open, "org_acme", func(ctx context.Context) error {
			_, err := s.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "x"})
			return err
		}, codes.PermissionDenied, ReasonCredentialNotAllowed},
		{"user-only method", open, "org_acme", func(ctx context.Context) error {
			_, err := s.users.GetMe(ctx, &gatehousev1.GetMeRequest{})
			return err
		}, codes.PermissionDenied, ReasonCredentialNotAllowed},
		{"missing tenant", open, "", listProjects, codes.InvalidArgument, ReasonMissingTenant},
		{"malformed tenant", open, "org_acme' OR 1=1", listProjects, codes.InvalidArgument, ReasonBadTenant},
		{"tenant in the claim", scoped, "org_acme", listProjects, codes.OK, ""},
		{"tenant not in the claim", scoped, "org_other", listProjects, codes.PermissionDenied, ReasonTenantNotAllowed},
		{"revoked", revoked, "org_acme", listProjects, codes.Unauthenticated, ReasonRevoked},
		{"expired", expired, "org_acme", listProjects, codes.Unauthenticated, ReasonExpired},
		{"unknown", "mt_0123456789abcdef0123456789abcdef", "org_acme", listProjects, codes.Unauthenticated, ReasonRejected},
		{"too short", "mt_0123456789", "org_acme", listProjects, codes.Unauthenticated, ReasonMalformed},
		{"not base64-like", "mt_0123456789abcdef0123456789abcde!", "org_acme", listProjects, codes.Unauthenticated, ReasonMalformed},
		{"JWT: read in a named tenant", openJWT, "org_acme", listProjects, codes.OK, ""},
		{"JWT: tenant in the claim", scopedJWT, "org_acme", listProjects, codes.OK, ""},
		{"JWT: tenant not in the claim", scopedJWT, "org_other", listProjects, codes.PermissionDenied, ReasonTenantNotAllowed},
		{"JWT: missing tenant", openJWT, "", listProjects, codes.InvalidArgument, ReasonMissingTenant},
		{"JWT: write method", openJWT, "org_acme", func(ctx context.Context) error {
			_, err := s.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "x"})
			return err
		}, codes.PermissionDenied, ReasonCredentialNotAllowed},
		{"JWT: user-only method", openJWT, "org_acme", func(ctx context.Context) error {
			_, err := s.users.GetMe(ctx, &gatehousev1.GetMeRequest{})
			return err
		}, codes.PermissionDenied, ReasonCredentialNotAllowed},
		{"JWT: expired", expiredJWT, "org_acme", listProjects, codes.Unauthenticated, ReasonExpired},
		{"JWT: no exp", noExpJWT, "org_acme", listProjects, codes.Unauthenticated, ReasonNoExpiry},
		{"JWT: session category", sessionCatJWT, "org_acme", listProjects, codes.Unauthenticated, ReasonWrongCategory},
		{"JWT: wrong issuer", otherIssuerJWT, "org_acme", listProjects, codes.Unauthenticated, ReasonWrongIssuer},
		{"JWT: forged signature", forgedJWT, "org_acme", listProjects, codes.Unauthenticated, ReasonBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx(t, tt.token, tt.tenant))
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				p := s.svc.last.Load()
				if p.Kind != viewer.KindMachine || p.Credential != viewer.CredentialM2M || p.TenantID != tt.tenant ||
					!p.HasAll([]string{PermProjectsRead}) || len(p.Permissions) != 1 {
					t.Errorf("principal = %+v, want a machine in %s holding only %s", p, tt.tenant, PermProjectsRead)
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
		})
	}
	if got := s.prov.Calls(); len(got) != 0 {
		t.Errorf("provisioner called for machines: %v", got)
	}

	t.Run("verification is cached, never past the TTL", func(t *testing.T) {
		token := e.mintMachine(t, clerkemu.Machine{TTL: time.Hour})
		before := e.emu.MachineVerifies()
		for range 100 {
			if err := listProjects(ctx(t, token, "org_acme")); err != nil {
				t.Fatal(err)
			}
		}
		if got := e.emu.MachineVerifies() - before; got != 1 {
			t.Errorf("100 calls made %d verify requests, want 1", got)
		}
		e.emu.RevokeMachineToken(token)
		e.clock.Advance(31 * time.Second)
		err := listProjects(ctx(t, token, "org_acme"))
		wantStatus(t, err, codes.Unauthenticated, "invalid token: revoked", token)
	})
	t.Run("verification is not cached past the token's expiry", func(t *testing.T) {
		token := e.mintMachine(t, clerkemu.Machine{TTL: 10 * time.Second})
		if err := listProjects(ctx(t, token, "org_acme")); err != nil {
			t.Fatal(err)
		}
		before := e.emu.MachineVerifies()
		e.clock.Advance(10 * time.Second) // within the 30 s TTL, at the token's exp
		listProjects(ctx(t, token, "org_acme"))
		if got := e.emu.MachineVerifies() - before; got != 1 {
			t.Errorf("verify requests at the token's expiry = %d, want 1 (no cached answer)", got)
		}
	})
	t.Run("a cached token does not carry its tenant to another call", func(t *testing.T) {
		token := e.mintMachine(t, clerkemu.Machine{TTL: time.Hour, Claims: map[string]any{"tenants": []string{"org_a"}}})
		if err := listProjects(ctx(t, token, "org_a")); err != nil {
			t.Fatal(err)
		}
		err := listProjects(ctx(t, token, "org_b"))
		wantStatus(t, err, codes.PermissionDenied, "permission denied: tenant_not_allowed", token)
		if err := listProjects(ctx(t, token, "org_a")); err != nil {
			t.Errorf("back in org_a: %v", err)
		}
	})
	t.Run("Clerk unavailable", func(t *testing.T) {
		token := e.mintMachine(t, clerkemu.Machine{TTL: time.Hour})
		dead := newEnv(t, envOptions{}) // a verifier whose Clerk has gone away
		dead.srv.Close()
		md := metadata.Pairs(AuthorizationKey, "Bearer "+token, TenantKey, "org_acme")
		_, err := startServer(t, dead, serverOptions{}).auth.Authenticate(metadata.NewIncomingContext(context.Background(), md), "/gatehouse.v1.ProjectService/ListProjects")
		wantAuthError(t, err, codes.Unavailable, ReasonClerkUnavailable, token)
	})
}

// TestInterceptorWithoutBackendAPI: with only CLERK_JWT_KEY, opaque
// credentials are refused without a request; JWT forms still verify.
func TestInterceptorWithoutBackendAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{noBackend: true})
	for _, token := range []string{
		e.mintMachine(t, clerkemu.Machine{TTL: time.Hour}),
		e.mintAPIKey(t, clerkemu.APIKey{Subject: testUser}),
		e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser}),
	} {
		_, err := s.projects.ListProjects(outgoing(t, append(bearer(token), TenantKey, "org_acme")...), &gatehousev1.ListProjectsRequest{})
		wantStatus(t, err, codes.Unauthenticated, "invalid token: opaque_tokens_disabled", token)
	}
	if got := e.emu.Verifies(); got != 0 {
		t.Errorf("verify requests = %d, want 0", got)
	}
	for _, kv := range [][]string{
		append(bearer(e.mintMachine(t, clerkemu.Machine{JWT: true})), TenantKey, "org_acme"),
		bearer(e.mintOAuth(t, clerkemu.OAuthToken{UserID: testUser, Scopes: []string{PermProjectsRead}, JWT: true})),
	} {
		if _, err := s.projects.ListProjects(outgoing(t, kv...), &gatehousev1.ListProjectsRequest{}); err != nil {
			t.Errorf("a JWT without a Backend API: %v", err)
		}
	}
}

func TestAuthenticateUnknownMethod(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{})
	token := e.mint(t, clerkemu.Session{UserID: testUser})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(AuthorizationKey, "Bearer "+token))
	tests := []struct {
		method string
		want   codes.Code
	}{
		{"/gatehouse.v1.UserService/GetMe", codes.OK},
		{"/gatehouse.v1.UserService/DropAllUsers", codes.PermissionDenied},
		{"/acme.v1.Other/Method", codes.PermissionDenied},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			_, err := s.auth.Authenticate(ctx, tt.method)
			if got := status.Code(err); got != tt.want {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.method, err, tt.want)
			}
		})
	}
}

// fakeStream is a ServerStream carrying only a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

// methodStream is the transport stream grpc-go puts in a call's context, as
// far as grpc.Method reads it.
type methodStream struct {
	grpc.ServerTransportStream
	method string
}

func (m methodStream) Method() string { return m.method }

func TestStreamServerInterceptor(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := startServer(t, e, serverOptions{})
	intercept := grpcauth.StreamServerInterceptor(s.auth.AuthFunc)
	const method = "/gatehouse.v1.UserService/GetMe"
	info := &grpc.StreamServerInfo{FullMethod: method}
	call := func(md metadata.MD) context.Context {
		return grpc.NewContextWithServerTransportStream(metadata.NewIncomingContext(context.Background(), md), methodStream{method: method})
	}
	var got *viewer.Principal
	handler := func(_ any, ss grpc.ServerStream) error {
		got, _ = viewer.FromContext(ss.Context())
		return nil
	}

	token := e.mint(t, clerkemu.Session{UserID: testUser})
	if err := intercept(nil, fakeStream{ctx: call(metadata.Pairs(AuthorizationKey, "Bearer "+token))}, info, handler); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Subject != testUser {
		t.Errorf("handler saw principal %+v, want %s", got, testUser)
	}

	got = nil
	err := intercept(nil, fakeStream{ctx: call(nil)}, info, handler)
	wantStatus(t, err, codes.Unauthenticated, "invalid token: missing_token", "")
	if got != nil {
		t.Errorf("handler ran without a token")
	}

	// A context without the method grpc-go records is denied, token or not.
	err = intercept(nil, fakeStream{ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs(AuthorizationKey, "Bearer "+token))}, info, handler)
	wantStatus(t, err, codes.PermissionDenied, "permission denied: no_access_rule", token)
	if got != nil {
		t.Errorf("handler ran without a method")
	}
}
