package app_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// cutProxy forwards TCP to a backend until Cut, which closes the listener
// and every connection, so the backend looks gone; Restore listens again on
// the same address.
type cutProxy struct {
	t       *testing.T
	addr    string
	backend string

	mu    sync.Mutex
	lis   net.Listener
	conns []net.Conn
}

func newCutProxy(t *testing.T, backend string) *cutProxy {
	t.Helper()
	p := &cutProxy{t: t, addr: "127.0.0.1:0", backend: backend}
	p.Restore()
	p.addr = p.lis.Addr().String()
	t.Cleanup(p.Cut)
	return p
}

func (p *cutProxy) Restore() {
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: %v", err)
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
}

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// startBehindCutProxy starts Gatehouse on a fresh Postgres database that it
// reaches through a cutProxy, so that the test can take the database away.
func startBehindCutProxy(t *testing.T) (*gatehouse, *cutProxy) {
	t.Helper()
	u, err := url.Parse(storetest.URL(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.addr
	return start(t, "postgres", func(c *config.Config) { c.DatabaseURL = u.String() }), proxy
}

// TestDatabaseOutage: while Postgres is unreachable, calls are UNAVAILABLE,
// /readyz says so, and a webhook is answered 503 with nothing written; when
// it is back, everything resumes, and the redelivered webhook applies.
func TestDatabaseOutage(t *testing.T) {
	g, proxy := startBehindCutProxy(t)
	ctx := context.Background()
	tok := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_o", OrgID: "org_o", OrgRole: "org:admin"}))
	if _, err := g.projects.CreateProject(tok, &gatehousev1.CreateProjectRequest{Name: "before"}); err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	_, err := g.projects.ListProjects(tok, &gatehousev1.ListProjectsRequest{})
	wantCode(t, err, codes.Unavailable)
	_, err = g.projects.CreateProject(tok, &gatehousev1.CreateProjectRequest{Name: "during"})
	wantCode(t, err, codes.Unavailable)
	if code := httpStatus(t, g.httpURL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d, want 503", code)
	}
	if code := httpStatus(t, g.httpURL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the outage: %d, want 200 (alive)", code)
	}
	body, err := clerkemu.SampleEvent(webhook.TypeOrganizationDeleted, clerkemu.Sample{OrgID: "org_o", UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	const msgID = "msg_outage1"
	if code := sendWebhook(t, g, msgID, body); code != http.StatusServiceUnavailable {
		t.Fatalf("webhook during the outage: %d, want 503", code)
	}

	proxy.Restore()
	waitFor(t, "the database to be back", func() bool { return httpStatus(t, g.httpURL+"/readyz") == http.StatusOK })
	list, err := g.projects.ListProjects(tok, &gatehousev1.ListProjectsRequest{})
	if err != nil || len(list.Projects) != 1 || list.Projects[0].Name != "before" {
		t.Fatalf("after the outage: %v, %v; want just the project made before it", list, err)
	}
	// Svix redelivers: now it applies, deleting the organization's projects.
	if code := sendWebhook(t, g, msgID, body); code != http.StatusOK {
		t.Fatalf("redelivered webhook: %d", code)
	}
	list, err = g.projects.ListProjects(tok, &gatehousev1.ListProjectsRequest{})
	if err != nil || len(list.Projects) != 0 {
		t.Fatalf("after organization.deleted: %v, %v", list, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpStatus(t *testing.T, u string) int {
	t.Helper()
	r, err := http.Get(u)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) {
			return 0
		}
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// sendWebhook delivers body to g's webhook endpoint, signed as Svix signs,
// and returns the answer's status.
func sendWebhook(t *testing.T, g *gatehouse, msgID string, body []byte) int {
	t.Helper()
	return postWebhook(t, g, msgID, body).StatusCode
}

// postWebhook is sendWebhook returning the whole answer (its body closed).
func postWebhook(t *testing.T, g *gatehouse, msgID string, body []byte) *http.Response {
	t.Helper()
	resp, err := clerkemu.SendWebhook(context.Background(), g.httpURL+"/webhooks/clerk", g.emu.WebhookSecret(), msgID, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestDatabaseOutageIsUnavailableOnEveryPath: while Postgres is unreachable,
// every path that needs it answers UNAVAILABLE with google.rpc.RetryInfo, so
// that clients retry — the handlers, the auth path's user check for a user
// seen for the first time, and its membership-role look-up — and never
// INTERNAL, which clients do not retry. (A user whose trust window runs out
// during an outage is TestPostgresKilledUnderLoad's: its outage outlasts the
// window.)
func TestDatabaseOutageIsUnavailableOnEveryPath(t *testing.T) {
	g, proxy := startBehindCutProxy(t)
	ctx := context.Background()
	known := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_known", OrgID: "org_o", OrgRole: "org:admin"}))
	if _, err := g.projects.CreateProject(known, &gatehousev1.CreateProjectRequest{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	firstSight := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_new"}))
	noRole := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_known", OrgID: "org_o"}))

	proxy.Cut()
	calls := []struct {
		name string
		call func() error
	}{
		{"ListProjects (handler)", func() error {
			_, err := g.projects.ListProjects(known, &gatehousev1.ListProjectsRequest{})
			return err
		}},
		{"CreateProject (handler)", func() error {
			_, err := g.projects.CreateProject(known, &gatehousev1.CreateProjectRequest{Name: "during"})
			return err
		}},
		{"GetMe of a user seen for the first time (auth: provisioning)", func() error {
			_, err := g.users.GetMe(firstSight, &gatehousev1.GetMeRequest{})
			return err
		}},
		{"GetMe without a role in the token (auth: membership role)", func() error {
			_, err := g.users.GetMe(noRole, &gatehousev1.GetMeRequest{})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			wantCode(t, err, codes.Unavailable)
			if retry := retryInfo(err); retry == nil || retry.RetryDelay.AsDuration() <= 0 {
				t.Errorf("UNAVAILABLE without RetryInfo: %v", err)
			}
		})
	}

	t.Run("webhook", func(t *testing.T) {
		body, err := clerkemu.SampleEvent(webhook.TypeUserUpdated, clerkemu.Sample{UserID: "user_known", UpdatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		resp := postWebhook(t, g, "", body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("webhook: %s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
		}
	})

	proxy.Restore()
	waitFor(t, "the database to be back", func() bool { return httpStatus(t, g.httpURL+"/readyz") == http.StatusOK })
	for _, c := range calls {
		if err := c.call(); err != nil {
			t.Errorf("%s after the outage: %v", c.name, err)
		}
	}
}
