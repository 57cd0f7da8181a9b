package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// outcome is one call's result: a gRPC code's name, or a webhook's HTTP
// status.
type outcome struct {
	op             string
	result         string
	began, ended   time.Time
	project, msgID string // what an OK CreateProject made; the svix-id sent
}

// loadRecorder collects the outcomes of every call a load test makes.
type loadRecorder struct {
	mu       sync.Mutex
	outcomes []outcome
}

func (r *loadRecorder) add(o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
}

func (r *loadRecorder) all() []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outcomes)
}

// count counts, per op, the outcomes begun after since that match ok.
func (r *loadRecorder) count(since time.Time, match func(outcome) bool) map[string]int {
	n := map[string]int{}
	for _, o := range r.all() {
		if !o.began.Before(since) && match(o) {
			n[o.op]++
		}
	}
	return n
}

func succeeded(o outcome) bool { return o.result == "OK" || o.result == "200" }

// TestPostgresKilledUnderLoad stops Postgres at once (-m immediate, as a
// crash or a failover does) while two replicas serve gRPC calls and
// webhooks, holds it down, and starts it again. Every call during the
// outage is UNAVAILABLE (a webhook 503) — the handlers, a first-sight user
// check, the membership role look-up — and none, at any time, is INTERNAL
// or any other code; /readyz says 503; both replicas recover without a
// restart; every project whose creation was answered OK exists; every
// webhook answered 200 is in the database, and the others, redelivered as
// Svix would, then are too; and the replicas' cache invalidations flow
// again once their listeners have reconnected.
//
// The Postgres is one of the test's own (storetest.NewCluster): stopping
// the shared one would fail other packages' tests.
func TestPostgresKilledUnderLoad(t *testing.T) {
	cluster := storetest.NewCluster(t)
	c := newClerk(t)
	// The replicas' logs, to show the cause of any call answered INTERNAL.
	var logged testlog.Buffer
	var replicas []*gatehouse
	for range 2 {
		replicas = append(replicas, c.startApp(t, c.serveConfig(cluster.URL()),
			slog.New(slog.NewJSONHandler(io.MultiWriter(&logged, testOutput(t)), nil))))
	}
	ctx := context.Background()
	adminToken := replicas[0].mint(t, clerkemu.Session{UserID: "user_admin", OrgID: "org_load", OrgRole: "org:admin"})
	admin := withToken(ctx, adminToken)
	noRoleToken := replicas[0].mint(t, clerkemu.Session{UserID: "user_norole", OrgID: "org_load"})
	httpClient := &http.Client{Timeout: 10 * time.Second}

	var firstSight, webhooks atomic.Int64
	ops := map[string]func(g *gatehouse, ctx context.Context) outcome{
		"CreateProject": func(g *gatehouse, ctx context.Context) outcome {
			resp, err := g.projects.CreateProject(withToken(ctx, adminToken), &gatehousev1.CreateProjectRequest{Name: "load"})
			o := outcome{result: status.Code(err).String()}
			if err == nil {
				o.project = resp.Project.Id
			}
			return o
		},
		"ListProjects": func(g *gatehouse, ctx context.Context) outcome {
			_, err := g.projects.ListProjects(withToken(ctx, adminToken), &gatehousev1.ListProjectsRequest{PageSize: 5})
			return outcome{result: status.Code(err).String()}
		},
		"GetMe (first sight)": func(g *gatehouse, ctx context.Context) outcome {
			id := fmt.Sprintf("user_new%d", firstSight.Add(1))
			g.emu.AddUser(clerkemu.User{ID: id})
			tok, err := g.emu.MintSession(clerkemu.Session{UserID: id})
			if err != nil {
				return outcome{result: "mint: " + err.Error()}
			}
			_, err = g.users.GetMe(withToken(ctx, tok), &gatehousev1.GetMeRequest{})
			return outcome{result: status.Code(err).String()}
		},
		"GetMe (membership role)": func(g *gatehouse, ctx context.Context) outcome {
			_, err := g.users.GetMe(withToken(ctx, noRoleToken), &gatehousev1.GetMeRequest{})
			return outcome{result: status.Code(err).String()}
		},
		"webhook": func(g *gatehouse, ctx context.Context) outcome {
			n := webhooks.Add(1)
			o := outcome{msgID: fmt.Sprintf("msg_load%d", n)}
			body, err := webhookUser(n)
			if err != nil {
				o.result = err.Error()
				return o
			}
			o.result = deliver(ctx, httpClient, g, o.msgID, body)
			return o
		},
	}

	rec := &loadRecorder{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				began := time.Now()
				o := op(replicas[i%2], callCtx)
				cancel()
				o.op, o.began, o.ended = name, began, time.Now()
				rec.add(o)
				time.Sleep(10 * time.Millisecond) // bounded load: a 2-core machine runs other tests too
			}
		})
	}
	defer func() { stopLoad(); wg.Wait() }()

	enough := func(what string, since time.Time, limit time.Duration, match func(outcome) bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			n := rec.count(since, match)
			if len(n) == len(ops) && minValue(n) >= 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v: %v; all outcomes: %v", what, limit, n, tally(rec.all()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	enough("every op succeeding before the outage", time.Time{}, 30*time.Second, succeeded)

	cluster.Stop(t)
	down := time.Now()
	enough("every op answered during the outage", down, 30*time.Second, func(outcome) bool { return true })
	// Hold the outage past the provisioner's 5 s trust window, so that the
	// users it has vouched for need the database again (on main, that was
	// where INTERNAL came from).
	for time.Since(down) < 6*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	for i, g := range replicas {
		if code := httpStatus(t, g.httpURL+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("replica %d: /readyz during the outage: %d, want 503", i, code)
		}
	}
	up := time.Now()
	cluster.Start(t)
	restarted := time.Now()
	enough("every op succeeding after the restart", restarted, 30*time.Second, succeeded)
	recovered := time.Since(restarted)
	stopLoad()
	wg.Wait()
	for i, g := range replicas {
		if code := httpStatus(t, g.httpURL+"/readyz"); code != http.StatusOK {
			t.Errorf("replica %d: /readyz after the restart: %d, want 200", i, code)
		}
	}

	// What callers saw.
	outcomes := rec.all()
	byCode := tally(outcomes)
	var bad, duringOutage []string
	for _, o := range outcomes {
		switch o.result {
		case "OK", "Unavailable", "200", "503":
		default:
			bad = append(bad, fmt.Sprintf("%s: %s", o.op, o.result))
		}
		if !o.began.Before(down) && !o.ended.After(up) && o.result != "Unavailable" && o.result != "503" {
			duringOutage = append(duringOutage, fmt.Sprintf("%s: %s", o.op, o.result))
		}
	}
	var inOutage []outcome
	for _, o := range outcomes {
		if !o.began.Before(down) && !o.ended.After(up) {
			inOutage = append(inOutage, o)
		}
	}
	t.Logf("outage %v; all ops succeeding again %v after the restart", up.Sub(down).Round(time.Millisecond), recovered.Round(time.Millisecond))
	t.Logf("outcomes during the outage: %v", tally(inOutage))
	t.Logf("outcomes in all: %v", byCode)
	if len(bad) > 0 {
		t.Errorf("%d calls answered neither OK nor UNAVAILABLE (webhooks: 200 or 503), e.g. %v", len(bad), bad[:min(len(bad), 10)])
		for _, line := range strings.Split(logged.String(), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"code":"Internal"`) {
				t.Log(line)
			}
		}
	}
	if len(duringOutage) > 0 {
		t.Errorf("%d calls made wholly during the outage were answered other than UNAVAILABLE/503, e.g. %v", len(duringOutage), duringOutage[:min(len(duringOutage), 10)])
	}

	// No wrong answer: every project whose creation was answered OK exists.
	listed := map[string]bool{}
	for token := ""; ; {
		resp, err := replicas[1].projects.ListProjects(admin, &gatehousev1.ListProjectsRequest{PageSize: 200, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Projects {
			listed[p.Id] = true
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	for _, o := range outcomes {
		if o.op == "CreateProject" && o.result == "OK" && !listed[o.project] {
			t.Errorf("project %s, created OK, is missing", o.project)
		}
	}

	// Every webhook answered 200 is in the database; the others are once
	// Svix has redelivered them.
	db, err := sql.Open("postgres", cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	applied := appliedWebhooks(t, db)
	redelivered := 0
	for _, o := range outcomes {
		if o.op != "webhook" {
			continue
		}
		if o.result == "200" {
			if !applied[o.msgID] {
				t.Errorf("webhook %s was answered 200 but is not in the database", o.msgID)
			}
			continue
		}
		var n int64
		fmt.Sscanf(o.msgID, "msg_load%d", &n)
		body, err := webhookUser(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := deliver(ctx, httpClient, replicas[1], o.msgID, body); got != "200" {
			t.Errorf("redelivery of %s: %s", o.msgID, got)
		}
		redelivered++
	}
	applied = appliedWebhooks(t, db)
	for _, o := range outcomes {
		if o.op == "webhook" && !applied[o.msgID] {
			t.Errorf("webhook %s is not in the database after redelivery", o.msgID)
		}
	}
	t.Logf("%d webhooks answered 200, %d redelivered after the outage", len(applied)-redelivered, redelivered)

	// Cache invalidations flow again: B listens anew (its caches reset
	// then), vouches for a user, and then sees A's change to it at once.
	a, b := replicas[0], replicas[1]
	waitFor(t, "B to listen for invalidations again", func() bool {
		return strings.Contains(get(t, b.httpURL+"/metrics"), "gatehouse_cache_listener_connected 1")
	})
	tok := withToken(ctx, b.mint(t, clerkemu.Session{UserID: "user_after"}))
	if _, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	body, err := clerkemu.SampleEvent(webhook.TypeUserUpdated, clerkemu.Sample{UserID: "user_after", FirstName: "Renamed", UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if code := sendWebhook(t, a, "", body); code != http.StatusOK {
		t.Fatalf("user.updated on A: %d", code)
	}
	took := within(t, time.Second, "B to show the change applied on A after the restart", func() bool {
		me, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{})
		return err == nil && me.User.FirstName == "Renamed"
	})
	t.Logf("after the restart, a change on A reached B in %v", took)
}

// webhookUser is the n-th load webhook: user.created for user_wh<n>.
func webhookUser(n int64) ([]byte, error) {
	return clerkemu.SampleEvent(webhook.TypeUserCreated, clerkemu.Sample{
		UserID: fmt.Sprintf("user_wh%d", n), FirstName: fmt.Sprintf("Load %d", n), UpdatedAt: time.Now(),
	})
}

// deliver posts a signed webhook as Svix does and returns the HTTP status,
// or the transport error.
func deliver(ctx context.Context, client *http.Client, g *gatehouse, msgID string, body []byte) string {
	req, err := clerkemu.NewWebhookRequest(ctx, g.httpURL+"/webhooks/clerk", g.emu.WebhookSecret(), msgID, time.Now(), body)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "transport error: " + err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

// appliedWebhooks returns the svix-ids recorded whose effect — the user
// row — is there too.
func appliedWebhooks(t *testing.T, db *sql.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query(`SELECT e.id FROM webhook_events e JOIN users u ON u.id = e.object_id
		WHERE e.id LIKE 'msg_load%' AND u.first_name LIKE 'Load %'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// tally counts outcomes by op and result.
func tally(outcomes []outcome) map[string]map[string]int {
	byCode := map[string]map[string]int{}
	for _, o := range outcomes {
		if byCode[o.op] == nil {
			byCode[o.op] = map[string]int{}
		}
		byCode[o.op][o.result]++
	}
	return byCode
}

func minValue(m map[string]int) int {
	vs := make([]int, 0, len(m))
	for _, v := range m {
		vs = append(vs, v)
	}
	sort.Ints(vs)
	return vs[0]
}
