package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
)

// protocol is a way a client reaches Gatehouse's services: native gRPC on
// the gRPC listener, or one of the three protocols the HTTP listener adds
// for browsers and curl.
type protocol string

const (
	overGRPC         protocol = "grpc"          // the gRPC listener
	overConnectJSON  protocol = "connect+json"  // Connect, JSON, HTTP/1.1
	overConnectProto protocol = "connect+proto" // Connect, binary, HTTP/2 without TLS
	overGRPCWeb      protocol = "grpc-web"      // gRPC-Web, binary, HTTP/1.1, as browsers send it
	overREST         protocol = "rest"          // the google.api.http routes, JSON
)

var protocols = []protocol{overGRPC, overConnectJSON, overConnectProto, overGRPCWeb, overREST}

// eachProtocol runs test once per protocol, so that every rule and tenant
// check the end-to-end tests assert over gRPC is asserted over the HTTP
// listener's protocols too.
func eachProtocol(t *testing.T, test func(t *testing.T, p protocol)) {
	t.Helper()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) { test(t, p) })
	}
}

// over returns g with its users and projects clients speaking p. Each
// client sends the outgoing gRPC metadata (authorization,
// x-gatehouse-tenant) as HTTP headers and returns errors as gRPC statuses,
// with their details, so a test reads the same whatever the protocol.
func (g *gatehouse) over(t *testing.T, p protocol) *gatehouse {
	t.Helper()
	c := *g
	// The client's connections close before the server stops (cleanups
	// run last first), so its shutdown need not wait for them: net/http
	// gives a connection that has sent no request yet 5 s, HTTP/2 a second.
	tr := http1()
	if p == overConnectProto {
		tr = h2c()
	}
	t.Cleanup(tr.CloseIdleConnections)
	switch p {
	case overGRPC:
	case overREST:
		r := &restClient{base: g.httpURL, http: &http.Client{Transport: tr}}
		c.users, c.projects = r, r
	case overConnectJSON:
		c.users, c.projects = connectClients(g.httpURL, &http.Client{Transport: checkConnectStatus{tr}}, connect.WithProtoJSON())
	case overConnectProto:
		c.users, c.projects = connectClients(g.httpURL, &http.Client{Transport: checkConnectStatus{tr}})
	case overGRPCWeb:
		c.users, c.projects = connectClients(g.httpURL, &http.Client{Transport: tr}, connect.WithGRPCWeb())
	default:
		t.Fatalf("unknown protocol %q", p)
	}
	return &c
}

func http1() *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: 16}
}

// h2c is a transport that speaks HTTP/2 without TLS, with prior knowledge.
func h2c() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p}
}

// statusOfCode is the HTTP status of each gRPC code, as the Connect protocol
// and google.api.http transcoding (google/rpc/code.proto) both define it,
// and DESIGN requires.
var statusOfCode = map[codes.Code]int{
	codes.OK:                 200,
	codes.Canceled:           499,
	codes.Unknown:            500,
	codes.InvalidArgument:    400,
	codes.DeadlineExceeded:   504,
	codes.NotFound:           404,
	codes.AlreadyExists:      409,
	codes.PermissionDenied:   403,
	codes.ResourceExhausted:  429,
	codes.FailedPrecondition: 400,
	codes.Aborted:            409,
	codes.OutOfRange:         400,
	codes.Unimplemented:      501,
	codes.Internal:           500,
	codes.Unavailable:        503,
	codes.DataLoss:           500,
	codes.Unauthenticated:    401,
}

// checkConnectStatus fails a Connect unary call whose HTTP status is not
// the one its error code maps to: connect-go reads the code from the body,
// but a browser's fetch and a person with curl see the status first.
type checkConnectStatus struct{ next http.RoundTripper }

func (c checkConnectStatus) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || resp.StatusCode == http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var e struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("Connect error body %q: %w", body, err)
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.Code)); err != nil {
		return nil, fmt.Errorf("Connect error body %q: %w", body, err)
	}
	if want := statusOfCode[codes.Code(code)]; resp.StatusCode != want {
		return nil, fmt.Errorf("Connect error %s came with HTTP %d, want %d", code, resp.StatusCode, want)
	}
	return resp, nil
}

// connectClients are the two services over Connect or, with
// connect.WithGRPCWeb, gRPC-Web, through connect-go's generic client (the
// protocols' reference implementation in Go).
func connectClients(base string, hc *http.Client, opts ...connect.ClientOption) (gatehousev1.UserServiceClient, gatehousev1.ProjectServiceClient) {
	u := func(method string) string { return base + "/gatehouse.v1.UserService/" + method }
	p := func(method string) string { return base + "/gatehouse.v1.ProjectService/" + method }
	return &connectUsers{
			getMe:     connect.NewClient[gatehousev1.GetMeRequest, gatehousev1.GetMeResponse](hc, u("GetMe"), opts...),
			getUser:   connect.NewClient[gatehousev1.GetUserRequest, gatehousev1.GetUserResponse](hc, u("GetUser"), opts...),
			listUsers: connect.NewClient[gatehousev1.ListUsersRequest, gatehousev1.ListUsersResponse](hc, u("ListUsers"), opts...),
		}, &connectProjects{
			create: connect.NewClient[gatehousev1.CreateProjectRequest, gatehousev1.CreateProjectResponse](hc, p("CreateProject"), opts...),
			get:    connect.NewClient[gatehousev1.GetProjectRequest, gatehousev1.GetProjectResponse](hc, p("GetProject"), opts...),
			list:   connect.NewClient[gatehousev1.ListProjectsRequest, gatehousev1.ListProjectsResponse](hc, p("ListProjects"), opts...),
			update: connect.NewClient[gatehousev1.UpdateProjectRequest, gatehousev1.UpdateProjectResponse](hc, p("UpdateProject"), opts...),
			delete: connect.NewClient[gatehousev1.DeleteProjectRequest, gatehousev1.DeleteProjectResponse](hc, p("DeleteProject"), opts...),
		}
}

type connectUsers struct {
	getMe     *connect.Client[gatehousev1.GetMeRequest, gatehousev1.GetMeResponse]
	getUser   *connect.Client[gatehousev1.GetUserRequest, gatehousev1.GetUserResponse]
	listUsers *connect.Client[gatehousev1.ListUsersRequest, gatehousev1.ListUsersResponse]
}

var _ gatehousev1.UserServiceClient = (*connectUsers)(nil)

func (c *connectUsers) GetMe(ctx context.Context, in *gatehousev1.GetMeRequest, _ ...grpc.CallOption) (*gatehousev1.GetMeResponse, error) {
	return callConnect(ctx, c.getMe, in)
}

func (c *connectUsers) GetUser(ctx context.Context, in *gatehousev1.GetUserRequest, _ ...grpc.CallOption) (*gatehousev1.GetUserResponse, error) {
	return callConnect(ctx, c.getUser, in)
}

func (c *connectUsers) ListUsers(ctx context.Context, in *gatehousev1.ListUsersRequest, _ ...grpc.CallOption) (*gatehousev1.ListUsersResponse, error) {
	return callConnect(ctx, c.listUsers, in)
}

type connectProjects struct {
	create *connect.Client[gatehousev1.CreateProjectRequest, gatehousev1.CreateProjectResponse]
	get    *connect.Client[gatehousev1.GetProjectRequest, gatehousev1.GetProjectResponse]
	list   *connect.Client[gatehousev1.ListProjectsRequest, gatehousev1.ListProjectsResponse]
	update *connect.Client[gatehousev1.UpdateProjectRequest, gatehousev1.UpdateProjectResponse]
	delete *connect.Client[gatehousev1.DeleteProjectRequest, gatehousev1.DeleteProjectResponse]
}

var _ gatehousev1.ProjectServiceClient = (*connectProjects)(nil)

func (c *connectProjects) CreateProject(ctx context.Context, in *gatehousev1.CreateProjectRequest, _ ...grpc.CallOption) (*gatehousev1.CreateProjectResponse, error) {
	return callConnect(ctx, c.create, in)
}

func (c *connectProjects) GetProject(ctx context.Context, in *gatehousev1.GetProjectRequest, _ ...grpc.CallOption) (*gatehousev1.GetProjectResponse, error) {
	return callConnect(ctx, c.get, in)
}

func (c *connectProjects) ListProjects(ctx context.Context, in *gatehousev1.ListProjectsRequest, _ ...grpc.CallOption) (*gatehousev1.ListProjectsResponse, error) {
	return callConnect(ctx, c.list, in)
}

func (c *connectProjects) UpdateProject(ctx context.Context, in *gatehousev1.UpdateProjectRequest, _ ...grpc.CallOption) (*gatehousev1.UpdateProjectResponse, error) {
	return callConnect(ctx, c.update, in)
}

func (c *connectProjects) DeleteProject(ctx context.Context, in *gatehousev1.DeleteProjectRequest, _ ...grpc.CallOption) (*gatehousev1.DeleteProjectResponse, error) {
	return callConnect(ctx, c.delete, in)
}

// outgoingHeaders is the outgoing gRPC metadata of ctx as HTTP headers.
func outgoingHeaders(ctx context.Context, h http.Header) {
	md, _ := metadata.FromOutgoingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

func callConnect[Req, Res any](ctx context.Context, c *connect.Client[Req, Res], in *Req) (*Res, error) {
	req := connect.NewRequest(in)
	outgoingHeaders(ctx, req.Header())
	resp, err := c.CallUnary(ctx, req)
	if err != nil {
		return nil, statusFromConnect(err)
	}
	return resp.Msg, nil
}

// statusFromConnect is err as the gRPC status it carries, details and all.
func statusFromConnect(err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return status.Error(codes.Unknown, err.Error())
	}
	s := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		s.Details = append(s.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.FromProto(s).Err()
}

// restClient calls the google.api.http routes, as curl or a browser's
// fetch would, and checks each error's HTTP status against its code.
type restClient struct {
	base string
	http *http.Client
}

var (
	_ gatehousev1.UserServiceClient    = (*restClient)(nil)
	_ gatehousev1.ProjectServiceClient = (*restClient)(nil)
)

func (c *restClient) GetMe(ctx context.Context, _ *gatehousev1.GetMeRequest, _ ...grpc.CallOption) (*gatehousev1.GetMeResponse, error) {
	return restCall(ctx, c, http.MethodGet, "/v1/me", nil, nil, &gatehousev1.GetMeResponse{})
}

func (c *restClient) GetUser(ctx context.Context, in *gatehousev1.GetUserRequest, _ ...grpc.CallOption) (*gatehousev1.GetUserResponse, error) {
	return restCall(ctx, c, http.MethodGet, "/v1/users/"+url.PathEscape(in.GetId()), nil, nil, &gatehousev1.GetUserResponse{})
}

func (c *restClient) ListUsers(ctx context.Context, in *gatehousev1.ListUsersRequest, _ ...grpc.CallOption) (*gatehousev1.ListUsersResponse, error) {
	return restCall(ctx, c, http.MethodGet, "/v1/users", page(in.GetPageSize(), in.GetPageToken()), nil, &gatehousev1.ListUsersResponse{})
}

func (c *restClient) CreateProject(ctx context.Context, in *gatehousev1.CreateProjectRequest, _ ...grpc.CallOption) (*gatehousev1.CreateProjectResponse, error) {
	return restCall(ctx, c, http.MethodPost, "/v1/projects", nil, in, &gatehousev1.CreateProjectResponse{})
}

func (c *restClient) GetProject(ctx context.Context, in *gatehousev1.GetProjectRequest, _ ...grpc.CallOption) (*gatehousev1.GetProjectResponse, error) {
	return restCall(ctx, c, http.MethodGet, "/v1/projects/"+url.PathEscape(in.GetId()), nil, nil, &gatehousev1.GetProjectResponse{})
}

func (c *restClient) ListProjects(ctx context.Context, in *gatehousev1.ListProjectsRequest, _ ...grpc.CallOption) (*gatehousev1.ListProjectsResponse, error) {
	return restCall(ctx, c, http.MethodGet, "/v1/projects", page(in.GetPageSize(), in.GetPageToken()), nil, &gatehousev1.ListProjectsResponse{})
}

// UpdateProject sends the mask as ?update_mask= (FieldMask's JSON form,
// lowerCamel paths) when it has one, and else leaves it to the body.
func (c *restClient) UpdateProject(ctx context.Context, in *gatehousev1.UpdateProjectRequest, _ ...grpc.CallOption) (*gatehousev1.UpdateProjectResponse, error) {
	var q url.Values
	if in.GetUpdateMask() != nil {
		b, err := protojson.Marshal(in.GetUpdateMask())
		if err != nil {
			return nil, err
		}
		var paths string
		if err := json.Unmarshal(b, &paths); err != nil {
			return nil, err
		}
		q = url.Values{"update_mask": {paths}}
	}
	return restCall(ctx, c, http.MethodPatch, "/v1/projects/"+url.PathEscape(in.GetProject().GetId()), q, in.GetProject(), &gatehousev1.UpdateProjectResponse{})
}

func (c *restClient) DeleteProject(ctx context.Context, in *gatehousev1.DeleteProjectRequest, _ ...grpc.CallOption) (*gatehousev1.DeleteProjectResponse, error) {
	return restCall(ctx, c, http.MethodDelete, "/v1/projects/"+url.PathEscape(in.GetId()), nil, nil, &gatehousev1.DeleteProjectResponse{})
}

func page(size int32, token string) url.Values {
	q := url.Values{}
	if size != 0 {
		q.Set("page_size", fmt.Sprint(size))
	}
	if token != "" {
		q.Set("page_token", token)
	}
	return q
}

// restCall is do, returning out, or nil with the error, as a gRPC stub
// does.
func restCall[T proto.Message](ctx context.Context, c *restClient, method, path string, query url.Values, body proto.Message, out T) (T, error) {
	if err := c.do(ctx, method, path, query, body, out); err != nil {
		var none T
		return none, err
	}
	return out, nil
}

// do sends a REST request and decodes the answer into out, or the
// google.rpc.Status error body into a gRPC status error.
func (c *restClient) do(ctx context.Context, method, path string, query url.Values, body, out proto.Message) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := protojson.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	outgoingHeaders(ctx, req.Header)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode == http.StatusOK {
		return protojson.Unmarshal(b, out)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return status.Errorf(codes.Unknown, "%s %s: HTTP %d with %s body %q", method, path, resp.StatusCode, ct, b)
	}
	var s spb.Status
	if err := protojson.Unmarshal(b, &s); err != nil {
		return status.Errorf(codes.Unknown, "%s %s: HTTP %d, error body %q: %v", method, path, resp.StatusCode, b, err)
	}
	if want := statusOfCode[codes.Code(s.GetCode())]; resp.StatusCode != want {
		return status.Errorf(codes.Unknown, "%s %s: %v came with HTTP %d, want %d", method, path, codes.Code(s.GetCode()), resp.StatusCode, want)
	}
	return status.FromProto(&s).Err()
}

// TestLogNamesTheProtocol: each call's log line says which protocol it came
// in over, native gRPC on the HTTP listener (h2c) included.
func TestLogNamesTheProtocol(t *testing.T) {
	var logged testlog.Buffer
	g := startLogging(t, "sqlite", &logged)
	tok := g.mint(t, clerkemu.Session{UserID: "user_logged"})

	httpConn, err := grpc.NewClient(strings.TrimPrefix(g.httpURL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpConn.Close() })
	grpcOnHTTP := gatehousev1.NewUserServiceClient(httpConn)

	type rpcLine struct{ Msg, Method, Protocol, Principal string }
	rpcLines := func() []rpcLine {
		var lines []rpcLine
		for _, l := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
			var line rpcLine
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "rpc" {
				lines = append(lines, line)
			}
		}
		return lines
	}
	// loggedProtocol makes call and returns the protocol of the one rpc
	// line it logged.
	loggedProtocol := func(t *testing.T, call func() error) string {
		t.Helper()
		before := len(rpcLines())
		if err := call(); err != nil {
			t.Fatal(err)
		}
		lines := rpcLines()
		if len(lines) != before+1 {
			t.Fatalf("the call logged %d rpc lines, want 1", len(lines)-before)
		}
		last := lines[len(lines)-1]
		if last.Method != "/gatehouse.v1.UserService/GetMe" || last.Principal != "user_logged" {
			t.Fatalf("rpc line %+v, want GetMe by user_logged", last)
		}
		return last.Protocol
	}
	for _, p := range protocols {
		want := map[protocol]string{
			overGRPC: "grpc", overConnectJSON: "connect", overConnectProto: "connect",
			overGRPCWeb: "grpc-web", overREST: "rest",
		}[p]
		users := g.over(t, p).users
		got := loggedProtocol(t, func() error {
			_, err := users.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
			return err
		})
		if got != want {
			t.Errorf("%s: logged protocol %q, want %q", p, got, want)
		}
	}
	got := loggedProtocol(t, func() error {
		_, err := grpcOnHTTP.GetMe(withToken(context.Background(), tok), &gatehousev1.GetMeRequest{})
		return err
	})
	if got != "grpc" {
		t.Errorf("native gRPC on the HTTP listener: logged protocol %q, want grpc", got)
	}
}
