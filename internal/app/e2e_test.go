package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/app"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// gatehouse is a running server with its Clerk emulator and clients.
type gatehouse struct {
	emu      *clerkemu.Emulator
	app      *app.App
	conn     *grpc.ClientConn
	users    gatehousev1.UserServiceClient
	projects gatehousev1.ProjectServiceClient
	httpURL  string
}

type option func(*config.Config)

// emulatorJWTKey, set as CLERK_JWT_KEY by an option, stands for the
// emulator's public key (networkless verification).
const emulatorJWTKey = "the emulator's public key"

// start runs Gatehouse the way `gatehouse serve` does, on port 0, against a
// fresh database of the dialect and a fresh Clerk emulator.
func start(t *testing.T, dialect string, opts ...option) *gatehouse {
	t.Helper()
	return startLogging(t, dialect, nil, opts...)
}

// startLogging is start, writing Gatehouse's log (JSON) to logTo too.
func startLogging(t *testing.T, dialect string, logTo io.Writer, opts ...option) *gatehouse {
	t.Helper()
	c := newClerk(t)
	cfg := c.serveConfig(storetest.URL(t, dialect))
	cfg.AuthorizedParties = []string{"http://localhost:3000"}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.ClerkJWTKey == emulatorJWTKey {
		cfg.ClerkJWTKey = c.emu.PublicKeyPEM()
	}
	out := testOutput(t)
	if logTo != nil {
		out = io.MultiWriter(out, logTo)
	}
	return c.startApp(t, cfg, slog.New(slog.NewJSONHandler(out, nil)))
}

// clerkFixture is one Clerk emulator, served over HTTP: a test's own, or
// one that several replicas share as they would share one Clerk instance.
type clerkFixture struct {
	emu *clerkemu.Emulator
	url string // the Backend API's base URL, …/v1
}

func newClerk(t testing.TB) *clerkFixture {
	t.Helper()
	emu, err := clerkemu.New(clerkemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	return &clerkFixture{emu: emu, url: srv.URL + "/v1"}
}

// serveConfig is the configuration `gatehouse serve` would read for a
// server on dbURL behind c, on port 0.
func (c *clerkFixture) serveConfig(dbURL string) *config.Config {
	return &config.Config{
		DatabaseURL:         dbURL,
		GRPCAddr:            "127.0.0.1:0",
		HTTPAddr:            "127.0.0.1:0",
		ClerkSecretKey:      c.emu.SecretKey(),
		Issuer:              c.emu.Issuer(),
		ClerkAPIURL:         c.url,
		WebhookSecret:       c.emu.WebhookSecret(),
		JWKSRefetchInterval: 5 * time.Second,
		PageTokenKey:        []byte("0123456789abcdef0123456789abcdef"),
		Migrate:             true,
	}
}

// startApp starts Gatehouse with cfg, logging to log, and serves it until
// the test ends.
func (c *clerkFixture) startApp(t testing.TB, cfg *config.Config, log *slog.Logger) *gatehouse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	return serveApp(t, c.emu, a, cancel)
}

// serveApp runs an app.App started by app.Start until the test ends, with
// clients for it.
func serveApp(t testing.TB, emu *clerkemu.Emulator, a *app.App, cancel context.CancelFunc) *gatehouse {
	t.Helper()
	conn, err := grpc.NewClient(a.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := a.Wait(); err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	})
	return &gatehouse{
		emu: emu, app: a, conn: conn,
		users:    gatehousev1.NewUserServiceClient(conn),
		projects: gatehousev1.NewProjectServiceClient(conn),
		httpURL:  "http://" + a.HTTPAddr.String(),
	}
}

// testOutput is where a test's servers log: the test's log with -v,
// nowhere otherwise.
func testOutput(t testing.TB) io.Writer {
	if testing.Verbose() {
		return testWriter{t}
	}
	return io.Discard
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// mint returns a session token for s, adding the user to the emulator so
// first-sight provisioning finds it.
func (g *gatehouse) mint(t testing.TB, s clerkemu.Session) string {
	t.Helper()
	g.emu.AddUser(clerkemu.User{ID: s.UserID, Email: s.UserID + "@example.com", FirstName: "F" + s.UserID})
	tok, err := g.emu.MintSession(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// retryInfo returns the google.rpc.RetryInfo detail of err's status, or nil.
func retryInfo(err error) *errdetails.RetryInfo {
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			return r
		}
	}
	return nil
}

func TestHealthReflectionAndMetrics(t *testing.T) {
	g := start(t, "sqlite")
	ctx := context.Background()
	resp, err := healthpb.NewHealthClient(g.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(g.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	listed, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var services []string
	for _, s := range listed.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"gatehouse.v1.ProjectService", "gatehouse.v1.UserService", "grpc.health.v1.Health"} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection lists %v, without %s", services, want)
		}
	}
	stream.CloseSend()

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		r, err := http.Get(g.httpURL + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, r.StatusCode)
		}
	}
	_, err = g.users.GetMe(ctx, &gatehousev1.GetMeRequest{})
	wantCode(t, err, codes.Unauthenticated)

	body, err := clerkemu.SampleEvent(webhook.TypeUserCreated, clerkemu.Sample{UserID: "user_metrics", UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if code := sendWebhook(t, g, "", body); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	r, err := http.Get(g.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="GetMe",grpc_service="gatehouse.v1.UserService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_bucket{`,
		`gatehouse_auth_failures_total{reason="missing_token"} 1`,
		`gatehouse_jwks_fetches_total{result="ok"}`,
		`gatehouse_webhook_events_total{result="applied",type="user.created"} 1`,
	} {
		if !strings.Contains(string(metrics), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func TestGetMeProvisionsOnFirstSight(t *testing.T) { eachProtocol(t, testGetMeProvisionsOnFirstSight) }

func testGetMeProvisionsOnFirstSight(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect).over(t, via)
			tok := g.mint(t, clerkemu.Session{UserID: "user_first"})
			resp, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			got := []string{resp.User.Id, resp.User.Email, resp.Session.TenantId, resp.Session.OrganizationId,
				strings.Join(resp.Session.Permissions, " ")}
			want := []string{"user_first", "user_first@example.com", "user_first", "",
				"org:projects:create org:projects:delete org:projects:read org:projects:update"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("GetMe (-want +got):\n%s", d)
			}
		})
	}
}

func TestProvisioningWhenClerkIsDown(t *testing.T) { eachProtocol(t, testProvisioningWhenClerkIsDown) }

func testProvisioningWhenClerkIsDown(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	tok := g.mint(t, clerkemu.Session{UserID: "user_early"})
	g.emu.SetUsersStatus(http.StatusServiceUnavailable)
	_, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
	wantCode(t, err, codes.Unavailable)
	if retry := retryInfo(err); retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Fatalf("UNAVAILABLE without RetryInfo: %v", status.Convert(err).Details())
	}
	g.emu.SetUsersStatus(0)
	if _, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatalf("after Clerk is back: %v", err)
	}
}

func TestUnknownUserIsUnauthenticated(t *testing.T) {
	eachProtocol(t, testUnknownUserIsUnauthenticated)
}

func testUnknownUserIsUnauthenticated(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	tok, err := g.emu.MintSession(clerkemu.Session{UserID: "user_ghost"}) // not added to Clerk
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
	wantCode(t, err, codes.Unauthenticated)
}

func TestBadTokensAreUnauthenticated(t *testing.T) { eachProtocol(t, testBadTokensAreUnauthenticated) }

func testBadTokensAreUnauthenticated(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := g.mint(t, clerkemu.Session{UserID: "user_good"})
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	header := func(h map[string]any) string { b, _ := json.Marshal(h); return b64(b) }
	hs256 := func() string {
		signing := header(map[string]any{"alg": "HS256", "typ": "JWT", "kid": g.emu.KeyID()}) + "." + parts[1]
		m := hmac.New(sha256.New, []byte(g.emu.PublicKeyPEM()))
		m.Write([]byte(signing))
		return signing + "." + b64(m.Sum(nil))
	}
	mint := func(s clerkemu.Session) string {
		if s.UserID == "" {
			s.UserID = "user_good"
		}
		tok, err := g.emu.MintSession(s)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	tokens := map[string]string{
		"expired":            mint(clerkemu.Session{IssuedAt: now.Add(-2 * time.Hour), NotBefore: now.Add(-2 * time.Hour), TTL: time.Hour}),
		"not yet valid":      mint(clerkemu.Session{IssuedAt: now, NotBefore: now.Add(time.Hour)}),
		"wrong issuer":       mint(clerkemu.Session{Issuer: "https://clerk.evil.test"}),
		"wrong azp":          mint(clerkemu.Session{AuthorizedParty: "https://evil.test"}),
		"no sid":             mint(clerkemu.Session{OmitSID: true}),
		"no exp":             mint(clerkemu.Session{OmitExp: true}),
		"pending session":    mint(clerkemu.Session{Status: "pending"}),
		"jwt template cat":   mint(clerkemu.Session{Category: "cl_B7d4PD222AAA"}),
		"machine cat":        mint(clerkemu.Session{Category: "cl_B7d4PD333AAA"}),
		"alg none":           header(map[string]any{"alg": "none", "typ": "JWT", "kid": g.emu.KeyID()}) + "." + parts[1] + ".",
		"hs256 public key":   hs256(),
		"wrong key":          mint(clerkemu.Session{SigningKey: other}),
		"tampered payload":   parts[0] + "." + b64([]byte(`{"sub":"user_admin","sid":"sess_x","iss":"`+g.emu.Issuer()+`"}`)) + "." + parts[2],
		"garbage":            "not-a-jwt",
		"empty bearer":       "",
		"unknown kid":        mint(clerkemu.Session{SigningKey: other, KeyID: "ins_forged"}),
		"not a user subject": mint(clerkemu.Session{UserID: "bot_robot"}),
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			_, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
			wantCode(t, err, codes.Unauthenticated)
			msg := status.Convert(err).Message()
			for _, part := range strings.Split(tok, ".") {
				if len(part) > 8 && strings.Contains(msg, part) {
					t.Errorf("error %q echoes the token", msg)
				}
			}
		})
	}
	// A session's claims with a machine's subject are routed as a machine
	// token — which GetMe does not take — and are no machine token either.
	posing := mint(clerkemu.Session{UserID: "mch_robot"})
	_, err = g.users.GetMe(withToken(context.Background(), posing), &gatehousev1.GetMeRequest{})
	wantCode(t, err, codes.PermissionDenied)
	_, err = g.projects.ListProjects(metadata.AppendToOutgoingContext(withToken(context.Background(), posing), "x-gatehouse-tenant", "org_a"),
		&gatehousev1.ListProjectsRequest{})
	wantCode(t, err, codes.Unauthenticated)
	// The good token still works: the failures above were the tokens' own.
	if _, err := g.users.GetMe(withToken(context.Background(), good), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func TestForgedKeyIDsCauseAtMostOneFetchPerWindow(t *testing.T) {
	g := start(t, "sqlite", func(c *config.Config) { c.JWKSRefetchInterval = time.Second })
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// Let the startup fetch's window pass, so the flood may cause one fetch.
	time.Sleep(1100 * time.Millisecond)
	before := g.emu.JWKSFetches()
	began := time.Now()
	var wg sync.WaitGroup
	for i := range 300 {
		tok, err := g.emu.MintSession(clerkemu.Session{UserID: "user_x", SigningKey: other, KeyID: fmt.Sprintf("ins_forged%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("forged kid: %v", err)
			}
		}()
	}
	wg.Wait()
	// At most one fetch per window the flood spanned (one, unless the
	// machine is very slow).
	windows := int64(time.Since(began)/time.Second) + 1
	if n := g.emu.JWKSFetches() - before; n > windows {
		t.Fatalf("300 forged key ids over %d refetch window(s) caused %d JWKS fetches", windows, n)
	}
}

func TestKeyRotationIsPickedUp(t *testing.T) {
	g := start(t, "sqlite", func(c *config.Config) { c.JWKSRefetchInterval = 200 * time.Millisecond })
	tok := g.mint(t, clerkemu.Session{UserID: "user_rot"})
	ctx := context.Background()
	if _, err := g.users.GetMe(withToken(ctx, tok), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.emu.RotateKey(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	rotated := g.mint(t, clerkemu.Session{UserID: "user_rot"})
	if _, err := g.users.GetMe(withToken(ctx, rotated), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
}

func TestTenantIsolation(t *testing.T) { eachProtocol(t, testTenantIsolation) }

func testTenantIsolation(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect).over(t, via)
			ctx := context.Background()
			adminA := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_a", OrgID: "org_a", OrgRole: "org:admin"}))
			adminB := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_b", OrgID: "org_b", OrgRole: "org:admin"}))

			created, err := g.projects.CreateProject(adminA, &gatehousev1.CreateProjectRequest{Name: "A's secret"})
			if err != nil {
				t.Fatal(err)
			}
			p := created.Project
			if p.TenantId != "org_a" || p.OwnerId != "user_a" || p.Status != gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE {
				t.Fatalf("created %v", p)
			}

			_, err = g.projects.GetProject(adminB, &gatehousev1.GetProjectRequest{Id: p.Id})
			wantCode(t, err, codes.NotFound)
			list, err := g.projects.ListProjects(adminB, &gatehousev1.ListProjectsRequest{})
			if err != nil || len(list.Projects) != 0 {
				t.Fatalf("B lists %v, %v", list, err)
			}
			_, err = g.projects.UpdateProject(adminB, &gatehousev1.UpdateProjectRequest{
				Project:    &gatehousev1.Project{Id: p.Id, Name: "pwned"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
			})
			wantCode(t, err, codes.NotFound)
			_, err = g.projects.DeleteProject(adminB, &gatehousev1.DeleteProjectRequest{Id: p.Id})
			wantCode(t, err, codes.NotFound)

			got, err := g.projects.GetProject(adminA, &gatehousev1.GetProjectRequest{Id: p.Id})
			if err != nil || got.Project.Name != "A's secret" {
				t.Fatalf("A's project after B's attempts: %v, %v", got, err)
			}
		})
	}
}

func TestPersonalTenantsAreSeparate(t *testing.T) { eachProtocol(t, testPersonalTenantsAreSeparate) }

func testPersonalTenantsAreSeparate(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	ctx := context.Background()
	alice := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_alice"}))
	bob := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_bob"}))
	p, err := g.projects.CreateProject(alice, &gatehousev1.CreateProjectRequest{Name: "diary"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.projects.GetProject(bob, &gatehousev1.GetProjectRequest{Id: p.Project.Id})
	wantCode(t, err, codes.NotFound)
	list, err := g.projects.ListProjects(bob, &gatehousev1.ListProjectsRequest{})
	if err != nil || len(list.Projects) != 0 {
		t.Fatalf("bob lists %v, %v", list, err)
	}
	_, err = g.users.GetUser(bob, &gatehousev1.GetUserRequest{Id: "user_alice"})
	wantCode(t, err, codes.NotFound)
}

func TestPermissions(t *testing.T) { eachProtocol(t, testPermissions) }

func testPermissions(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	ctx := context.Background()
	member := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_m", OrgID: "org_p", OrgRole: "org:member"}))
	admin := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_adm", OrgID: "org_p", OrgRole: "org:admin"}))
	viewerOnly := withToken(ctx, g.mint(t, clerkemu.Session{
		UserID: "user_v", OrgID: "org_p", OrgRole: "org:viewer", Permissions: []string{"org:projects:read"},
	}))

	p, err := g.projects.CreateProject(member, &gatehousev1.CreateProjectRequest{Name: "by member"})
	if err != nil {
		t.Fatalf("member create: %v", err)
	}
	_, err = g.projects.DeleteProject(member, &gatehousev1.DeleteProjectRequest{Id: p.Project.Id})
	wantCode(t, err, codes.PermissionDenied)
	_, err = g.projects.CreateProject(viewerOnly, &gatehousev1.CreateProjectRequest{Name: "by viewer"})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := g.projects.GetProject(viewerOnly, &gatehousev1.GetProjectRequest{Id: p.Project.Id}); err != nil {
		t.Fatalf("viewer read: %v", err)
	}
	if _, err := g.projects.DeleteProject(admin, &gatehousev1.DeleteProjectRequest{Id: p.Project.Id}); err != nil {
		t.Fatalf("admin delete: %v", err)
	}
	_, err = g.projects.GetProject(admin, &gatehousev1.GetProjectRequest{Id: p.Project.Id})
	wantCode(t, err, codes.NotFound)
}

func TestInvalidArgumentsCarryFieldViolations(t *testing.T) {
	eachProtocol(t, testInvalidArgumentsCarryFieldViolations)
}

func testInvalidArgumentsCarryFieldViolations(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	ctx := withToken(context.Background(), g.mint(t, clerkemu.Session{UserID: "user_v"}))
	_, err := g.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "   "})
	wantCode(t, err, codes.InvalidArgument)
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
	}
	if d := cmp.Diff([]string{"name"}, fields); d != "" {
		t.Errorf("field violations (-want +got):\n%s", d)
	}
	_, err = g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageToken: "bogus"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument)
}

func TestGracefulShutdownDrains(t *testing.T) {
	cfg := newClerk(t).serveConfig(storetest.URL(t, "sqlite"))
	cfg.JWKSRefetchInterval = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s of its context ending")
	}
}

// TestMembershipRoleStandsInForAMissingRole: a token naming an organization
// but no role acts with the role the webhooks mirrored for the membership.
func TestMembershipRoleStandsInForAMissingRole(t *testing.T) {
	eachProtocol(t, testMembershipRoleStandsInForAMissingRole)
}

func testMembershipRoleStandsInForAMissingRole(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect).over(t, via)
			ctx := context.Background()
			noRole := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_r", OrgID: "org_r"}))
			_, err := g.projects.CreateProject(noRole, &gatehousev1.CreateProjectRequest{Name: "x"})
			wantCode(t, err, codes.PermissionDenied)

			body, err := clerkemu.SampleEvent(webhook.TypeOrganizationMembershipCreated, clerkemu.Sample{
				UserID: "user_r", OrgID: "org_r", MembershipID: "orgmem_r", Role: "org:admin", UpdatedAt: time.Now(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp := postWebhook(t, g, "", body); resp.StatusCode != http.StatusOK {
				t.Fatalf("membership webhook: %s", resp.Status)
			}

			me, err := g.users.GetMe(noRole, &gatehousev1.GetMeRequest{})
			if err != nil || me.Session.OrganizationRole != "org:admin" {
				t.Fatalf("GetMe: %v, %v; want role org:admin from the membership", me, err)
			}
			p, err := g.projects.CreateProject(noRole, &gatehousev1.CreateProjectRequest{Name: "x"})
			if err != nil {
				t.Fatalf("create as mirrored admin: %v", err)
			}
			if _, err := g.projects.DeleteProject(noRole, &gatehousev1.DeleteProjectRequest{Id: p.Project.Id}); err != nil {
				t.Fatalf("delete as mirrored admin: %v", err)
			}
			// The role in a token wins over the mirrored one.
			member := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_r", OrgID: "org_r", OrgRole: "org:member"}))
			_, err = g.projects.DeleteProject(member, &gatehousev1.DeleteProjectRequest{Id: "prj_X"})
			wantCode(t, err, codes.PermissionDenied)
		})
	}
}

// TestGetMeFollowsWebhooksAtOnce: GetMe serves the row auth has just
// vouched for, but a user event applied on this server shows immediately,
// and a deleted user's still-valid session is refused immediately.
func TestGetMeFollowsWebhooksAtOnce(t *testing.T) { eachProtocol(t, testGetMeFollowsWebhooksAtOnce) }

func testGetMeFollowsWebhooksAtOnce(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	ctx := context.Background()
	tok := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_w"}))
	if _, err := g.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	send := func(eventType string, s clerkemu.Sample) {
		t.Helper()
		s.UserID, s.UpdatedAt = "user_w", time.Now()
		body, err := clerkemu.SampleEvent(eventType, s)
		if err != nil {
			t.Fatal(err)
		}
		if code := sendWebhook(t, g, "", body); code != http.StatusOK {
			t.Fatalf("%s: %d", eventType, code)
		}
	}
	send(webhook.TypeUserUpdated, clerkemu.Sample{FirstName: "Renamed", Email: "new@example.com"})
	me, err := g.users.GetMe(tok, &gatehousev1.GetMeRequest{})
	if err != nil || me.User.FirstName != "Renamed" || me.User.Email != "new@example.com" {
		t.Fatalf("GetMe right after user.updated: %v, %v", me.GetUser(), err)
	}
	send(webhook.TypeUserDeleted, clerkemu.Sample{})
	_, err = g.users.GetMe(tok, &gatehousev1.GetMeRequest{})
	wantCode(t, err, codes.Unauthenticated)
}
