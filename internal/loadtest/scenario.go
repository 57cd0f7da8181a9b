package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/loopback"
)

// The scenarios Load knows. The gRPC ones call Gatehouse; PeerGetMe calls
// the peer's GET /me.
const (
	Health        = "health"        // grpc.health.v1.Health/Check, no token
	GetMe         = "getme"         // UserService/GetMe
	ListProjects  = "listprojects"  // ProjectService/ListProjects
	CreateProject = "createproject" // ProjectService/CreateProject
	PeerGetMe     = "peer"          // the peer's GET /me
)

// ScenarioNames lists the scenarios in the order the help shows them.
var ScenarioNames = []string{Health, GetMe, ListProjects, CreateProject, PeerGetMe}

// Target is what the scenarios call.
type Target struct {
	// Conns are gRPC connections to Gatehouse; calls spread over them.
	Conns []*grpc.ClientConn
	// PeerURL is the peer's base URL ("http://127.0.0.1:8090").
	PeerURL string
	// HTTP is the client for the peer.
	HTTP *http.Client
	// Tokens are session tokens; calls take them in turn.
	Tokens []string
	// PageSize is ListProjects' page_size (0: the server's default, 50).
	PageSize int32
}

// IsHTTP reports whether scenario calls the peer rather than Gatehouse.
func IsHTTP(scenario string) bool { return scenario == PeerGetMe }

// NewCall returns the Call for scenario against t.
func (t *Target) NewCall(scenario string) (Call, error) {
	if !slices.Contains(ScenarioNames, scenario) {
		return nil, fmt.Errorf("unknown scenario %q (have %s)", scenario, strings.Join(ScenarioNames, ", "))
	}
	if IsHTTP(scenario) {
		if t.PeerURL == "" {
			return nil, fmt.Errorf("scenario %s needs the peer's URL", scenario)
		}
	} else if len(t.Conns) == 0 {
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
	default: // PeerGetMe
		u := strings.TrimRight(t.PeerURL, "/") + "/me"
		return func(ctx context.Context, seq int64) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", bearers[seq%int64(len(bearers))])
			return doHTTP(t.HTTP, req, http.StatusOK)
		}, nil
	}
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
