package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/auth"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// as returns a context calling with token, naming tenant in
// x-gatehouse-tenant when it is not empty.
func as(token, tenant string) context.Context {
	md := []string{"authorization", "Bearer " + token}
	if tenant != "" {
		md = append(md, "x-gatehouse-tenant", tenant)
	}
	return metadata.AppendToOutgoingContext(context.Background(), md...)
}

// must returns v, for setup steps that fail only when the emulator or the
// server is broken; err panics, failing the test with its stack.
func must[V any](v V, err error) V {
	if err != nil {
		panic(err)
	}
	return v
}

// send applies a Clerk webhook event to g.
func (g *gatehouse) send(t *testing.T, eventType string, s clerkemu.Sample) {
	t.Helper()
	s.UpdatedAt = time.Now()
	body, err := clerkemu.SampleEvent(eventType, s)
	if err != nil {
		t.Fatal(err)
	}
	if code := sendWebhook(t, g, "", body); code != http.StatusOK {
		t.Fatalf("%s: %d", eventType, code)
	}
}

// TestCredentials is DESIGN's table of credentials, end to end on each
// database: every kind, where each RPC takes it, the tenant and
// permissions each acts with, and the statuses refusals earn.
func TestCredentials(t *testing.T) { eachProtocol(t, testCredentials) }

func testCredentials(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect).over(t, via)
			ctx := context.Background()
			const (
				ann, bob, gone = "user_ann", "user_bob", "user_gone"
				acme, other    = "org_acme", "org_other"
			)
			for _, u := range []string{ann, bob, gone} {
				g.emu.AddUser(clerkemu.User{ID: u, Email: u + "@example.com"})
			}
			g.send(t, webhook.TypeOrganizationMembershipCreated, clerkemu.Sample{UserID: ann, OrgID: acme, MembershipID: "orgmem_ann", Role: "org:member"})
			admin := g.mint(t, clerkemu.Session{UserID: "user_admin", OrgID: acme, OrgRole: "org:admin"})
			orgProject := must(g.projects.CreateProject(withToken(ctx, admin), &gatehousev1.CreateProjectRequest{Name: "acme's"})).Project

			read, create := "org:projects:read", "org:projects:create"
			key := func(subject string, scopes ...string) string {
				return must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: subject, Scopes: scopes}))
			}
			oauth := func(o clerkemu.OAuthToken) string { return must(g.emu.MintOAuthToken(o)) }
			machine := func(m clerkemu.Machine) string { return must(g.emu.MintMachineToken(m)) }

			annKey, annScoped, bobKey := key(ann), key(ann, read, create, "chats:write"), key(bob, read)
			orgKey, orgUnscoped := key(acme, read, create, "org:projects:update", "org:projects:delete"), key(acme)
			goneKey := key(gone, read)
			revokedKey := key(ann)
			g.emu.RevokeAPIKey(revokedKey)
			expiredKey := must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: ann, TTL: -time.Minute}))
			annOAuth := oauth(clerkemu.OAuthToken{UserID: ann, Scopes: []string{read, create}})
			annOAuthJWT := oauth(clerkemu.OAuthToken{UserID: ann, Scopes: []string{read}, JWT: true})
			revokedOAuth := oauth(clerkemu.OAuthToken{UserID: ann})
			g.emu.RevokeOAuthToken(revokedOAuth)
			machineOpaque, machineJWT := machine(clerkemu.Machine{TTL: time.Hour}), machine(clerkemu.Machine{JWT: true})
			session := g.mint(t, clerkemu.Session{UserID: ann})

			// Calls, each checking what the caller gets back.
			getMe := func(cred string) func(context.Context) error {
				return func(ctx context.Context) error {
					me, err := g.users.GetMe(ctx, &gatehousev1.GetMeRequest{})
					if err == nil && me.Session.Credential != cred {
						return fmt.Errorf("credential %q, want %q", me.Session.Credential, cred)
					}
					return err
				}
			}
			listProjects := func(want int) func(context.Context) error {
				return func(ctx context.Context) error {
					list, err := g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
					if err == nil && len(list.Projects) != want {
						return fmt.Errorf("%d projects, want %d", len(list.Projects), want)
					}
					return err
				}
			}
			createProject := func(tenant, owner string) func(context.Context) error {
				return func(ctx context.Context) error {
					p, err := g.projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "made with a credential"})
					if err == nil && (p.Project.TenantId != tenant || !strings.HasPrefix(p.Project.OwnerId, owner)) {
						return fmt.Errorf("project in %s owned by %s, want %s and %s…", p.Project.TenantId, p.Project.OwnerId, tenant, owner)
					}
					return err
				}
			}
			getProject := func(ctx context.Context) error {
				_, err := g.projects.GetProject(ctx, &gatehousev1.GetProjectRequest{Id: orgProject.Id})
				return err
			}
			listUsers := func(ctx context.Context) error {
				_, err := g.users.ListUsers(ctx, &gatehousev1.ListUsersRequest{})
				return err
			}

			tests := []struct {
				name   string
				ctx    context.Context
				call   func(context.Context) error
				want   codes.Code
				reason string
			}{
				{"session: GetMe", as(session, ""), getMe("session"), codes.OK, ""},
				{"session: the tenant header is ignored", as(session, acme), listProjects(0), codes.OK, ""},

				{"user's key: GetMe", as(annKey, ""), getMe("api_key"), codes.OK, ""},
				{"user's key, unscoped: reads", as(annKey, ""), listProjects(0), codes.OK, ""},
				{"user's key, unscoped: cannot write", as(annKey, ""), createProject(ann, ann), codes.PermissionDenied, "missing_permission"},
				{"user's key, scoped: creates in the personal tenant", as(annScoped, ""), createProject(ann, ann), codes.OK, ""},
				{"user's key in an organization with a mirrored membership", as(annScoped, acme), listProjects(1), codes.OK, ""},
				{"user's key in it, creating", as(annScoped, acme), createProject(acme, ann), codes.OK, ""},
				{"user's key in an organization without a membership", as(bobKey, acme), listProjects(0), codes.PermissionDenied, "not_a_member"},
				{"user's key in another organization", as(annScoped, other), listProjects(0), codes.PermissionDenied, "not_a_member"},
				{"user's key, a malformed tenant", as(annKey, "org_acme;drop"), listProjects(0), codes.InvalidArgument, "bad_tenant"},
				{"a deleted user's key", as(goneKey, ""), listProjects(0), codes.Unauthenticated, "deleted_user"},

				{"organization's key: creates, owned by the key", as(orgKey, ""), createProject(acme, "ak_"), codes.OK, ""},
				{"organization's key: reads its organization", as(orgKey, acme), getProject, codes.OK, ""},
				{"organization's key: lists the members", as(orgKey, ""), listUsers, codes.OK, ""},
				{"organization's key naming another tenant", as(orgKey, other), listProjects(0), codes.PermissionDenied, "tenant_not_allowed"},
				{"organization's key on GetMe", as(orgKey, ""), getMe(""), codes.PermissionDenied, "user_required"},
				{"organization's key, unscoped: cannot write", as(orgUnscoped, ""), createProject(acme, "ak_"), codes.PermissionDenied, "missing_permission"},

				{"key revoked (200)", as(revokedKey, ""), listProjects(0), codes.Unauthenticated, "revoked"},
				{"key expired (200)", as(expiredKey, ""), listProjects(0), codes.Unauthenticated, "expired"},
				{"key unknown (404)", as("ak_"+strings.Repeat("k", 32), ""), listProjects(0), codes.Unauthenticated, "rejected"},
				{"key malformed", as("ak_not;a;key", ""), listProjects(0), codes.Unauthenticated, "malformed"},

				{"OAuth token: GetMe", as(annOAuth, ""), getMe("oauth"), codes.OK, ""},
				{"OAuth token in an organization", as(annOAuth, acme), createProject(acme, ann), codes.OK, ""},
				{"OAuth JWT: GetMe", as(annOAuthJWT, ""), getMe("oauth"), codes.OK, ""},
				{"OAuth JWT: scoped to read", as(annOAuthJWT, acme), createProject(acme, ann), codes.PermissionDenied, "missing_permission"},
				{"OAuth token revoked", as(revokedOAuth, ""), listProjects(0), codes.Unauthenticated, "revoked"},

				{"machine token: reads the named tenant", as(machineOpaque, acme), listProjects(4), codes.OK, ""},
				{"machine JWT: reads the named tenant", as(machineJWT, acme), getProject, codes.OK, ""},
				{"machine: no tenant", as(machineJWT, ""), listProjects(0), codes.InvalidArgument, "missing_tenant"},
				{"machine: a write", as(machineOpaque, acme), createProject(acme, ""), codes.PermissionDenied, "credential_not_allowed"},
				{"machine: GetMe", as(machineJWT, acme), getMe(""), codes.PermissionDenied, "credential_not_allowed"},
			}
			// user_gone is deleted after its key was issued.
			g.send(t, webhook.TypeUserCreated, clerkemu.Sample{UserID: gone})
			g.send(t, webhook.TypeUserDeleted, clerkemu.Sample{UserID: gone})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					err := tt.call(tt.ctx)
					st := status.Convert(err)
					if st.Code() != tt.want || (tt.reason != "" && !strings.HasSuffix(st.Message(), ": "+tt.reason)) {
						t.Errorf("got %v %q, want %v …%s", st.Code(), st.Message(), tt.want, tt.reason)
					}
				})
			}

			t.Run("revoked answered 4xx", func(t *testing.T) {
				g.emu.SetRejectStatus(http.StatusBadRequest)
				defer g.emu.SetRejectStatus(0)
				k := key(ann)
				g.emu.RevokeAPIKey(k)
				_, err := g.projects.ListProjects(as(k, ""), &gatehousev1.ListProjectsRequest{})
				wantCode(t, err, codes.Unauthenticated)
			})
		})
	}
}

// TestOAuthAudienceEndToEnd: with GATEHOUSE_OAUTH_AUDIENCE, an OAuth JWT
// naming another audience is UNAUTHENTICATED.
func TestOAuthAudienceEndToEnd(t *testing.T) {
	g := start(t, "sqlite", func(c *config.Config) { c.OAuthAudiences = []string{"https://api.gatehouse.test"} })
	g.emu.AddUser(clerkemu.User{ID: "user_aud"})
	for aud, want := range map[string]codes.Code{"https://api.gatehouse.test": codes.OK, "https://elsewhere.test": codes.Unauthenticated} {
		tok := must(g.emu.MintOAuthToken(clerkemu.OAuthToken{UserID: "user_aud", JWT: true, Audience: []string{aud}}))
		_, err := g.users.GetMe(as(tok, ""), &gatehousev1.GetMeRequest{})
		if got := status.Code(err); got != want {
			t.Errorf("aud %s: %v, want %v", aud, err, want)
		}
	}
}

// TestOpaqueCredentialsNeedTheBackendAPI: with only CLERK_JWT_KEY, opaque
// credentials are refused without a request; JWT forms still verify.
func TestOpaqueCredentialsNeedTheBackendAPI(t *testing.T) {
	g := start(t, "sqlite", func(c *config.Config) { c.ClerkJWTKey, c.ClerkSecretKey = emulatorJWTKey, "" })
	for _, tok := range []string{
		must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: "user_jwtonly"})),
		must(g.emu.MintMachineToken(clerkemu.Machine{})),
		must(g.emu.MintOAuthToken(clerkemu.OAuthToken{UserID: "user_jwtonly"})),
	} {
		_, err := g.projects.ListProjects(as(tok, "org_x"), &gatehousev1.ListProjectsRequest{})
		wantCode(t, err, codes.Unauthenticated)
	}
	if n := g.emu.Verifies(); n != 0 {
		t.Errorf("%d verify requests without a secret key", n)
	}
	jwt := must(g.emu.MintMachineToken(clerkemu.Machine{JWT: true}))
	if _, err := g.projects.ListProjects(as(jwt, "org_x"), &gatehousev1.ListProjectsRequest{}); err != nil {
		t.Errorf("machine JWT without a Backend API: %v", err)
	}
}

// TestNoAmplification: invented and refused credentials cannot spend the
// Clerk instance's Backend API rate limit, and callers with credentials
// already verified keep working while they are refused.
func TestNoAmplification(t *testing.T) { eachProtocol(t, testNoAmplification) }

func testNoAmplification(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect).over(t, via)
			g.emu.AddUser(clerkemu.User{ID: "user_k"})
			session := g.mint(t, clerkemu.Session{UserID: "user_k"})
			machine := must(g.emu.MintMachineToken(clerkemu.Machine{TTL: time.Hour}))
			key := must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: "user_k"}))
			warm := []context.Context{as(session, ""), as(machine, "org_k"), as(key, "")}
			for _, ctx := range warm {
				if _, err := g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{}); err != nil {
					t.Fatal(err)
				}
			}

			t.Run("the same bad credential 50 times", func(t *testing.T) {
				before := g.emu.Verifies()
				bad := "oat_" + strings.Repeat("b", 40)
				var wg sync.WaitGroup
				for range 50 {
					wg.Go(func() {
						_, err := g.projects.ListProjects(as(bad, ""), &gatehousev1.ListProjectsRequest{})
						if status.Code(err) != codes.Unauthenticated {
							t.Errorf("got %v, want Unauthenticated", err)
						}
					})
				}
				wg.Wait()
				if got := g.emu.Verifies() - before; got > 1 {
					t.Errorf("50 presentations made %d requests to Clerk, want at most 1", got)
				}
			})

			t.Run("a flood of invented credentials", func(t *testing.T) {
				before := g.emu.Verifies()
				prefixes := []string{"mt_", "ak_", "oat_"}
				const n = 3000
				var refused, exhausted, warmCalls atomic.Int64
				stop := make(chan struct{})
				var warmers sync.WaitGroup
				for _, ctx := range warm {
					warmers.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							if _, err := g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{}); err != nil {
								t.Errorf("a verified caller during the flood: %v", err)
							}
							warmCalls.Add(1)
						}
					})
				}
				start := time.Now()
				var flood sync.WaitGroup
				next := atomic.Int64{}
				for range 50 {
					flood.Go(func() {
						for i := next.Add(1); i <= n; i = next.Add(1) {
							tok := fmt.Sprintf("%s%040d", prefixes[i%3], i)
							_, err := g.projects.ListProjects(as(tok, "org_k"), &gatehousev1.ListProjectsRequest{})
							switch status.Code(err) {
							case codes.Unauthenticated:
								refused.Add(1)
							case codes.ResourceExhausted:
								exhausted.Add(1)
							default:
								t.Errorf("an invented credential: %v", err)
							}
						}
					})
				}
				flood.Wait()
				elapsed := time.Since(start)
				close(stop)
				warmers.Wait()

				calls := g.emu.Verifies() - before
				bound := 20 + int64(10*elapsed.Seconds()) + 1
				t.Logf("%d invented credentials in %v: %d requests to Clerk (bound %d), %d refused, %d over budget; %d calls with verified credentials meanwhile",
					n, elapsed, calls, bound, refused.Load(), exhausted.Load(), warmCalls.Load())
				if calls > bound {
					t.Errorf("%d requests to Clerk in %v, want at most burst + rate × time = %d", calls, elapsed, bound)
				}
				if refused.Load()+exhausted.Load() != n || exhausted.Load() == 0 {
					t.Errorf("%d refused, %d over budget: want all %d turned away, some for the budget", refused.Load(), exhausted.Load(), n)
				}
				if warmCalls.Load() < int64(len(warm)) {
					t.Errorf("%d calls with verified credentials during the flood, want them to keep calling", warmCalls.Load())
				}
			})
		})
	}
}

// TestVerifyLimitsEndToEnd: the bound on requests in flight, the
// cancellation of a request nobody waits for, and Clerk's own failures,
// through the real server and client.
func TestVerifyLimitsEndToEnd(t *testing.T) { eachProtocol(t, testVerifyLimitsEndToEnd) }

func testVerifyLimitsEndToEnd(t *testing.T, via protocol) {
	// A budget per address that none of this will exhaust.
	g := start(t, "sqlite", func(c *config.Config) { c.VerifyBurst, c.VerifyRate = 1000, 1000 }).over(t, via)
	mintKey := func() string { return must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: "user_l"})) }
	g.emu.AddUser(clerkemu.User{ID: "user_l"})

	t.Run("bounded in flight", func(t *testing.T) {
		release := g.emu.HoldVerifies()
		defer release()
		const maxInFlight = 16 // auth's default
		errs := make(chan error, maxInFlight)
		for range maxInFlight {
			k := mintKey()
			go func() {
				_, err := g.projects.ListProjects(as(k, ""), &gatehousev1.ListProjectsRequest{})
				errs <- err
			}()
		}
		waitFor(t, "the requests in flight", func() bool { return g.emu.VerifiesInFlight() == maxInFlight })
		_, err := g.projects.ListProjects(as(mintKey(), ""), &gatehousev1.ListProjectsRequest{})
		wantCode(t, err, codes.ResourceExhausted)
		if msg := status.Convert(err).Message(); !strings.HasSuffix(msg, "busy") {
			t.Errorf("message %q", msg)
		}
		release()
		for range maxInFlight {
			if err := <-errs; err != nil {
				t.Errorf("a request in flight: %v", err)
			}
		}
	})

	t.Run("canceled when the caller gives up", func(t *testing.T) {
		release := g.emu.HoldVerifies()
		defer release()
		ctx, cancel := context.WithTimeout(as(mintKey(), ""), 200*time.Millisecond)
		defer cancel()
		_, err := g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
		wantCode(t, err, codes.DeadlineExceeded)
		waitFor(t, "the request to Clerk to be canceled", func() bool { return g.emu.VerifiesCanceled() == 1 })
	})

	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(fmt.Sprintf("Clerk answers %d", code), func(t *testing.T) {
			k := mintKey()
			g.emu.SetVerifyStatus(code)
			for range 2 {
				_, err := g.projects.ListProjects(as(k, ""), &gatehousev1.ListProjectsRequest{})
				wantCode(t, err, codes.Unavailable)
			}
			g.emu.SetVerifyStatus(0)
			if _, err := g.projects.ListProjects(as(k, ""), &gatehousev1.ListProjectsRequest{}); err != nil {
				t.Errorf("once Clerk answers: %v (an unavailable answer must not be remembered)", err)
			}
		})
	}
}

// TestKeyOutageEndToEnd: while the JWKS cannot be fetched, a session
// signed with a key not yet cached is UNAVAILABLE with RetryInfo, again and
// again within the refetch window; sessions with a cached key keep working.
func TestKeyOutageEndToEnd(t *testing.T) { eachProtocol(t, testKeyOutageEndToEnd) }

func testKeyOutageEndToEnd(t *testing.T, via protocol) {
	const window = 300 * time.Millisecond
	g := start(t, "sqlite", func(c *config.Config) { c.JWKSRefetchInterval = window }).over(t, via)
	g.emu.AddUser(clerkemu.User{ID: "user_o"})
	cached := g.mint(t, clerkemu.Session{UserID: "user_o"})
	if _, err := g.users.GetMe(withToken(context.Background(), cached), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	// Past the window of the fetch at startup, the next unknown key id
	// fetches the JWKS, which is now down.
	time.Sleep(window)
	g.emu.SetJWKSStatus(http.StatusServiceUnavailable)
	if _, err := g.emu.RotateKeyKeepOld(); err != nil {
		t.Fatal(err)
	}
	rotated := g.mint(t, clerkemu.Session{UserID: "user_o"})
	for range 3 {
		_, err := g.users.GetMe(withToken(context.Background(), rotated), &gatehousev1.GetMeRequest{})
		wantCode(t, err, codes.Unavailable)
		if retryInfo(err) == nil {
			t.Errorf("UNAVAILABLE without RetryInfo")
		}
	}
	if _, err := g.users.GetMe(withToken(context.Background(), cached), &gatehousev1.GetMeRequest{}); err != nil {
		t.Errorf("a session with a cached key during the outage: %v", err)
	}
}

// TestHandlerFailureCausesAreLogged: a handler's failure the client sees as
// UNAVAILABLE — here the database closed under ListProjects, after auth let
// a warm session through — is one log line, the call's, with its cause.
func TestHandlerFailureCausesAreLogged(t *testing.T) {
	var logged testlog.Buffer
	g := startLogging(t, "sqlite", &logged)
	ctx := withToken(context.Background(), g.mint(t, clerkemu.Session{UserID: "user_dev"}))
	if _, err := g.users.GetMe(ctx, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err) // the session and its user are now warm
	}
	g.app.Store.Client.Close()
	before := strings.Count(logged.String(), "\n")
	_, err := g.projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
	if c := status.Code(err); c != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	// Lines about this call (background work, such as the webhook
	// records' sweep, may log its own failures meanwhile).
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(logged.String()), "\n")[before:] {
		if strings.Contains(l, "/gatehouse.v1.ProjectService/ListProjects") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("the failed call logged %d lines, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"msg":"rpc"`, `"method":"/gatehouse.v1.ProjectService/ListProjects"`, `"code":"Unavailable"`, `"cause":"`, "database is closed"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %s lacks %s", lines[0], want)
		}
	}
}

// TestAuthFailureCausesAreLogged: the cause of an authentication failure
// the client sees as INTERNAL or UNAVAILABLE — here the database closed
// under first-sight provisioning — is in the call's log line, with the
// method.
func TestAuthFailureCausesAreLogged(t *testing.T) {
	var logged testlog.Buffer
	g := startLogging(t, "sqlite", &logged)
	g.emu.AddUser(clerkemu.User{ID: "user_late"})
	tok := g.mint(t, clerkemu.Session{UserID: "user_late"})
	g.app.Store.Client.Close()
	_, err := g.users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
	if c := status.Code(err); c != codes.Internal && c != codes.Unavailable {
		t.Fatalf("got %v, want Internal or Unavailable", err)
	}
	var line string
	for _, l := range strings.Split(logged.String(), "\n") {
		if strings.Contains(l, `"msg":"rpc"`) && strings.Contains(l, `"cause"`) {
			line = l
		}
	}
	for _, want := range []string{"database is closed", `"method":"/gatehouse.v1.UserService/GetMe"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %s", line, want)
		}
	}
	if strings.Contains(logged.String(), tok) {
		t.Errorf("the log holds the token")
	}
}

// TestTrustedProxiesSplitTheBudget: behind a trusted proxy
// (GATEHOUSE_TRUSTED_PROXIES; here the tests' own 127.0.0.1), each client
// the proxy names in x-forwarded-for has its own budget of requests to
// Clerk, so one client's flood of invented credentials leaves another's
// new credential verified. Without it, both are the proxy's address, and
// share one.
func TestTrustedProxiesSplitTheBudget(t *testing.T) {
	eachProtocol(t, testTrustedProxiesSplitTheBudget)
}

func testTrustedProxiesSplitTheBudget(t *testing.T, via protocol) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			g := start(t, "sqlite", func(c *config.Config) {
				c.VerifyBurst, c.VerifyRate = 2, 0.01
				if trusted {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			}).over(t, via)
			g.emu.AddUser(clerkemu.User{ID: "user_p"})
			from := func(client, token string) context.Context {
				return metadata.AppendToOutgoingContext(as(token, ""), auth.ForwardedForKey, client)
			}

			var codesSeen []codes.Code
			for i := range 4 {
				_, err := g.projects.ListProjects(from("203.0.113.1", fmt.Sprintf("mt_%040d", i)), &gatehousev1.ListProjectsRequest{})
				codesSeen = append(codesSeen, status.Code(err))
			}
			if want := []codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.ResourceExhausted, codes.ResourceExhausted}; !slices.Equal(codesSeen, want) {
				t.Fatalf("the flooding client: %v, want %v", codesSeen, want)
			}
			key := must(g.emu.MintAPIKey(clerkemu.APIKey{Subject: "user_p"}))
			_, err := g.projects.ListProjects(from("203.0.113.2", key), &gatehousev1.ListProjectsRequest{})
			if trusted {
				if err != nil {
					t.Errorf("another client's new key behind the same proxy: %v", err)
				}
			} else {
				wantCode(t, err, codes.ResourceExhausted)
			}
		})
	}
}
