package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// TestRunCount drives 200 health checks against an in-process gRPC server
// and checks that every one is counted, with sane latencies and this
// process's CPU read from /proc.
func TestRunCount(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	conns, err := DialGRPC(lis.Addr().String(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseAll(conns) })
	call, err := (&Target{Conns: conns}).NewCall(Health)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(t.Context(), Options{
		Name: Health, Concurrency: 4, Warmup: 50 * time.Millisecond, Requests: 200,
		Duration: 20 * time.Second, ServerPID: os.Getpid(),
	}, call)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 200 || r.Errors != 0 {
		t.Fatalf("Run: %d requests, %d errors (%v); want 200, 0", r.Requests, r.Errors, r.ErrorKinds)
	}
	if !(0 < r.P50 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max) {
		t.Errorf("percentiles out of order: p50 %v p90 %v p99 %v max %v", r.P50, r.P90, r.P99, r.Max)
	}
	if r.RPS <= 0 || r.ServerPeakRSS <= 0 {
		t.Errorf("RPS %v, peak RSS %d: want both positive", r.RPS, r.ServerPeakRSS)
	}
}

// TestRunCountsFailures checks that failed calls are tallied by kind, not
// dropped.
func TestRunCountsFailures(t *testing.T) {
	r, err := Run(t.Context(), Options{Concurrency: 3, Requests: 90}, func(_ context.Context, seq int64) error {
		if seq%3 == 0 {
			return &HTTPStatusError{Code: 401}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 90 || r.Errors != 30 {
		t.Errorf("%d requests, %d errors; want 90, 30", r.Requests, r.Errors)
	}
	if diff := cmp.Diff(map[string]int64{"HTTP 401": 30}, r.ErrorKinds); diff != "" {
		t.Errorf("error kinds (-want +got):\n%s", diff)
	}
}

// TestRunStop checks that closing Options.Stop ends the window without
// cancelling the requests in flight: each call checks its context after
// its work, when the window may have closed meanwhile.
func TestRunStop(t *testing.T) {
	stop := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(stop) })
	var calls, cancelled atomic.Int64
	r, err := Run(t.Context(), Options{Concurrency: 2, Stop: stop}, func(ctx context.Context, _ int64) error {
		calls.Add(1)
		time.Sleep(5 * time.Millisecond)
		if err := ctx.Err(); err != nil {
			cancelled.Add(1)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The timer started before Run did, so the window is at most 100 ms,
	// and less on a busy machine.
	if r.Requests == 0 || r.Errors != 0 || r.Elapsed > 5*time.Second {
		t.Errorf("%d requests, %d errors %v in %v; want some, none, about 100ms", r.Requests, r.Errors, r.ErrorKinds, r.Elapsed)
	}
	if n := cancelled.Load(); n != 0 {
		t.Errorf("%d of %d calls found their context cancelled; want none", n, calls.Load())
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {0.5, 1}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

func TestRequireLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:50051":       true,
		"localhost:1":           true,
		"[::1]:8080":            true,
		"http://127.0.0.1:8090": true,
		"10.0.0.1:50051":        false,
		"https://api.clerk.com": false,
		"example.com:443":       false,
	} {
		if err := RequireLoopback(addr); (err == nil) != ok {
			t.Errorf("RequireLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

// TestPeer checks the peer behaves as the comparison needs: a genuine
// token reads the user through ent; no token, or a token with a key id
// the JWKS does not have, is 401 after one JWKS fetch per request. A
// machine token is verified with the Backend API on every request: a
// genuine one answers its machine; an invented or revoked one is 401.
func TestPeer(t *testing.T) {
	ctx := t.Context()
	emu, err := clerkemu.New(clerkemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clerkSrv := httptest.NewServer(emu.Handler())
	t.Cleanup(clerkSrv.Close)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "peer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := st.Client.User.Create().SetID("user_peer").SetEmail("peer@example.com").
		SetCreatedAt(now).SetUpdatedAt(now).Save(viewer.NewSystemContext(ctx)); err != nil {
		t.Fatal(err)
	}
	h, err := NewPeer(PeerConfig{Client: st.Client, APIURL: clerkSrv.URL + "/v1", SecretKey: emu.SecretKey()})
	if err != nil {
		t.Fatal(err)
	}
	peer := httptest.NewServer(h)
	t.Cleanup(peer.Close)

	get := func(token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, peer.URL+"/me", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body json.RawMessage
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	good, err := emu.MintSession(clerkemu.Session{UserID: "user_peer"})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(good)
	var me peerMe
	json.Unmarshal(body, &me)
	if code != http.StatusOK || me.User.ID != "user_peer" || me.User.Email != "peer@example.com" || me.Session.TenantID != "user_peer" {
		t.Fatalf("GET /me with a genuine token: %d %s", code, body)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("GET /me without a token: %d, want 401", code)
	}

	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	before := emu.JWKSFetches()
	for range 3 {
		forged, err := emu.MintSession(clerkemu.Session{UserID: "user_peer", KeyID: "ins_" + rand.Text(), SigningKey: forger})
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := get(forged); code != http.StatusUnauthorized {
			t.Errorf("GET /me with a forged kid: %d, want 401", code)
		}
	}
	if got := emu.JWKSFetches() - before; got != 3 {
		t.Errorf("the peer fetched the JWKS %d times for 3 unknown kids; want 3 (one per request, as clerk-sdk-go does)", got)
	}

	machine, err := emu.MintMachineToken(clerkemu.Machine{ID: "mch_peer"})
	if err != nil {
		t.Fatal(err)
	}
	getMachine := func(token string) (int, peerMachine) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, peer.URL+"/machine", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m peerMachine
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	before = emu.MachineVerifies()
	for range 2 {
		if code, m := getMachine(machine); code != http.StatusOK || m.ID != "mch_peer" {
			t.Errorf("GET /machine with a genuine machine token: %d %+v", code, m)
		}
	}
	if code, _ := getMachine("mt_" + rand.Text()); code != http.StatusUnauthorized {
		t.Errorf("GET /machine with an invented machine token: %d, want 401", code)
	}
	emu.RevokeMachineToken(machine)
	if code, _ := getMachine(machine); code != http.StatusUnauthorized {
		t.Errorf("GET /machine with a revoked machine token: %d, want 401", code)
	}
	if got := emu.MachineVerifies() - before; got != 4 {
		t.Errorf("the peer verified machine tokens %d times in 4 requests; want 4 (every request, as m2m_token.Verify does)", got)
	}
}

// TestHTTPScenarios runs GetMe over each of the HTTP listener's protocols,
// over HTTP/1.1 and over h2c, against an in-process Gatehouse: every call
// succeeds with a good token, and every one fails with a bad one (so the
// scenarios see failures), tallied as the protocol reports it.
func TestHTTPScenarios(t *testing.T) {
	st, err := startStack(t.Context(), "", nil, time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	// Cleanups run last first: the clients' idle connections close before
	// the server shuts down. Shutdown would otherwise wait 5 s for any
	// connection the HTTP/1.1 transport dialed but never used.
	clients := map[string]*http.Client{"HTTP/1.1": NewHTTPClient(4), "h2c": NewH2CClient()}
	for _, c := range clients {
		t.Cleanup(c.CloseIdleConnections)
	}
	token, err := st.emu.MintSession(clerkemu.Session{UserID: "user_httpbench"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for _, scenario := range []string{GetMeConnect, GetMeGRPCWeb, GetMeREST} {
		badKind := "HTTP 401"
		if scenario == GetMeGRPCWeb {
			badKind = "Unauthenticated"
		}
		for proto, client := range clients {
			for _, tt := range []struct {
				token string
				kinds map[string]int64
			}{{token, nil}, {"not-a-token", map[string]int64{badKind: n}}} {
				target := &Target{GatehouseURL: "http://" + st.app.HTTPAddr.String(), GatehouseHTTP: client, Tokens: []string{tt.token}}
				call, err := target.NewCall(scenario)
				if err != nil {
					t.Fatal(err)
				}
				r, err := Run(t.Context(), Options{Name: scenario, Concurrency: 4, Requests: n, Duration: 20 * time.Second}, call)
				if err != nil {
					t.Fatal(err)
				}
				if r.Requests != n || !maps.Equal(r.ErrorKinds, tt.kinds) {
					t.Errorf("%s over %s with token %.10s…: %d requests, errors %v; want %d, %v", scenario, proto, tt.token, r.Requests, r.ErrorKinds, n, tt.kinds)
				}
			}
		}
	}
}

// TestFlood sends a small flood of invented opaque credentials to an
// in-process Gatehouse and peer. Gatehouse asks Clerk about no more of them
// than its budget allows one address, refuses every one (UNAUTHENTICATED or
// RESOURCE_EXHAUSTED), and its callers already verified see no error and
// cost no call; the peer asks Clerk about every one, so the comparison is
// real.
func TestFlood(t *testing.T) {
	const n = 300
	r, err := Flood(t.Context(), FloodOptions{Requests: n, Concurrency: 20, Background: 2, Baseline: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g, p := r.Gatehouse, r.Peer
	if g.Flood.Requests != n || g.Flood.Errors != 0 || g.Unauthenticated+g.ResourceExhausted != n {
		t.Errorf("gatehouse flood: %d requests, %d unexpected answers %v, %d UNAUTHENTICATED + %d RESOURCE_EXHAUSTED; want %d, all refused",
			g.Flood.Requests, g.Flood.Errors, g.Flood.ErrorKinds, g.Unauthenticated, g.ResourceExhausted, n)
	}
	// The invented credentials pass the shape check, reach Clerk and are
	// refused there: one verify call per UNAUTHENTICATED.
	if g.FloodVerifies == 0 || g.FloodVerifies != g.Unauthenticated {
		t.Errorf("gatehouse: %d verify calls for invented credentials, %d UNAUTHENTICATED; want equal and not 0", g.FloodVerifies, g.Unauthenticated)
	}
	const slack = 2
	if float64(g.Verifies.Total) > g.Bound+slack {
		t.Errorf("gatehouse made %d verify calls in %v; its budget (%d + %v/s) allows %.1f", g.Verifies.Total, g.Flood.Elapsed, r.VerifyBurst, r.VerifyRate, g.Bound)
	}
	if g.BaselineVerifies != 0 || g.BackgroundVerifies != 0 {
		t.Errorf("gatehouse's cached background made %d verify calls alone, %d during the flood; want 0", g.BaselineVerifies, g.BackgroundVerifies)
	}

	machines := n/3 + min(n%3, 1)
	if p.Flood.Requests != int64(machines) || p.Flood.Errors != 0 || p.Unauthenticated != int64(machines) {
		t.Errorf("peer flood: %d requests, %d unexpected answers %v, %d 401; want %d, all 401", p.Flood.Requests, p.Flood.Errors, p.Flood.ErrorKinds, p.Unauthenticated, machines)
	}
	if p.FloodVerifies != int64(machines) || p.Verifies.APIKey+p.Verifies.OAuth != 0 {
		t.Errorf("peer: %d verify calls for %d invented machine tokens (%+v); want one each, all machine", p.FloodVerifies, machines, p.Verifies)
	}
	if p.BackgroundVerifies < p.During.Machine.Requests || p.BaselineVerifies < p.Baseline.Machine.Requests {
		t.Errorf("peer background: %d verify calls for %d machine requests beside the flood, %d for %d alone; want one per request at least",
			p.BackgroundVerifies, p.During.Machine.Requests, p.BaselineVerifies, p.Baseline.Machine.Requests)
	}

	for _, bg := range []BackgroundRuns{g.Baseline, g.During, p.Baseline, p.During} {
		for _, run := range []*Result{bg.Session, bg.Machine} {
			if run.Requests == 0 || run.Errors != 0 {
				t.Errorf("background %s: %d requests, %d errors %v; want some, none", run.Name, run.Requests, run.Errors, run.ErrorKinds)
			}
		}
	}
}

// TestLoadTargetHTTP2 checks that load's -http2 moves the getme-* scenarios
// to h2c and leaves the peer, whose server does not accept h2c, on
// HTTP/1.1.
func TestLoadTargetHTTP2(t *testing.T) {
	// A stand-in for Gatehouse's HTTP listener that serves HTTP/1.1 and
	// h2c and answers 200 only over HTTP/2.
	gatehouse := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			w.WriteHeader(http.StatusHTTPVersionNotSupported)
		}
	}))
	gatehouse.Config.Protocols = new(http.Protocols)
	gatehouse.Config.Protocols.SetHTTP1(true)
	gatehouse.Config.Protocols.SetUnencryptedHTTP2(true)
	gatehouse.Start()
	t.Cleanup(gatehouse.Close)
	// The peer's server, as runPeer makes it: net/http's defaults.
	peer := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(peer.Close)

	target := loadTarget(gatehouse.Listener.Addr().String(), peer.URL, 2, true)
	target.Tokens = []string{"token"}
	t.Cleanup(target.HTTP.CloseIdleConnections)
	t.Cleanup(target.GatehouseHTTP.CloseIdleConnections)
	for _, scenario := range []string{GetMeREST, PeerGetMe} {
		call, err := target.NewCall(scenario)
		if err != nil {
			t.Fatal(err)
		}
		if err := call(t.Context(), 0); err != nil {
			t.Errorf("%s with -http2: %v", scenario, err)
		}
	}
}

// TestDoGRPCWeb checks how gRPC-Web answers are read: OK, in a
// trailers-only answer or a trailer frame, is success; any other status is
// the gRPC error it stands for, tallied by its code as the gRPC scenarios'
// errors are.
func TestDoGRPCWeb(t *testing.T) {
	frame := func(flags byte, payload string) string {
		var b []byte
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
		return string(append(b, payload...))
	}
	message := frame(0, "\x0a\x03abc") // any message frame
	for _, tc := range []struct {
		name    string
		header  http.Header
		body    string
		code    codes.Code // OK: no error
		message string
		kind    string // the tally's name for the error
	}{
		{name: "trailers-only OK", header: http.Header{"Grpc-Status": {"0"}}, code: codes.OK},
		{name: "trailers-only error", header: http.Header{"Grpc-Status": {"16"}, "Grpc-Message": {"no%20token"}},
			code: codes.Unauthenticated, message: "no token", kind: "Unauthenticated"},
		{name: "trailer frame OK", body: message + frame(0x80, "grpc-status: 0\r\n"), code: codes.OK},
		{name: "trailer frame error", body: frame(0x80, "Grpc-Message: nope\r\ngrpc-status:7\r\n"),
			code: codes.PermissionDenied, message: "nope", kind: "PermissionDenied"},
		{name: "no status", body: message, code: codes.Unknown, kind: "grpc-web: no grpc-status in the answer"},
		{name: "bad status", header: http.Header{"Grpc-Status": {"x"}}, code: codes.Unknown, kind: `grpc-web: bad grpc-status "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/grpc-web+proto")
				io.WriteString(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
			err := doGRPCWeb(srv.Client(), req)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("doGRPCWeb: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("doGRPCWeb: nil, want an error")
			}
			if got := errorKind(err); got != tc.kind {
				t.Errorf("error kind %q, want %q", got, tc.kind)
			}
			if tc.kind == tc.code.String() {
				if s := status.Convert(err); s.Code() != tc.code || s.Message() != tc.message {
					t.Errorf("doGRPCWeb: %v, want code %v, message %q", err, tc.code, tc.message)
				}
			}
		})
	}
}
