package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// users is a UserService whose GetMe panics, blocks, or answers, by the
// request's metadata.
type users struct {
	gatehousev1.UnimplementedUserServiceServer
	entered chan struct{}
	release chan struct{}
}

func (u *users) GetMe(ctx context.Context, _ *gatehousev1.GetMeRequest) (*gatehousev1.GetMeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch strings.Join(md.Get("mode"), "") {
	case "panic":
		panic("boom")
	case "block":
		close(u.entered)
		<-u.release
	}
	p, _ := viewer.FromContext(ctx)
	return &gatehousev1.GetMeResponse{User: &gatehousev1.User{Id: p.ID()}}, nil
}

type projects struct {
	gatehousev1.UnimplementedProjectServiceServer
}

// fakeAuth lets every call in as user_test — this package tests the
// server's plumbing, not authentication — except in mode "auth-down", where
// it fails as auth does when the database is down, and "auth-refused",
// where it refuses an expired token.
func fakeAuth() server.Interceptors {
	p := &viewer.Principal{Kind: viewer.KindUser, Subject: "user_test", TenantID: "user_test"}
	return server.Interceptors{
		Unary: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			switch md, _ := metadata.FromIncomingContext(ctx); strings.Join(md.Get("mode"), "") {
			case "auth-down":
				return nil, &authError{codes.Unavailable, "authentication unavailable: store_unavailable",
					errors.New("look up user_test: dial tcp 10.0.0.5:5432: connect: connection refused"), true}
			case "auth-refused":
				return nil, &authError{codes.Unauthenticated, "invalid token: expired", errors.New("token expired at 10:00:00"), false}
			}
			return h(viewer.NewContext(ctx, p), req)
		},
		Stream: func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, ss)
		},
	}
}

// authError is shaped like auth.Error: a status for the client, and a
// cause, for the log only when hidden from the client.
type authError struct {
	code   codes.Code
	msg    string
	cause  error
	hidden bool
}

func (e *authError) Error() string              { return e.msg }
func (e *authError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }
func (e *authError) Unwrap() error              { return e.cause }
func (e *authError) HiddenCause() error {
	if e.hidden {
		return e.cause
	}
	return nil
}

func passThrough() server.Interceptors {
	return server.Interceptors{
		Unary: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(ctx, req)
		},
		Stream: func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, ss)
		},
	}
}

type running struct {
	client   gatehousev1.UserServiceClient
	grpcAddr string
	httpURL  string
	logs     *testlog.Buffer
	users    *users
	stop     func() error
}

func serve(t *testing.T, ready error) *running {
	t.Helper()
	logs := &testlog.Buffer{}
	u := &users{entered: make(chan struct{}), release: make(chan struct{})}
	srv, err := server.New(server.Options{
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
		Registry: prometheus.NewRegistry(),
		Auth:     fakeAuth(),
		Errors:   passThrough(),
		Users:    u,
		Projects: projects{},
		Webhooks: http.NotFoundHandler(),
		ReadyChecks: map[string]func(context.Context) error{
			"database": func(context.Context) error { return ready },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeGRPC(ctx, grpcLis) }()
	go func() { errc <- srv.ServeHTTP(ctx, httpLis) }()
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return errors.Join(<-errc, <-errc)
	}
	t.Cleanup(func() {
		conn.Close()
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &running{
		client: gatehousev1.NewUserServiceClient(conn), grpcAddr: grpcLis.Addr().String(),
		httpURL: "http://" + httpLis.Addr().String(),
		logs:    logs, users: u, stop: stop,
	}
}

func call(ctx context.Context, r *running, mode string) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "mode", mode, "authorization", "Bearer secret-token-text")
	_, err := r.client.GetMe(ctx, &gatehousev1.GetMeRequest{})
	return err
}

func TestPanicBecomesInternal(t *testing.T) {
	r := serve(t, nil)
	err := call(context.Background(), r, "panic")
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("panicking handler: %v, want Internal \"internal error\"", err)
	}
	// One log line, the call's, with the panic and where it happened.
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.logs.String())), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", r.logs.String(), err)
	}
	if cause, _ := line["cause"].(string); line["level"] != "ERROR" || line["code"] != "Internal" ||
		!strings.HasPrefix(cause, "panic: boom\n") || !strings.Contains(cause, "server_test.go") {
		t.Errorf("log line %v: want ERROR, Internal, the panic and its stack", line)
	}
	// The server survives it.
	if err := call(context.Background(), r, ""); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
}

func TestOneLogLinePerCall(t *testing.T) {
	r := serve(t, nil)
	if err := call(context.Background(), r, ""); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "rpc" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d rpc log lines, want 1:\n%s", len(lines), r.logs)
	}
	l := lines[0]
	if l["method"] != "/gatehouse.v1.UserService/GetMe" || l["protocol"] != "grpc" || l["code"] != "OK" || l["principal"] != "user_test" || l["duration"] == nil {
		t.Errorf("log line %v: want method, code OK, principal user_test, duration", l)
	}
	if strings.Contains(r.logs.String(), "secret-token-text") {
		t.Error("the log contains the token")
	}
}

// TestAuthFailureIsLoggedWithItsCause: a call the auth interceptor fails
// as UNAVAILABLE (or INTERNAL) is logged with the cause the client is not
// shown, so that an operator can tell why.
func TestAuthFailureIsLoggedWithItsCause(t *testing.T) {
	r := serve(t, nil)
	err := call(context.Background(), r, "auth-down")
	if st := status.Convert(err); st.Code() != codes.Unavailable || strings.Contains(st.Message(), "10.0.0.5") {
		t.Fatalf("call: %v, want UNAVAILABLE without the cause", err)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "rpc" {
			line = m
		}
	}
	if cause, _ := line["cause"].(string); !strings.Contains(cause, "connection refused") {
		t.Errorf("rpc log line %v: want the cause", line)
	}
	if n := strings.Count(r.logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines for the call, want 1:\n%s", n, r.logs.String())
	}
}

// TestRefusalIsLoggedWithoutCause: a refusal's reason is the client's to
// see; the log line has the code and message, and no cause.
func TestRefusalIsLoggedWithoutCause(t *testing.T) {
	r := serve(t, nil)
	if err := call(context.Background(), r, "auth-refused"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("call: %v, want UNAUTHENTICATED", err)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.logs.String())), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", r.logs.String(), err)
	}
	if line["code"] != "Unauthenticated" || line["error"] != "invalid token: expired" || line["cause"] != nil {
		t.Errorf("rpc log line %v: want the code and message, no cause", line)
	}
}

func TestReadyz(t *testing.T) {
	for _, tt := range []struct {
		check error
		want  int
	}{{nil, http.StatusOK}, {errors.New("unreachable"), http.StatusServiceUnavailable}} {
		r := serve(t, tt.check)
		resp, err := http.Get(r.httpURL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("/readyz with check error %v: %d, want %d", tt.check, resp.StatusCode, tt.want)
		}
	}
}

// TestShutdownDrainsInFlightCalls: a call running when the server is told to
// stop completes; the server then stops.
func TestShutdownDrainsInFlightCalls(t *testing.T) {
	r := serve(t, nil)
	result := make(chan error, 1)
	go func() { result <- call(context.Background(), r, "block") }()
	<-r.users.entered
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case <-stopped:
		t.Fatal("server stopped with a call in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(r.users.release)
	if err := <-result; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop after draining")
	}
}

// TestHTTPCallsSeeTheCallersAddress: a call over the HTTP listener carries
// the caller's own address to the interceptors (peer.FromContext), as one
// over gRPC does, so limits per caller address hold on every protocol.
func TestHTTPCallsSeeTheCallersAddress(t *testing.T) {
	peers := make(chan *peer.Peer, 1)
	auth := server.Interceptors{
		Unary: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			peers <- p
			return nil, status.Error(codes.Unauthenticated, "no")
		},
		Stream: passThrough().Stream,
	}
	srv, err := server.New(server.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(),
		Auth: auth, Errors: passThrough(), Users: &users{}, Projects: projects{}, Webhooks: http.NotFoundHandler(),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeHTTP(ctx, lis) }()
	defer func() { cancel(); <-done }()

	for _, tt := range []struct {
		name, method, path, contentType string
		body                            []byte
	}{
		{"Connect", "POST", "/gatehouse.v1.UserService/GetMe", "application/json", []byte("{}")},
		{"gRPC-Web", "POST", "/gatehouse.v1.UserService/GetMe", "application/grpc-web+proto", []byte{0, 0, 0, 0, 0}},
		{"REST", "GET", "/v1/me", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Each request on a fresh connection whose local address
			// (the caller's, as the server sees it) is recorded.
			var local net.Addr
			client := &http.Client{Transport: &http.Transport{
				DisableKeepAlives: true,
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					if err == nil {
						local = c.LocalAddr()
					}
					return c, err
				},
			}}
			req, _ := http.NewRequest(tt.method, "http://"+lis.Addr().String()+tt.path, bytes.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			var p *peer.Peer
			select {
			case p = <-peers:
			case <-time.After(5 * time.Second):
				t.Fatalf("the call did not reach the interceptors (HTTP %d)", resp.StatusCode)
			}
			if p == nil || p.Addr == nil {
				t.Fatal("no peer in the context")
			}
			if p.Addr.String() != local.String() || p.Addr.Network() != "tcp" {
				t.Errorf("peer %s/%s, want the caller's %s/tcp", p.Addr.Network(), p.Addr, local)
			}
		})
	}
}

// TestShutdownDrainsInFlightHTTPCalls: a call over the HTTP listener (here
// Connect) running when the server is told to stop completes too, though
// it is a gRPC call on the server that is stopping.
func TestShutdownDrainsInFlightHTTPCalls(t *testing.T) {
	r := serve(t, nil)
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", r.httpURL+"/gatehouse.v1.UserService/GetMe", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mode", "block")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b), err}
	}()
	<-r.users.entered
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case <-stopped:
		t.Fatal("server stopped with a call in flight")
	case <-time.After(200 * time.Millisecond):
	}
	// While it drains, the gRPC listener takes no new connection.
	fresh, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := gatehousev1.NewUserServiceClient(fresh).GetMe(ctx, &gatehousev1.GetMeRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a new gRPC connection while draining: %v, want UNAVAILABLE (refused)", err)
	}
	close(r.users.release)
	if res := <-done; res.err != nil || res.status != http.StatusOK || !strings.Contains(res.body, "user_test") {
		t.Fatalf("in-flight call: HTTP %d %s %v", res.status, res.body, res.err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop after draining")
	}
}

// TestHeadersAreBounded: the server bounds metadata at MaxHeaderBytes —
// gRPC itself would take 16 MiB — and says so in its HTTP/2 settings, so a
// gRPC-Go client refuses to send more (other clients' streams are reset);
// the server goes on serving.
func TestHeadersAreBounded(t *testing.T) {
	r := serve(t, nil)
	big := metadata.AppendToOutgoingContext(context.Background(), "x-padding", strings.Repeat("a", server.MaxHeaderBytes))
	if err := call(big, r, ""); err == nil {
		t.Fatal("a call with more than MaxHeaderBytes of metadata succeeded")
	} else {
		t.Logf("refused: %v", err)
	}
	ok := metadata.AppendToOutgoingContext(context.Background(), "x-padding", strings.Repeat("a", server.MaxHeaderBytes/2))
	if err := call(ok, r, ""); err != nil {
		t.Fatalf("a call with half of MaxHeaderBytes of metadata: %v", err)
	}
}
