package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Keys are slow to generate; tests share two.
var (
	emulatorKey = sync.OnceValue(func() *rsa.PrivateKey { return newRSAKey() })
	otherKey    = sync.OnceValue(func() *rsa.PrivateKey { return newRSAKey() })
)

func newRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// fakeClock is a settable clock shared by the verifiers and the KeySet.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a Clerk emulator served over HTTP and the production Clerk client,
// KeySet and verifiers pointed at it.
type env struct {
	emu      *clerkemu.Emulator
	srv      *httptest.Server
	client   *clerk.Client
	keys     *clerk.KeySet
	clock    *fakeClock
	sessions *SessionVerifier
	jwts     *MachineJWTVerifier
	opaque   *OpaqueVerifier
}

type envOptions struct {
	session         SessionConfig // Keys, Issuer and Now are filled in
	opaque          OpaqueConfig  // Clerk (unless set) and Now are filled in
	audiences       []string      // GATEHOUSE_OAUTH_AUDIENCE
	jwtCacheSize    int           // MachineJWTConfig.CacheSize
	refetchInterval time.Duration
	fetchTimeout    time.Duration
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	emu, err := clerkemu.New(clerkemu.Options{Key: emulatorKey()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	client := clerk.New(clerk.Config{
		APIURL:     srv.URL + "/v1",
		SecretKey:  emu.SecretKey(),
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
	})
	clock := newFakeClock()
	keys := client.NewKeySet(clerk.KeySetOptions{RefetchInterval: opts.refetchInterval, FetchTimeout: opts.fetchTimeout, Now: clock.Now})
	cfg := opts.session
	cfg.Keys, cfg.Now = keys, clock.Now
	if cfg.Issuer == "" {
		cfg.Issuer = emu.Issuer()
	}
	sessions, err := NewSessionVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	jwts, err := NewMachineJWTVerifier(MachineJWTConfig{Keys: keys, Issuer: cfg.Issuer, OAuthAudiences: opts.audiences,
		CacheSize: opts.jwtCacheSize, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ocfg := opts.opaque
	if ocfg.Clerk == nil {
		ocfg.Clerk = client
	}
	ocfg.Now, ocfg.OAuthAudiences = clock.Now, opts.audiences
	return &env{emu: emu, srv: srv, client: client, keys: keys, clock: clock, sessions: sessions, jwts: jwts,
		opaque: NewOpaqueVerifier(ocfg)}
}

// mustMint mints a credential with an Emulator's Mint method, or fails the
// test.
func mustMint[S any](t testing.TB, mint func(S) (string, error), spec S) string {
	t.Helper()
	token, err := mint(spec)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func (e *env) mint(t testing.TB, s clerkemu.Session) string {
	t.Helper()
	return mustMint(t, e.emu.MintSession, s)
}

func (e *env) mintMachine(t testing.TB, m clerkemu.Machine) string {
	t.Helper()
	return mustMint(t, e.emu.MintMachineToken, m)
}

func (e *env) mintAPIKey(t testing.TB, k clerkemu.APIKey) string {
	t.Helper()
	return mustMint(t, e.emu.MintAPIKey, k)
}

func (e *env) mintOAuth(t testing.TB, o clerkemu.OAuthToken) string {
	t.Helper()
	return mustMint(t, e.emu.MintOAuthToken, o)
}

// fakeRoles is a RoleSource: the memberships the webhooks would have
// mirrored, as "org_…/user_…" → role.
type fakeRoles map[string]string

func (f fakeRoles) MembershipRole(_ context.Context, orgID, userID string) (string, error) {
	return f[orgID+"/"+userID], nil
}

// fakeProvisioner records the users it is asked about.
type fakeProvisioner struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeProvisioner) EnsureUser(_ context.Context, p *viewer.Principal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, p.Subject)
	return f.err
}

func (f *fakeProvisioner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// fakeService stands in for the Gatehouse handlers: it records the principal
// each call arrived with. Authentication in front of it is the real thing.
type fakeService struct {
	gatehousev1.UnimplementedUserServiceServer
	gatehousev1.UnimplementedProjectServiceServer
	last atomic.Pointer[viewer.Principal]
}

func (f *fakeService) seen(ctx context.Context) {
	if p, ok := viewer.FromContext(ctx); ok {
		f.last.Store(p)
	}
}

func (f *fakeService) GetMe(ctx context.Context, _ *gatehousev1.GetMeRequest) (*gatehousev1.GetMeResponse, error) {
	f.seen(ctx)
	p, _ := viewer.FromContext(ctx)
	return &gatehousev1.GetMeResponse{
		User: &gatehousev1.User{Id: p.Subject},
		Session: &gatehousev1.Session{
			TenantId:         p.TenantID,
			OrganizationId:   p.OrgID,
			OrganizationRole: p.OrgRole,
			Permissions:      p.Permissions,
			Credential:       p.Credential.String(),
		},
	}, nil
}

func (f *fakeService) GetUser(ctx context.Context, _ *gatehousev1.GetUserRequest) (*gatehousev1.GetUserResponse, error) {
	f.seen(ctx)
	return &gatehousev1.GetUserResponse{}, nil
}

func (f *fakeService) GetProject(ctx context.Context, _ *gatehousev1.GetProjectRequest) (*gatehousev1.GetProjectResponse, error) {
	f.seen(ctx)
	return &gatehousev1.GetProjectResponse{}, nil
}

func (f *fakeService) ListUsers(ctx context.Context, _ *gatehousev1.ListUsersRequest) (*gatehousev1.ListUsersResponse, error) {
	f.seen(ctx)
	return &gatehousev1.ListUsersResponse{}, nil
}

func (f *fakeService) CreateProject(ctx context.Context, _ *gatehousev1.CreateProjectRequest) (*gatehousev1.CreateProjectResponse, error) {
	f.seen(ctx)
	return &gatehousev1.CreateProjectResponse{Project: &gatehousev1.Project{}}, nil
}

func (f *fakeService) ListProjects(ctx context.Context, _ *gatehousev1.ListProjectsRequest) (*gatehousev1.ListProjectsResponse, error) {
	f.seen(ctx)
	return &gatehousev1.ListProjectsResponse{}, nil
}

func (f *fakeService) DeleteProject(ctx context.Context, _ *gatehousev1.DeleteProjectRequest) (*gatehousev1.DeleteProjectResponse, error) {
	f.seen(ctx)
	return &gatehousev1.DeleteProjectResponse{}, nil
}

// testServer is a gRPC server on an in-memory listener authenticating with
// the Authenticator's AuthFunc, as production does, in front of the health
// service and fakeService.
type testServer struct {
	auth     *Authenticator
	svc      *fakeService
	prov     *fakeProvisioner
	registry *prometheus.Registry
	users    gatehousev1.UserServiceClient
	projects gatehousev1.ProjectServiceClient
	health   healthpb.HealthClient
}

type serverOptions struct {
	noBackend bool       // no Backend API: opaque credentials refused
	roles     RoleSource // memberships
	rules     *Rules     // instead of the Gatehouse services' rules
}

func startServer(t *testing.T, e *env, opts serverOptions) *testServer {
	t.Helper()
	rules := gatehouseRules(t)
	if opts.rules != nil {
		rules = *opts.rules
	}
	cfg := Config{Sessions: e.sessions, MachineJWTs: e.jwts, Opaque: e.opaque, Rules: rules, Provisioner: &fakeProvisioner{},
		Roles: opts.roles, Registerer: prometheus.NewRegistry()}
	if opts.noBackend {
		cfg.Opaque = nil
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcauth.UnaryServerInterceptor(a.AuthFunc)),
		grpc.ChainStreamInterceptor(grpcauth.StreamServerInterceptor(a.AuthFunc)),
	)
	svc := &fakeService{}
	gatehousev1.RegisterUserServiceServer(srv, svc)
	gatehousev1.RegisterProjectServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testServer{
		auth:     a,
		svc:      svc,
		prov:     cfg.Provisioner.(*fakeProvisioner),
		registry: cfg.Registerer.(*prometheus.Registry),
		users:    gatehousev1.NewUserServiceClient(conn),
		projects: gatehousev1.NewProjectServiceClient(conn),
		health:   healthpb.NewHealthClient(conn),
	}
}

// newTestAuthenticator is the Authenticator of e's verifiers and the
// Gatehouse services' rules, with a provisioner that lets every user in
// and the memberships roles, for benchmarks and fuzzing.
func newTestAuthenticator(tb testing.TB, e *env, roles RoleSource) *Authenticator {
	tb.Helper()
	rules := gatehouseRules(tb)
	a, err := New(Config{Sessions: e.sessions, MachineJWTs: e.jwts, Opaque: e.opaque, Rules: rules,
		Provisioner: nopProvisioner{}, Roles: roles, Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// nopProvisioner lets every user in, as a provisioner that has seen them
// does.
type nopProvisioner struct{}

func (nopProvisioner) EnsureUser(context.Context, *viewer.Principal) error { return nil }

// incoming returns the context of a call arriving from address addr with
// the metadata pairs kv, for calling Authenticate directly.
func incoming(addr string, kv ...string) context.Context {
	return incomingFrom(context.Background(), addr, kv...)
}

// incomingFrom is incoming, ending when ctx does.
func incomingFrom(ctx context.Context, addr string, kv ...string) context.Context {
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(kv...))
	return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000}})
}

// outgoing returns a context sending the given metadata pairs.
func outgoing(t *testing.T, kv ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func bearer(token string) []string { return []string{AuthorizationKey, "Bearer " + token} }

// gatehouseRules are the access rules of Gatehouse's two services.
func gatehouseRules(tb testing.TB) Rules {
	tb.Helper()
	rules, err := LoadRules(
		gatehousev1.File_gatehouse_v1_user_proto.Services().Get(0),
		gatehousev1.File_gatehouse_v1_project_proto.Services().Get(0),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return rules
}
