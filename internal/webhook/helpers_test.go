package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// newSecret returns a fresh Svix signing secret.
func newSecret() string {
	key := make([]byte, 24)
	rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// endpoint is a Receiver on a test HTTP server.
type endpoint struct {
	t        *testing.T
	receiver *Receiver
	url      string
	secret   string
	logs     *testlog.Buffer
}

// newEndpoint serves a Receiver on st with secret at a test server.
func newEndpoint(t *testing.T, st *store.Store, secret string) *endpoint {
	t.Helper()
	logs := &testlog.Buffer{}
	r, err := New(Config{
		Client:  st.Client,
		Dialect: st.Dialect,
		Secret:  secret,
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/clerk", r)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("receiver log:\n%s", logs)
		}
	})
	return &endpoint{t: t, receiver: r, url: srv.URL + "/webhooks/clerk", secret: secret, logs: logs}
}

// answer is what a delivery got back.
type answer struct {
	Status int
	Result string
}

// deliver sends body signed now under msgID, as Svix does.
func (e *endpoint) deliver(msgID string, body []byte) answer {
	e.t.Helper()
	resp, err := clerkemu.SendWebhook(context.Background(), e.url, e.secret, msgID, body)
	if err != nil {
		e.t.Fatalf("deliver %s: %v", msgID, err)
	}
	return readAnswer(e.t, resp)
}

// do sends a prepared request.
func (e *endpoint) do(req *http.Request) answer {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return readAnswer(e.t, resp)
}

func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return answer{Status: resp.StatusCode, Result: body.Result}
}

// sample builds a fixture event or fails the test.
func sample(t *testing.T, eventType string, s clerkemu.Sample) []byte {
	t.Helper()
	b, err := clerkemu.SampleEvent(eventType, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// at is a Clerk updated_at for the tests: ms after a fixed origin.
func at(ms int64) time.Time { return time.UnixMilli(1_740_000_000_000 + ms) }

func sysctx() context.Context { return viewer.NewSystemContext(context.Background()) }

// rowCounts counts every table's rows.
func rowCounts(t *testing.T, c *ent.Client) map[string]int {
	t.Helper()
	ctx := sysctx()
	n := map[string]int{}
	var err error
	count := func(name string, f func(context.Context) (int, error)) {
		if err != nil {
			return
		}
		n[name], err = f(ctx)
	}
	count("users", c.User.Query().Count)
	count("organizations", c.Organization.Query().Count)
	count("memberships", c.Membership.Query().Count)
	count("projects", c.Project.Query().Count)
	count("webhook_events", c.WebhookEvent.Query().Count)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// openURL opens and migrates another store on an existing database, the
// way a second replica would.
func openURL(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func getUser(t *testing.T, c *ent.Client, id string) *ent.User {
	t.Helper()
	u, err := c.User.Get(sysctx(), id)
	if err != nil {
		t.Fatalf("user %s: %v", id, err)
	}
	return u
}

// seedUser inserts a user as first-sight provisioning would (a stub).
func seedUser(t *testing.T, c *ent.Client, id string) {
	t.Helper()
	now := time.Now()
	if err := c.User.Create().SetID(id).SetCreatedAt(now).SetUpdatedAt(now).Exec(sysctx()); err != nil {
		t.Fatal(err)
	}
}

// seedProject inserts a project; its id is fixed so that two databases can
// be compared.
func seedProject(t *testing.T, c *ent.Client, id, tenantID, ownerID string) {
	t.Helper()
	err := c.Project.Create().SetID(id).SetTenantID(tenantID).SetOwnerID(ownerID).SetName(id).Exec(sysctx())
	if err != nil {
		t.Fatal(err)
	}
}

func projectIDs(t *testing.T, c *ent.Client) []string {
	t.Helper()
	ids, err := c.Project.Query().IDs(sysctx())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// mirrorUser, mirrorOrg and mirrorMembership are the parts of the mirror a
// user of Gatehouse can observe. Times that depend on when a row was
// written rather than on Clerk's data (stubs, tombstones) are left out.
type mirrorUser struct {
	ID, Email, FirstName, LastName, ImageURL string
	ClerkUpdatedAt                           int64
	CreatedAt, UpdatedAt                     time.Time
	Deleted                                  bool
}

type mirrorOrg struct {
	ID, Name, Slug, ImageURL string
	ClerkUpdatedAt           int64
	CreatedAt, UpdatedAt     time.Time
	Deleted                  bool
}

type mirrorMembership struct {
	ID, TenantID, UserID, Role string
	ClerkUpdatedAt             int64
}

type mirror struct {
	Users       []mirrorUser
	Orgs        []mirrorOrg
	Memberships []mirrorMembership // live ones only
	Projects    []string
}

func dumpMirror(t *testing.T, c *ent.Client) mirror {
	t.Helper()
	ctx := sysctx()
	var m mirror
	users, err := c.User.Query().Order(ent.Asc("id")).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		mu := mirrorUser{ID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, ImageURL: u.ImageURL, Deleted: u.DeletedAt != nil}
		if !mu.Deleted && u.ClerkUpdatedAt != 0 {
			mu.ClerkUpdatedAt, mu.CreatedAt, mu.UpdatedAt = u.ClerkUpdatedAt, u.CreatedAt.UTC(), u.UpdatedAt.UTC()
		}
		m.Users = append(m.Users, mu)
	}
	orgs, err := c.Organization.Query().Order(ent.Asc("id")).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orgs {
		mo := mirrorOrg{ID: o.ID, Deleted: o.DeletedAt != nil}
		if !mo.Deleted {
			mo.Name, mo.Slug, mo.ImageURL = o.Name, o.Slug, o.ImageURL
			if o.ClerkUpdatedAt != 0 {
				mo.ClerkUpdatedAt, mo.CreatedAt, mo.UpdatedAt = o.ClerkUpdatedAt, o.CreatedAt.UTC(), o.UpdatedAt.UTC()
			}
		}
		m.Orgs = append(m.Orgs, mo)
	}
	mems, err := c.Membership.Query().Order(ent.Asc("id")).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range mems {
		if x.DeletedAt == nil {
			m.Memberships = append(m.Memberships, mirrorMembership{ID: x.ID, TenantID: x.TenantID, UserID: x.UserID, Role: x.Role, ClerkUpdatedAt: x.ClerkUpdatedAt})
		}
	}
	m.Projects = projectIDs(t, c)
	return m
}
