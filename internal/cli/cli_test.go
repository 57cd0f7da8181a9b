package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/cli"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
)

// runInBackground runs the gatehouse command until the test ends.
func runInBackground(t *testing.T, args []string, env map[string]string) (stdout, stderr *testlog.Buffer) {
	t.Helper()
	stdout, stderr = &testlog.Buffer{}, &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cli.Run(ctx, args, func(k string) string { return env[k] }, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gatehouse %s: %v\n%s", args[0], err, stderr)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("gatehouse %s did not stop", args[0])
		}
	})
	return stdout, stderr
}

// run runs a gatehouse command to completion and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), err
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

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// TestDevWorkflow follows the README: gatehouse dev, then tokens and
// webhooks from other commands, then calls with the printed token.
func TestDevWorkflow(t *testing.T) {
	banner, state, dir := startDev(t, nil)
	if !strings.Contains(banner, "go tool grpcurl -plaintext "+state.GRPCAddr+" list") {
		t.Errorf("banner lacks the grpcurl commands for %s:\n%s", state.GRPCAddr, banner)
	}
	printed := bannerToken(t, banner)

	conn := dial(t, state.GRPCAddr)
	users := gatehousev1.NewUserServiceClient(conn)
	projects := gatehousev1.NewProjectServiceClient(conn)
	ctx := context.Background()
	auth := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(tok))
	}

	me, err := users.GetMe(auth(printed), &gatehousev1.GetMeRequest{})
	if err != nil || me.User.Id != "user_dev" {
		t.Fatalf("GetMe with the printed token: %v, %v", me, err)
	}
	if _, err := projects.CreateProject(auth(printed), &gatehousev1.CreateProjectRequest{Name: "My first project"}); err != nil {
		t.Fatal(err)
	}
	list, err := projects.ListProjects(auth(printed), &gatehousev1.ListProjectsRequest{})
	if err != nil || len(list.Projects) != 1 || list.Projects[0].Name != "My first project" {
		t.Fatalf("ListProjects: %v, %v", list, err)
	}

	// A webhook makes alice a member of org_dev; her token then lists her.
	for _, args := range [][]string{
		{"webhook", "send", "user.created", "--user", "user_alice", "--dir", dir},
		{"webhook", "send", "--dir", dir, "organizationMembership.created", "--user", "user_alice", "--org", "org_dev"},
	} {
		if out, err := run(t, args...); err != nil || !strings.Contains(out, `"applied"`) {
			t.Fatalf("gatehouse %s: %q, %v", strings.Join(args, " "), out, err)
		}
	}
	alice, err := run(t, "token", "--dir", dir, "--user", "user_alice", "--org", "org_dev", "--role", "org:member")
	if err != nil {
		t.Fatal(err)
	}
	members, err := users.ListUsers(auth(alice), &gatehousev1.ListUsersRequest{})
	if err != nil || len(members.Users) != 1 || members.Users[0].Id != "user_alice" || members.Users[0].FirstName != "Webhook" {
		t.Fatalf("ListUsers as alice: %v, %v", members, err)
	}
	// The dev user is not a member of org_dev: not visible to alice.
	_, err = users.GetUser(auth(alice), &gatehousev1.GetUserRequest{Id: "user_dev"})
	wantCode(t, err, codes.NotFound)

	// A machine token from the running emulator reads org_dev's users.
	machine, err := run(t, "token", "--dir", dir, "--machine")
	if err != nil || !strings.HasPrefix(machine, "mt_") {
		t.Fatalf("token --machine: %q, %v", machine, err)
	}
	mctx := metadata.AppendToOutgoingContext(auth(machine), "x-gatehouse-tenant", "org_dev")
	if got, err := users.ListUsers(mctx, &gatehousev1.ListUsersRequest{}); err != nil || len(got.Users) != 1 {
		t.Fatalf("machine ListUsers: %v, %v", got, err)
	}
	_, err = projects.CreateProject(mctx, &gatehousev1.CreateProjectRequest{Name: "by a machine"})
	wantCode(t, err, codes.PermissionDenied)
}

func TestDevRefusesNonLoopback(t *testing.T) {
	_, err := run(t, "dev", "--dir", t.TempDir(), "--grpc", "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dev on 0.0.0.0: %v", err)
	}
}

// TestServeNetworkless runs `gatehouse serve` with CLERK_JWT_KEY and no
// secret key: tokens verify with no Backend API, users are created from the
// token alone, and machine tokens are refused.
func TestServeNetworkless(t *testing.T) {
	emu, err := clerkemu.New(clerkemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := runInBackground(t, []string{"serve"}, map[string]string{
		"DATABASE_URL":                 filepath.Join(t.TempDir(), "g.db"),
		"GATEHOUSE_GRPC_ADDR":          "127.0.0.1:0",
		"GATEHOUSE_HTTP_ADDR":          "127.0.0.1:0",
		"CLERK_JWT_KEY":                emu.PublicKeyPEM(),
		"CLERK_ISSUER":                 emu.Issuer(),
		"CLERK_WEBHOOK_SIGNING_SECRET": emu.WebhookSecret(),
	})
	var listening struct {
		Msg  string `json:"msg"`
		GRPC string `json:"grpc"`
	}
	waitFor(t, "the listening log line", func() bool {
		for _, line := range strings.Split(stderr.String(), "\n") {
			if json.Unmarshal([]byte(line), &listening) == nil && listening.Msg == "gatehouse listening" {
				return true
			}
		}
		return false
	})
	users := gatehousev1.NewUserServiceClient(dial(t, listening.GRPC))
	tok, err := emu.MintSession(clerkemu.Session{UserID: "user_offline"})
	if err != nil {
		t.Fatal(err)
	}
	me, err := users.GetMe(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok), &gatehousev1.GetMeRequest{})
	if err != nil || me.User.Id != "user_offline" {
		t.Fatalf("GetMe: %v, %v", me, err)
	}
	machine := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer mt_0123456789abcdef", "x-gatehouse-tenant", "org_x")
	_, err = users.ListUsers(machine, &gatehousev1.ListUsersRequest{})
	wantCode(t, err, codes.Unauthenticated)
	if strings.Contains(stderr.String(), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Error("the log contains the token's signature")
	}
}

func TestServeListsEveryConfigProblem(t *testing.T) {
	var stderr bytes.Buffer
	err := cli.Run(context.Background(), []string{"serve"}, func(k string) string {
		return map[string]string{"GATEHOUSE_LOG_FORMAT": "xml", "DATABASE_URL": "mysql://x"}[k]
	}, &stderr, &stderr)
	if err == nil {
		t.Fatal("serve started without configuration")
	}
	for _, v := range []string{"CLERK_SECRET_KEY", "CLERK_ISSUER", "CLERK_WEBHOOK_SIGNING_SECRET", "GATEHOUSE_LOG_FORMAT", "DATABASE_URL"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s:\n%v", v, err)
		}
	}
}

func TestMigrateAndVersion(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), []string{"migrate"}, func(k string) string {
		if k == "DATABASE_URL" {
			return db
		}
		return ""
	}, &stdout, &stderr)
	if err != nil || !strings.Contains(stdout.String(), "migrated sqlite3") {
		t.Fatalf("migrate: %q, %v", stdout.String(), err)
	}
	if out, err := run(t, "version"); err != nil || !strings.HasPrefix(out, "gatehouse ") {
		t.Fatalf("version: %q, %v", out, err)
	}
	if _, err := run(t, "frobnicate"); err == nil {
		t.Fatal("unknown command succeeded")
	}
}
