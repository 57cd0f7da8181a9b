package loadtest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/loopback"
)

// The scenarios Load knows. The gRPC ones call Gatehouse's gRPC listener;
// the getme-* ones call the same GetMe on its HTTP listener, over the
// protocols a browser or curl uses (HTTP/1.1, as browsers speak to a
// plaintext server); PeerGetMe calls the peer's GET /me.
const (
	Health        = "health"        // grpc.health.v1.Health/Check, no token
	GetMe         = "getme"         // UserService/GetMe
	ListProjects  = "listprojects"  // ProjectService/ListProjects
	CreateProject = "createproject" // ProjectService/CreateProject
	GetMeConnect  = "getme-connect" // GetMe over Connect, JSON
	GetMeGRPCWeb  = "getme-grpcweb" // GetMe over gRPC-Web, binary
	GetMeREST     = "getme-rest"    // GET /v1/me
	PeerGetMe     = "peer"          // the peer's GET /me
)

// ScenarioNames lists the scenarios in the order the help shows them.
var ScenarioNames = []string{Health, GetMe, ListProjects, CreateProject, GetMeConnect, GetMeGRPCWeb, GetMeREST, PeerGetMe}

// Target is what the scenarios call.
type Target struct {
	// Conns are gRPC connections to Gatehouse; calls spread over them.
	Conns []*grpc.ClientConn
	// GatehouseURL is Gatehouse's HTTP listener ("http://127.0.0.1:8080"),
	// for the getme-* scenarios.
	GatehouseURL string
	// PeerURL is the peer's base URL ("http://127.0.0.1:8090").
	PeerURL string
	// HTTP is the client for the peer, and for Gatehouse's HTTP listener
	// unless GatehouseHTTP is set.
	HTTP *http.Client
	// GatehouseHTTP, if set, is the client for Gatehouse's HTTP listener
	// (the getme-* scenarios), e.g. one speaking h2c, which the peer does
	// not accept.
	GatehouseHTTP *http.Client
	// Tokens are session tokens; calls take them in turn.
	Tokens []string
	// PageSize is ListProjects' page_size (0: the server's default, 50).
	PageSize int32
}

// IsPeer reports whether scenario calls the peer rather than Gatehouse.
func IsPeer(scenario string) bool { return scenario == PeerGetMe }

// isGatehouseHTTP reports whether scenario calls Gatehouse's HTTP listener.
func isGatehouseHTTP(scenario string) bool {
	return scenario == GetMeConnect || scenario == GetMeGRPCWeb || scenario == GetMeREST
}

// NewCall returns the Call for scenario against t.
func (t *Target) NewCall(scenario string) (Call, error) {
	if !slices.Contains(ScenarioNames, scenario) {
		return nil, fmt.Errorf("unknown scenario %q (have %s)", scenario, strings.Join(ScenarioNames, ", "))
	}
	switch {
	case IsPeer(scenario):
		if t.PeerURL == "" {
			return nil, fmt.Errorf("scenario %s needs the peer's URL", scenario)
		}
	case isGatehouseHTTP(scenario):
		if t.GatehouseURL == "" {
			return nil, fmt.Errorf("scenario %s needs Gatehouse's HTTP address", scenario)
		}
	case len(t.Conns) == 0:
		return nil, fmt.Errorf("scenario %s needs Gatehouse's gRPC address", scenario)
	}
	if scenario != Health && len(t.Tokens) == 0 {
		return nil, fmt.Errorf("scenario %s needs a session token", scenario)
	}
	bearers := make([]string, len(t.Tokens))
	for i, tok := range t.Tokens {
		bearers[i] = "Bearer " + tok
	}
	users := make([]gatehousev1.UserServiceClient, len(t.Conns))
	projects := make([]gatehousev1.ProjectServiceClient, len(t.Conns))
	for i, c := range t.Conns {
		users[i], projects[i] = gatehousev1.NewUserServiceClient(c), gatehousev1.NewProjectServiceClient(c)
	}
	authed := func(ctx context.Context, seq int64) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", bearers[seq%int64(len(bearers))])
	}
	switch scenario {
	case Health:
		clients := make([]healthpb.HealthClient, len(t.Conns))
		for i, c := range t.Conns {
			clients[i] = healthpb.NewHealthClient(c)
		}
		return func(ctx context.Context, seq int64) error {
			resp, err := clients[seq%int64(len(clients))].Check(ctx, &healthpb.HealthCheckRequest{})
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("health: %v", resp.GetStatus())
			}
			return err
		}, nil
	case GetMe:
		return func(ctx context.Context, seq int64) error {
			_, err := users[seq%int64(len(users))].GetMe(authed(ctx, seq), &gatehousev1.GetMeRequest{})
			return err
		}, nil
	case ListProjects:
		return func(ctx context.Context, seq int64) error {
			_, err := projects[seq%int64(len(projects))].ListProjects(authed(ctx, seq),
				&gatehousev1.ListProjectsRequest{PageSize: t.PageSize})
			return err
		}, nil
	case CreateProject:
		run := time.Now().UnixMilli()
		return func(ctx context.Context, seq int64) error {
			_, err := projects[seq%int64(len(projects))].CreateProject(authed(ctx, seq),
				&gatehousev1.CreateProjectRequest{
					Name:        fmt.Sprintf("bench %d-%d", run, seq),
					Description: "created by gatehouse-bench load",
				})
			return err
		}, nil
	case GetMeConnect, GetMeGRPCWeb, GetMeREST:
		return t.httpGetMe(scenario, bearers), nil
	default: // PeerGetMe
		u := strings.TrimRight(t.PeerURL, "/") + "/me"
		return func(ctx context.Context, seq int64) error {
			return getBearer(ctx, t.HTTP, u, t.Tokens[seq%int64(len(t.Tokens))], http.StatusOK)
		}, nil
	}
}

// httpGetMe is GetMe on Gatehouse's HTTP listener, written out as a
// browser's fetch or curl sends it, so the client costs little and the
// server's work is the transcoding and the call.
func (t *Target) httpGetMe(scenario string, bearers []string) Call {
	c := cmp.Or(t.GatehouseHTTP, t.HTTP)
	base := strings.TrimRight(t.GatehouseURL, "/")
	method, u, body, header := http.MethodPost, base+"/gatehouse.v1.UserService/GetMe", []byte("{}"), http.Header{
		"Content-Type":             {"application/json"},
		"Connect-Protocol-Version": {"1"},
	}
	switch scenario {
	case GetMeGRPCWeb:
		body = []byte{0, 0, 0, 0, 0} // one frame: an empty GetMeRequest
		header = http.Header{"Content-Type": {"application/grpc-web+proto"}, "X-Grpc-Web": {"1"}}
	case GetMeREST:
		method, u, body, header = http.MethodGet, base+"/v1/me", nil, http.Header{}
	}
	return func(ctx context.Context, seq int64) error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return err
		}
		req.Header = header.Clone()
		req.Header.Set("Authorization", bearers[seq%int64(len(bearers))])
		if scenario != GetMeGRPCWeb {
			return doHTTP(c, req, http.StatusOK)
		}
		return doGRPCWeb(c, req)
	}
}

// doGRPCWeb sends a gRPC-Web request and checks its status: gRPC-Web
// answers 200 and puts the status in a trailers-only answer's headers or in
// the body's trailer frame. A status other than OK is returned as the gRPC
// error it stands for, so failures are tallied as the gRPC scenarios' are.
func doGRPCWeb(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &HTTPStatusError{Code: resp.StatusCode}
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" { // trailers-only
		return grpcWebStatus(s, resp.Header.Get("Grpc-Message"))
	}
	// Frames: 1 byte of flags and 4 of length; the trailer frame (flags
	// 0x80) holds "grpc-status: N" and "grpc-message: …" lines.
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		frame := b[5 : 5+n]
		if b[0]&0x80 != 0 {
			var code, msg string
			for _, line := range strings.Split(string(frame), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "grpc-status":
					code = strings.TrimSpace(v)
				case "grpc-message":
					msg = strings.TrimSpace(v)
				}
			}
			if code != "" {
				return grpcWebStatus(code, msg)
			}
		}
		b = b[5+n:]
	}
	return errors.New("grpc-web: no grpc-status in the answer")
}

// grpcWebStatus is the error for a gRPC-Web answer's grpc-status and its
// percent-encoded grpc-message: nil for OK.
func grpcWebStatus(code, msg string) error {
	n, err := strconv.ParseUint(code, 10, 32)
	if err != nil {
		return fmt.Errorf("grpc-web: bad grpc-status %q", code)
	}
	if n == 0 {
		return nil
	}
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return status.Error(codes.Code(n), msg)
}

// getBearer sends GET u with token as its bearer credential, as the peer's
// callers do, and checks the answer's status as doHTTP does.
func getBearer(ctx context.Context, c *http.Client, u, token string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return doHTTP(c, req, want)
}

// doHTTP sends req, drains the answer (so the connection is reused) and
// checks its status: want, or any 2xx when want is 0.
func doHTTP(c *http.Client, req *http.Request, want int) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if want == 0 && resp.StatusCode/100 == 2 {
		return nil
	}
	if resp.StatusCode != want {
		return &HTTPStatusError{Code: resp.StatusCode}
	}
	return nil
}

// DialGRPC opens n plaintext connections to a loopback addr.
func DialGRPC(addr string, n int) ([]*grpc.ClientConn, error) {
	if err := RequireLoopback(addr); err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, max(n, 1))
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			CloseAll(conns[:i])
			return nil, err
		}
		c.Connect()
		conns[i] = c
	}
	return conns, nil
}

// CloseAll closes conns.
func CloseAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}

// NewHTTPClient returns a client that keeps up to conns idle connections
// to one host, so a closed loop of that many workers reuses them instead of
// exhausting ephemeral ports.
func NewHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(conns, 2) * 2
	tr.MaxIdleConnsPerHost = max(conns, 2)
	tr.DisableCompression = true
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// NewH2CClient returns a client that speaks HTTP/2 without TLS (prior
// knowledge), multiplexing its requests on one connection as gRPC does.
func NewH2CClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, DisableCompression: true}, Timeout: 30 * time.Second}
}

// RequireLoopback refuses an address (host:port or URL) that is not on the
// loopback interface: these tools generate load and must not aim it at
// anything shared.
func RequireLoopback(addr string) error {
	hostport := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return fmt.Errorf("bad URL %q: %w", addr, err)
		}
		hostport = u.Host
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if loopback.IsHost(host) {
		return nil
	}
	return fmt.Errorf("refusing %q: load targets must be loopback addresses (127.0.0.1)", addr)
}
