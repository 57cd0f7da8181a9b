package main_test

// These tests run the gatehouse binary itself, several processes on one
// Postgres database, as replicas run in production: started at the same
// moment, and killed with SIGKILL.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// binary is the gatehouse command built for this test run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Getenv("TEST_DATABASE_URL") == "" {
			return m.Run() // the tests skip: no binary needed
		}
		dir, err := os.MkdirTemp("", "gatehouse-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "gatehouse")
		if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// clerk is the Clerk emulator the replicas share, over HTTP.
type clerk struct {
	emu *clerkemu.Emulator
	url string
}

func newClerk(t *testing.T) *clerk {
	t.Helper()
	emu, err := clerkemu.New(clerkemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	return &clerk{emu: emu, url: srv.URL + "/v1"}
}

// replica is one `gatehouse serve` process.
type replica struct {
	cmd      *exec.Cmd
	httpURL  string
	users    gatehousev1.UserServiceClient
	exited   chan struct{} // closed when the process has exited
	exitErr  error
	mu       sync.Mutex
	log      bytes.Buffer
	listened chan struct{} // closed on "gatehouse listening"
}

func (r *replica) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// serve starts `gatehouse serve` on dbURL behind c, on ports of its own
// choosing, and kills it when the test ends if it still runs.
func (c *clerk) serve(t *testing.T, dbURL string) *replica {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"GATEHOUSE_GRPC_ADDR=127.0.0.1:0",
		"GATEHOUSE_HTTP_ADDR=127.0.0.1:0",
		"CLERK_SECRET_KEY="+c.emu.SecretKey(),
		"CLERK_ISSUER="+c.emu.Issuer(),
		"CLERK_API_URL="+c.url,
		"CLERK_WEBHOOK_SIGNING_SECRET="+c.emu.WebhookSecret(),
		"GATEHOUSE_LOG_FORMAT=json",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, exited: make(chan struct{}), listened: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill() //nolint:errcheck // it may be gone already
		<-r.exited
		if t.Failed() {
			t.Logf("log of replica %d:\n%s", r.cmd.Process.Pid, r.logText())
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			r.mu.Lock()
			r.log.Write(line)
			r.log.WriteByte('\n')
			r.mu.Unlock()
			var l struct{ Msg string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "gatehouse listening" {
				close(r.listened)
			}
		}
		io.Copy(io.Discard, stderr)
		r.exitErr = cmd.Wait()
		close(r.exited)
	}()
	return r
}

// ready waits until r listens and answers /readyz, and connects to it.
func (r *replica) ready(t *testing.T) {
	t.Helper()
	select {
	case <-r.listened:
	case <-r.exited:
		t.Fatalf("replica exited before listening: %v\n%s", r.exitErr, r.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("replica not listening after 60 s:\n%s", r.logText())
	}
	var addrs struct{ GRPC, HTTP string }
	for l := range strings.Lines(r.logText()) {
		var m struct{ Msg, GRPC, HTTP string }
		if json.Unmarshal([]byte(l), &m) == nil && m.Msg == "gatehouse listening" {
			addrs.GRPC, addrs.HTTP = m.GRPC, m.HTTP
		}
	}
	r.httpURL = "http://" + addrs.HTTP
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.users = gatehousev1.NewUserServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.httpURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not ready after 30 s (%v):\n%s", err, r.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicasStartTogetherOnAnEmptyDatabase: three `gatehouse serve`
// processes started at the same moment on an empty Postgres database all come
// up and serve: the schema migration is serialized by an advisory lock, and
// no replica fails for it.
func TestReplicasStartTogetherOnAnEmptyDatabase(t *testing.T) {
	c := newClerk(t)
	dbURL := storetest.NewPostgresDatabase(t)
	replicas := []*replica{c.serve(t, dbURL), c.serve(t, dbURL), c.serve(t, dbURL)}
	for _, r := range replicas {
		r.ready(t)
	}
	for i, r := range replicas {
		tok := c.session(t, fmt.Sprintf("user_start%d", i))
		if _, err := r.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil {
			t.Errorf("replica %d: GetMe: %v", i, err)
		}
	}
}

// session returns a context carrying a session token for a user Clerk knows.
func (c *clerk) session(t *testing.T, userID string) context.Context {
	t.Helper()
	c.emu.AddUser(clerkemu.User{ID: userID, Email: userID + "@example.com", FirstName: "F" + userID})
	tok, err := c.emu.MintSession(clerkemu.Session{UserID: userID})
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// send delivers a webhook to r as Svix does: status and body.
func (c *clerk) send(ctx context.Context, r *replica, msgID string, body []byte) (int, string, error) {
	resp, err := clerkemu.SendWebhook(ctx, r.httpURL+"/webhooks/clerk", c.emu.WebhookSecret(), msgID, body)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// TestTwoReplicasAndASIGKILL: two `gatehouse serve` processes on one
// database. A change applied by A reaches B's caches within a second. Then A
// is killed (SIGKILL) in the middle of applying a delivery — its transaction
// blocked on a row lock the test holds — and Svix's redelivery to B applies
// the event exactly once.
func TestTwoReplicasAndASIGKILL(t *testing.T) {
	c := newClerk(t)
	dbURL := storetest.NewPostgresDatabase(t)
	a := c.serve(t, dbURL)
	a.ready(t)
	b := c.serve(t, dbURL)
	b.ready(t)
	ctx := context.Background()
	const userID = "user_kill"
	tok := c.session(t, userID)
	event := func(firstName string) []byte {
		body, err := clerkemu.SampleEvent(webhook.TypeUserUpdated, clerkemu.Sample{UserID: userID, FirstName: firstName, UpdatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return body
	}

	// B vouches for the user; A applies a change to it; B shows it at once.
	if _, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	if code, body, err := c.send(ctx, a, "", event("Renamed")); err != nil || code != http.StatusOK {
		t.Fatalf("user.updated on A: %d %s %v", code, body, err)
	}
	began := time.Now()
	for {
		me, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{})
		if err == nil && me.User.FirstName == "Renamed" {
			t.Logf("A's change reached B's process after %v", time.Since(began))
			break
		}
		if time.Since(began) > time.Second {
			t.Fatalf("B still shows %v, %v a second after A applied the change", me.GetUser(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Hold the user's row lock, so that A's delivery stops mid-transaction.
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback() //nolint:errcheck // released below in the normal course
	if _, err := holder.ExecContext(ctx, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", userID); err != nil {
		t.Fatal(err)
	}
	const msgID = "msg_killed_midway"
	body := event("AfterKill")
	sent := make(chan error, 1)
	go func() {
		_, _, err := c.send(ctx, a, msgID, body)
		sent <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for waiting := 0; waiting == 0; {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("A's delivery never waited for the row lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	if err := <-sent; err == nil {
		t.Fatal("the delivery to the killed replica was answered")
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}

	// Svix got no answer, so it redelivers — to B, the replica still up.
	code, answer, err := c.send(ctx, b, msgID, body)
	if err != nil || code != http.StatusOK || !strings.Contains(answer, `"applied"`) {
		t.Fatalf("redelivery to B: %d %s %v; want 200 applied (A's attempt must not have committed)", code, answer, err)
	}
	code, answer, err = c.send(ctx, b, msgID, body)
	if err != nil || code != http.StatusOK || !strings.Contains(answer, `"duplicate"`) {
		t.Fatalf("second redelivery to B: %d %s %v; want 200 duplicate", code, answer, err)
	}
	var events int
	var firstName string
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM webhook_events WHERE id = $1", msgID).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, "SELECT first_name FROM users WHERE id = $1", userID).Scan(&firstName); err != nil {
		t.Fatal(err)
	}
	if events != 1 || firstName != "AfterKill" {
		t.Errorf("after the redelivery: %d webhook_events rows for %s, first_name %q; want 1, AfterKill", events, msgID, firstName)
	}
	me, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{})
	if err != nil || me.User.FirstName != "AfterKill" {
		t.Errorf("GetMe on B after A's death: %v, %v", me.GetUser(), err)
	}
}
