package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// h2cClient speaks HTTP/2 without TLS; its connections close before the
// server stops, so the server's shutdown need not wait for them.
func h2cClient(t *testing.T) *http.Client {
	tr := h2c()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// exchange is one HTTP request and its answer, read whole.
type exchange struct {
	status int
	proto  string
	header http.Header
	body   []byte
}

// request makes an HTTP request to g's HTTP listener. headers are name, value
// pairs.
func (g *gatehouse) request(t *testing.T, client *http.Client, method, path string, body []byte, headers ...string) exchange {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, g.httpURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	// gRPC-Web over HTTP/2 could send real trailers; fold them in.
	for k, vs := range resp.Trailer {
		resp.Header[k] = append(resp.Header[k], vs...)
	}
	return exchange{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, body: b}
}

// want fails the test unless the answer has the status.
func (e exchange) want(t *testing.T, status int) exchange {
	t.Helper()
	if e.status != status {
		t.Fatalf("HTTP %d, want %d: %s", e.status, status, e.body)
	}
	return e
}

// restStatus decodes a REST error body: a google.rpc.Status in JSON.
func (e exchange) restStatus(t *testing.T) *status.Status {
	t.Helper()
	if ct := e.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error body of type %q: %s", ct, e.body)
	}
	var s spb.Status
	if err := protojson.Unmarshal(e.body, &s); err != nil {
		t.Fatalf("error body %s: %v", e.body, err)
	}
	return status.FromProto(&s)
}

func fieldViolations(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				fields = append(fields, v.Field+": "+v.Description)
			}
		}
	}
	return fields
}

func decodeJSON(t *testing.T, b []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(b, m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// TestRESTRoutes calls every google.api.http route with every method it
// takes, as curl would: paths, query parameters, bodies, the update mask
// from the query or from the body's fields.
func TestRESTRoutes(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect)
			auth := []string{"Authorization", "Bearer " + g.mint(t, clerkemu.Session{UserID: "user_rest"})}
			jsonBody := append(auth, "Content-Type", "application/json")

			var me gatehousev1.GetMeResponse
			decodeJSON(t, g.request(t, nil, "GET", "/v1/me", nil, auth...).want(t, 200).body, &me)
			if me.User.GetId() != "user_rest" || me.Session.GetTenantId() != "user_rest" {
				t.Fatalf("GET /v1/me: %v", &me)
			}
			var users gatehousev1.ListUsersResponse
			decodeJSON(t, g.request(t, nil, "GET", "/v1/users?page_size=10", nil, auth...).want(t, 200).body, &users)
			if len(users.Users) != 1 || users.Users[0].Id != "user_rest" {
				t.Fatalf("GET /v1/users: %v", &users)
			}
			var user gatehousev1.GetUserResponse
			decodeJSON(t, g.request(t, nil, "GET", "/v1/users/user_rest", nil, auth...).want(t, 200).body, &user)
			if user.User.GetEmail() != "user_rest@example.com" {
				t.Fatalf("GET /v1/users/user_rest: %v", &user)
			}
			g.request(t, nil, "GET", "/v1/users/user_stranger", nil, auth...).want(t, 404)

			// POST /v1/projects: the body is the whole request.
			var created gatehousev1.CreateProjectResponse
			decodeJSON(t, g.request(t, nil, "POST", "/v1/projects", []byte(`{"name": "Apollo", "description": "to the moon"}`), jsonBody...).want(t, 200).body, &created)
			p := created.Project
			if p.GetName() != "Apollo" || p.GetDescription() != "to the moon" || p.GetTenantId() != "user_rest" ||
				p.GetStatus() != gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE {
				t.Fatalf("POST /v1/projects: %v", p)
			}
			decodeJSON(t, g.request(t, nil, "POST", "/v1/projects", []byte(`{"name": "Gemini"}`), jsonBody...).want(t, 200).body, &created)
			second := created.Project

			// Pages through the query string, in either spelling.
			var page1, page2 gatehousev1.ListProjectsResponse
			decodeJSON(t, g.request(t, nil, "GET", "/v1/projects?page_size=1", nil, auth...).want(t, 200).body, &page1)
			if len(page1.Projects) != 1 || page1.NextPageToken == "" {
				t.Fatalf("first page: %v", &page1)
			}
			decodeJSON(t, g.request(t, nil, "GET", "/v1/projects?pageSize=1&pageToken="+page1.NextPageToken, nil, auth...).want(t, 200).body, &page2)
			if len(page2.Projects) != 1 || page2.Projects[0].Id == page1.Projects[0].Id {
				t.Fatalf("second page: %v after %v", &page2, &page1)
			}
			if st := g.request(t, nil, "GET", "/v1/projects?page_size=-1", nil, auth...).want(t, 400).restStatus(t); st.Code() != codes.InvalidArgument {
				t.Fatalf("negative page size: %v", st)
			}
			// A bad value is refused; a parameter that names no field is
			// ignored (a cache-buster such as ?_=123 must not fail a call).
			g.request(t, nil, "GET", "/v1/projects?page_size=ten", nil, auth...).want(t, 400)
			g.request(t, nil, "GET", "/v1/projects?_=1733000000", nil, auth...).want(t, 200)

			path := "/v1/projects/" + p.Id
			patch := func(query, body string) *gatehousev1.Project {
				t.Helper()
				var got gatehousev1.UpdateProjectResponse
				decodeJSON(t, g.request(t, nil, "PATCH", path+query, []byte(body), jsonBody...).want(t, 200).body, &got)
				return got.Project
			}
			// The mask in the query wins: the name in the body is not applied.
			if got := patch("?update_mask=description", `{"name": "not applied", "description": "masked"}`); got.Name != "Apollo" || got.Description != "masked" {
				t.Fatalf("PATCH ?update_mask=description: %v", got)
			}
			// No mask: the body's fields are the mask, an empty value included.
			if got := patch("", `{"name": "Apollo 11"}`); got.Name != "Apollo 11" || got.Description != "masked" {
				t.Fatalf("PATCH {name}: %v", got)
			}
			if got := patch("", `{"description": ""}`); got.Name != "Apollo 11" || got.Description != "" {
				t.Fatalf("PATCH {description: \"\"}: %v", got)
			}
			if got := patch("", `{"status": "PROJECT_STATUS_ARCHIVED", "description": "landed"}`); got.Status != gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED || got.Description != "landed" {
				t.Fatalf("PATCH {status, description}: %v", got)
			}
			// The path names the project: an id in the body is neither
			// the target nor a field to update.
			if got := patch("", `{"id": "`+second.Id+`", "name": "by path"}`); got.Id != p.Id || got.Name != "by path" {
				t.Fatalf("PATCH with another id in the body: %v", got)
			}
			for body, want := range map[string]string{
				`{}`:                    "update_mask: required",
				`{"tenantId": "org_x"}`: `update_mask: unknown path "tenant_id"`,
				`{"nmae": "typo"}`:      `update_mask: unknown path "nmae"`,
			} {
				st := g.request(t, nil, "PATCH", path, []byte(body), jsonBody...).want(t, 400).restStatus(t)
				if v := fieldViolations(st); st.Code() != codes.InvalidArgument || len(v) != 1 || !strings.HasPrefix(v[0], want) {
					t.Errorf("PATCH %s: %v %v, want a violation starting %q", body, st.Code(), v, want)
				}
			}

			g.request(t, nil, "DELETE", path, nil, auth...).want(t, 200)
			if st := g.request(t, nil, "GET", path, nil, auth...).want(t, 404).restStatus(t); st.Code() != codes.NotFound {
				t.Fatalf("GET after DELETE: %v", st)
			}
			// No route: JSON statuses like every other REST error.
			wrongMethod := g.request(t, nil, "PUT", path, []byte(`{}`), jsonBody...).want(t, 405)
			if st := wrongMethod.restStatus(t); st.Code() != codes.Unimplemented || wrongMethod.header.Get("Allow") == "" {
				t.Errorf("PUT %s: %v, Allow %q; want UNIMPLEMENTED and the methods allowed", path, st, wrongMethod.header.Get("Allow"))
			}
			if st := g.request(t, nil, "GET", "/v1/no/such/route", nil, auth...).want(t, 404).restStatus(t); st.Code() != codes.NotFound {
				t.Errorf("GET /v1/no/such/route: %v, want NOT_FOUND", st)
			}
		})
	}
}

// TestConnectWire checks the Connect protocol on the wire, as curl or a
// browser's fetch sees it.
func TestConnectWire(t *testing.T) {
	g := start(t, "sqlite")
	tok := g.mint(t, clerkemu.Session{UserID: "user_wire"})
	const getMe = "/gatehouse.v1.UserService/GetMe"

	for _, tt := range []struct {
		name    string
		client  *http.Client
		headers []string
	}{
		{"HTTP/1.1", nil, []string{"Connect-Protocol-Version", "1"}},
		{"HTTP/2", h2cClient(t), []string{"Connect-Protocol-Version", "1"}},
		// curl, following Connect's own examples, sends no protocol version.
		{"without Connect-Protocol-Version", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := append([]string{"Authorization", "Bearer " + tok, "Content-Type", "application/json"}, tt.headers...)
			e := g.request(t, tt.client, "POST", getMe, []byte(`{}`), h...).want(t, 200)
			if tt.client != nil && e.proto != "HTTP/2.0" {
				t.Errorf("answered over %s", e.proto)
			}
			// A unary answer is written whole, with its length, not
			// flushed in chunks.
			if tt.client == nil && e.header.Get("Content-Length") == "" {
				t.Errorf("no Content-Length: %v", e.header)
			}
			var me gatehousev1.GetMeResponse
			decodeJSON(t, e.body, &me)
			if me.User.GetId() != "user_wire" {
				t.Fatalf("GetMe: %s", e.body)
			}
		})
	}

	t.Run("binary", func(t *testing.T) {
		e := g.request(t, nil, "POST", getMe, nil, "Authorization", "Bearer "+tok, "Content-Type", "application/proto").want(t, 200)
		if ct := e.header.Get("Content-Type"); ct != "application/proto" {
			t.Fatalf("content type %q", ct)
		}
		var me gatehousev1.GetMeResponse
		if err := proto.Unmarshal(e.body, &me); err != nil || me.User.GetId() != "user_wire" {
			t.Fatalf("GetMe: %v, %v", &me, err)
		}
	})

	t.Run("error body", func(t *testing.T) {
		e := g.request(t, nil, "POST", getMe, []byte(`{}`), "Content-Type", "application/json").want(t, 401)
		var body struct{ Code, Message string }
		if err := json.Unmarshal(e.body, &body); err != nil || body.Code != "unauthenticated" || body.Message == "" {
			t.Fatalf("no token: %s (%v)", e.body, err)
		}

		e = g.request(t, nil, "POST", "/gatehouse.v1.ProjectService/CreateProject", []byte(`{"name": " "}`),
			"Authorization", "Bearer "+tok, "Content-Type", "application/json").want(t, 400)
		var detailed struct {
			Code    string
			Details []struct{ Type, Value string }
		}
		if err := json.Unmarshal(e.body, &detailed); err != nil || detailed.Code != "invalid_argument" || len(detailed.Details) != 1 {
			t.Fatalf("bad name: %s (%v)", e.body, err)
		}
		d := detailed.Details[0]
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		var br errdetails.BadRequest
		if err != nil || d.Type != "google.rpc.BadRequest" || proto.Unmarshal(raw, &br) != nil || br.FieldViolations[0].Field != "name" {
			t.Fatalf("detail %+v: %v %v", d, &br, err)
		}
	})

	t.Run("methods", func(t *testing.T) {
		g.request(t, nil, "GET", getMe, nil, "Authorization", "Bearer "+tok, "Connect-Protocol-Version", "1").want(t, 405)
		g.request(t, nil, "POST", "/gatehouse.v1.UserService/NoSuchMethod", []byte(`{}`), "Content-Type", "application/json").want(t, 404)
	})
}

// grpcWebFrames splits a gRPC-Web body into its messages and its trailers.
func grpcWebFrames(t *testing.T, body []byte) (messages [][]byte, trailers http.Header) {
	t.Helper()
	trailers = http.Header{}
	for len(body) > 0 {
		if len(body) < 5 {
			t.Fatalf("truncated frame header: %x", body)
		}
		flags, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if uint32(len(body)-5) < n {
			t.Fatalf("frame of %d bytes, %d left", n, len(body)-5)
		}
		frame := body[5 : 5+n]
		body = body[5+n:]
		if flags&0x80 == 0 {
			messages = append(messages, frame)
			continue
		}
		r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(frame, "\r\n"...))))
		h, err := r.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("trailer frame %q: %v", frame, err)
		}
		for k, vs := range h {
			trailers[k] = append(trailers[k], vs...)
		}
		if len(body) > 0 {
			t.Fatalf("%d bytes after the trailer frame", len(body))
		}
	}
	return messages, trailers
}

// grpcWebFrame is m as a gRPC-Web request body: one uncompressed frame.
func grpcWebFrame(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// TestGRPCWebWire checks gRPC-Web's framing on the wire: a length-prefixed
// message, then a trailer frame with grpc-status; an error's status and
// details in headers (a trailers-only answer) or in the trailer frame.
func TestGRPCWebWire(t *testing.T) {
	g := start(t, "sqlite")
	tok := g.mint(t, clerkemu.Session{UserID: "user_web"})
	for _, tt := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1", nil}, {"HTTP/2", h2cClient(t)}} {
		t.Run(tt.name, func(t *testing.T) {
			call := func(method string, m proto.Message, token string) exchange {
				body := grpcWebFrame(m)
				h := []string{"Content-Type", "application/grpc-web+proto", "X-Grpc-Web", "1", "X-User-Agent", "grpc-web-test"}
				if token != "" {
					h = append(h, "Authorization", "Bearer "+token)
				}
				return g.request(t, tt.client, "POST", method, body, h...).want(t, 200)
			}

			e := call("/gatehouse.v1.UserService/GetMe", &gatehousev1.GetMeRequest{}, tok)
			if ct := e.header.Get("Content-Type"); ct != "application/grpc-web+proto" {
				t.Fatalf("content type %q", ct)
			}
			if tt.client == nil && e.header.Get("Content-Length") == "" {
				t.Errorf("a unary answer without Content-Length: %v", e.header)
			}
			msgs, trailers := grpcWebFrames(t, e.body)
			var me gatehousev1.GetMeResponse
			if len(msgs) != 1 || proto.Unmarshal(msgs[0], &me) != nil || me.User.GetId() != "user_web" {
				t.Fatalf("GetMe: %d messages, %v", len(msgs), &me)
			}
			if trailers.Get("Grpc-Status") != "0" {
				t.Fatalf("trailers %v, want grpc-status 0", trailers)
			}

			// Errors: no message, the status (and its details) in the
			// headers or the trailer frame.
			errorStatus := func(e exchange) *status.Status {
				t.Helper()
				msgs, trailers := grpcWebFrames(t, e.body)
				for k, vs := range e.header {
					trailers[k] = append(trailers[k], vs...)
				}
				if len(msgs) != 0 {
					t.Fatalf("an error with %d messages", len(msgs))
				}
				s := &spb.Status{}
				if bin := trailers.Get("Grpc-Status-Details-Bin"); bin != "" {
					raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
					if err != nil || proto.Unmarshal(raw, s) != nil {
						t.Fatalf("grpc-status-details-bin %q: %v", bin, err)
					}
				}
				var code int
				fmt.Sscan(trailers.Get("Grpc-Status"), &code)
				if s.Code != 0 && s.Code != int32(code) {
					t.Fatalf("grpc-status %d, details say %d", code, s.Code)
				}
				s.Code = int32(code)
				return status.FromProto(s)
			}
			if st := errorStatus(call("/gatehouse.v1.UserService/GetMe", &gatehousev1.GetMeRequest{}, "")); st.Code() != codes.Unauthenticated {
				t.Fatalf("no token: %v", st)
			}
			st := errorStatus(call("/gatehouse.v1.ProjectService/CreateProject", &gatehousev1.CreateProjectRequest{Name: " "}, tok))
			if v := fieldViolations(st); st.Code() != codes.InvalidArgument || len(v) != 1 || !strings.HasPrefix(v[0], "name:") {
				t.Fatalf("bad name: %v, violations %v", st, v)
			}
		})
	}
}

// TestErrorsOverHTTP: the codes DESIGN names reach REST and Connect callers
// as the HTTP statuses it maps them to, with the same google.rpc details.
func TestErrorsOverHTTP(t *testing.T) {
	g := start(t, "sqlite")
	member := "Bearer " + g.mint(t, clerkemu.Session{UserID: "user_m", OrgID: "org_e", OrgRole: "org:member"})
	stranger := "Bearer " + g.mint(t, clerkemu.Session{UserID: "user_s"})
	created, err := g.projects.CreateProject(withToken(context.Background(), strings.TrimPrefix(member, "Bearer ")), &gatehousev1.CreateProjectRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Project.Id
	early := "Bearer " + g.mint(t, clerkemu.Session{UserID: "user_early"})
	huge := []byte(`{"name": "` + strings.Repeat("x", server.MaxMessageBytes) + `"}`)

	type call struct {
		method, path string
		body         []byte
		auth         string
	}
	for _, tt := range []struct {
		code        codes.Code
		status      int
		rest, rpc   call
		clerkDown   bool
		wantDetails string
	}{
		{codes.Unauthenticated, 401, call{"GET", "/v1/me", nil, ""}, call{"POST", "/gatehouse.v1.UserService/GetMe", []byte(`{}`), ""}, false, ""},
		{codes.PermissionDenied, 403, call{"DELETE", "/v1/projects/" + id, nil, member}, call{"POST", "/gatehouse.v1.ProjectService/DeleteProject", []byte(`{"id": "` + id + `"}`), member}, false, ""},
		{codes.NotFound, 404, call{"GET", "/v1/projects/" + id, nil, stranger}, call{"POST", "/gatehouse.v1.ProjectService/GetProject", []byte(`{"id": "` + id + `"}`), stranger}, false, ""},
		{codes.InvalidArgument, 400, call{"POST", "/v1/projects", []byte(`{"name": ""}`), member}, call{"POST", "/gatehouse.v1.ProjectService/CreateProject", []byte(`{"name": ""}`), member}, false, "google.rpc.BadRequest"},
		{codes.Unavailable, 503, call{"GET", "/v1/me", nil, early}, call{"POST", "/gatehouse.v1.UserService/GetMe", []byte(`{}`), early}, true, "google.rpc.RetryInfo"},
		{codes.ResourceExhausted, 429, call{"POST", "/v1/projects", huge, member}, call{"POST", "/gatehouse.v1.ProjectService/CreateProject", huge, member}, false, ""},
	} {
		t.Run(tt.code.String(), func(t *testing.T) {
			if tt.clerkDown {
				g.emu.SetUsersStatus(http.StatusServiceUnavailable)
				defer g.emu.SetUsersStatus(0)
			}
			for _, c := range []call{tt.rest, tt.rpc} {
				h := []string{"Content-Type", "application/json"}
				if c.auth != "" {
					h = append(h, "Authorization", c.auth)
				}
				if c.body == nil {
					h = nil
					if c.auth != "" {
						h = []string{"Authorization", c.auth}
					}
				}
				e := g.request(t, nil, c.method, c.path, c.body, h...).want(t, tt.status)
				var code codes.Code
				var details []string
				if strings.HasPrefix(c.path, "/v1/") {
					st := e.restStatus(t)
					code = st.Code()
					for _, d := range st.Proto().Details {
						details = append(details, strings.TrimPrefix(d.TypeUrl, "type.googleapis.com/"))
					}
				} else {
					var body struct {
						Code    string
						Details []struct{ Type string }
					}
					if err := json.Unmarshal(e.body, &body); err != nil {
						t.Fatalf("%s: %v", e.body, err)
					}
					var cc connect.Code
					if err := cc.UnmarshalText([]byte(body.Code)); err != nil {
						t.Fatalf("code %q: %v", body.Code, err)
					}
					code = codes.Code(cc)
					for _, d := range body.Details {
						details = append(details, d.Type)
					}
				}
				if code != tt.code {
					t.Errorf("%s %s: %v, want %v", c.method, c.path, code, tt.code)
				}
				if tt.wantDetails != "" && !slices.Contains(details, tt.wantDetails) {
					t.Errorf("%s %s: details %v, want %s", c.method, c.path, details, tt.wantDetails)
				}
			}
		})
	}
}

// TestMessageSizeLimit: the HTTP listener takes requests as large as the
// gRPC listener does, and refuses larger ones as RESOURCE_EXHAUSTED in each
// protocol's way.
func TestMessageSizeLimit(t *testing.T) {
	g := start(t, "sqlite")
	tok := g.mint(t, clerkemu.Session{UserID: "user_big"})
	auth := []string{"Authorization", "Bearer " + tok}
	created, err := g.projects.CreateProject(withToken(context.Background(), tok), &gatehousev1.CreateProjectRequest{Name: "big"})
	if err != nil {
		t.Fatal(err)
	}
	// A body just short of the limit reaches the handler, which refuses
	// the name for its length; one a byte over is refused before. (Just
	// short: the message passed on also holds what the path names.)
	body := func(size int, wrapper string) []byte {
		pad := size - len(fmt.Sprintf(wrapper, ""))
		return fmt.Appendf(nil, wrapper, strings.Repeat("x", pad))
	}
	for _, tt := range []struct {
		name, method, path, wrapper string
		headers                     []string
	}{
		{"REST POST", "POST", "/v1/projects", `{"name": "%s"}`, []string{"Content-Type", "application/json"}},
		{"REST PATCH without a mask", "PATCH", "/v1/projects/" + created.Project.Id, `{"name": "%s"}`, []string{"Content-Type", "application/json"}},
		{"Connect JSON", "POST", "/gatehouse.v1.ProjectService/CreateProject", `{"name": "%s"}`, []string{"Content-Type", "application/json", "Connect-Protocol-Version", "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := append(slices.Clone(auth), tt.headers...)
			e := g.request(t, nil, tt.method, tt.path, body(server.MaxMessageBytes-100, tt.wrapper), h...)
			if e.status != 400 || !bytes.Contains(e.body, []byte("name")) {
				t.Fatalf("under the limit: HTTP %d %.200s, want 400 about the name", e.status, e.body)
			}
			e = g.request(t, nil, tt.method, tt.path, body(server.MaxMessageBytes+1, tt.wrapper), h...)
			if e.status != 429 || !bytes.Contains(bytes.ToLower(e.body), []byte("exceeded")) {
				t.Fatalf("over the limit: HTTP %d %.200s, want 429", e.status, e.body)
			}
		})
	}
	t.Run("gRPC-Web", func(t *testing.T) {
		m := &gatehousev1.CreateProjectRequest{Name: strings.Repeat("x", server.MaxMessageBytes)}
		e := g.request(t, nil, "POST", "/gatehouse.v1.ProjectService/CreateProject", grpcWebFrame(m),
			append(slices.Clone(auth), "Content-Type", "application/grpc-web+proto")...).want(t, 200)
		_, trailers := grpcWebFrames(t, e.body)
		if got := e.header.Get("Grpc-Status") + trailers.Get("Grpc-Status"); got != fmt.Sprint(int(codes.ResourceExhausted)) {
			t.Fatalf("grpc-status %q, want 8 (headers %v)", got, e.header)
		}
	})
	t.Run("gRPC", func(t *testing.T) {
		_, err := g.projects.CreateProject(withToken(context.Background(), tok),
			&gatehousev1.CreateProjectRequest{Name: strings.Repeat("x", server.MaxMessageBytes)})
		wantCode(t, err, codes.ResourceExhausted)
	})
}

// TestCORS: browsers on an authorized party's origin may call the API
// (Connect, gRPC-Web, REST), from no other origin, and never the webhook,
// health or metrics paths.
func TestCORS(t *testing.T) {
	const origin = "http://localhost:3000"
	g := start(t, "sqlite", func(c *config.Config) { c.AuthorizedParties = []string{origin, "https://app.example.com"} })
	tok := g.mint(t, clerkemu.Session{UserID: "user_cors"})
	preflight := func(from, method, path, headers string) exchange {
		t.Helper()
		h := []string{"Origin", from, "Access-Control-Request-Method", method}
		if headers != "" {
			h = append(h, "Access-Control-Request-Headers", headers)
		}
		return g.request(t, nil, "OPTIONS", path, nil, h...)
	}
	allowed := func(e exchange) bool { return e.header.Get("Access-Control-Allow-Origin") != "" }

	// What browsers send (Fetch: lower case, sorted) for each protocol.
	for _, tt := range []struct{ name, method, path, headers string }{
		{"Connect", "POST", "/gatehouse.v1.UserService/GetMe", "authorization,connect-protocol-version,connect-timeout-ms,content-type,x-user-agent"},
		{"gRPC-Web", "POST", "/gatehouse.v1.ProjectService/ListProjects", "authorization,content-type,grpc-timeout,x-gatehouse-tenant,x-grpc-web,x-user-agent"},
		{"REST PATCH", "PATCH", "/v1/projects/prj_x", "authorization,content-type,x-gatehouse-tenant"},
		{"REST DELETE", "DELETE", "/v1/projects/prj_x", "authorization"},
		{"REST GET", "GET", "/v1/me", "authorization"},
	} {
		t.Run("preflight "+tt.name, func(t *testing.T) {
			e := preflight(origin, tt.method, tt.path, tt.headers)
			got := []string{e.header.Get("Access-Control-Allow-Origin"), e.header.Get("Access-Control-Allow-Methods"),
				e.header.Get("Access-Control-Allow-Headers"), e.header.Get("Access-Control-Max-Age")}
			if d := cmp.Diff([]string{origin, tt.method, tt.headers, "7200"}, got); d != "" {
				t.Errorf("preflight (-want +got):\n%s", d)
			}
			if e.status/100 != 2 {
				t.Errorf("preflight: HTTP %d", e.status)
			}
			if e := preflight("https://evil.example", tt.method, tt.path, tt.headers); allowed(e) {
				t.Errorf("another origin's preflight allowed: %v", e.header)
			}
		})
	}
	t.Run("DESIGN's headers", func(t *testing.T) {
		var want []string
		for _, h := range []string{"Authorization", "Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "X-Grpc-Web", "X-User-Agent", "x-gatehouse-tenant"} {
			want = append(want, strings.ToLower(h))
		}
		slices.Sort(want)
		if e := preflight(origin, "POST", "/gatehouse.v1.UserService/GetMe", strings.Join(want, ",")); !allowed(e) {
			t.Errorf("preflight for %v refused: %v", want, e.header)
		}
		if e := preflight(origin, "POST", "/gatehouse.v1.UserService/GetMe", "authorization,x-not-listed"); allowed(e) {
			t.Errorf("a header not listed was allowed: %v", e.header)
		}
		if e := preflight(origin, "PUT", "/v1/projects/prj_x", ""); allowed(e) {
			t.Errorf("PUT was allowed: %v", e.header)
		}
	})
	t.Run("actual requests", func(t *testing.T) {
		e := g.request(t, nil, "GET", "/v1/me", nil, "Origin", origin, "Authorization", "Bearer "+tok).want(t, 200)
		if got := e.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("Access-Control-Allow-Origin %q", got)
		}
		if got, want := e.header.Get("Access-Control-Expose-Headers"), "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin"; got != want {
			t.Errorf("Access-Control-Expose-Headers %q, want %q", got, want)
		}
		// An error answer carries them too, or a page could not read it.
		e = g.request(t, nil, "POST", "/gatehouse.v1.UserService/GetMe", []byte(`{}`), "Origin", origin, "Content-Type", "application/json").want(t, 401)
		if !allowed(e) {
			t.Errorf("401 without CORS headers: %v", e.header)
		}
		e = g.request(t, nil, "GET", "/v1/me", nil, "Origin", "https://evil.example", "Authorization", "Bearer "+tok)
		if allowed(e) || e.header.Get("Access-Control-Expose-Headers") != "" {
			t.Errorf("another origin got CORS headers: %v", e.header)
		}
	})
	t.Run("never on the webhook, health and metrics", func(t *testing.T) {
		for _, path := range []string{"/webhooks/clerk", "/healthz", "/readyz", "/metrics"} {
			for _, e := range []exchange{
				preflight(origin, "POST", path, "content-type"),
				preflight(origin, "GET", path, ""),
				g.request(t, nil, "GET", path, nil, "Origin", origin),
			} {
				for k := range e.header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("%s: %s: %v", path, k, e.header)
					}
				}
			}
		}
		body, err := clerkemu.SampleEvent(webhook.TypeUserCreated, clerkemu.Sample{UserID: "user_hook", UpdatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		resp := postWebhook(t, g, "", body)
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("webhook: HTTP %d, headers %v", resp.StatusCode, resp.Header)
		}
	})
}

// TestNoOriginsNoCORS: without CLERK_AUTHORIZED_PARTIES nothing is allowed
// cross-origin, and no CORS header is sent at all.
func TestNoOriginsNoCORS(t *testing.T) {
	g := start(t, "sqlite", func(c *config.Config) { c.AuthorizedParties = nil })
	tok := g.mint(t, clerkemu.Session{UserID: "user_nocors"})
	for _, e := range []exchange{
		g.request(t, nil, "OPTIONS", "/gatehouse.v1.UserService/GetMe", nil, "Origin", "http://localhost:3000",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type"),
		g.request(t, nil, "GET", "/v1/me", nil, "Origin", "http://localhost:3000", "Authorization", "Bearer "+tok).want(t, 200),
	} {
		for k := range e.header {
			if strings.HasPrefix(k, "Access-Control-") || (k == "Vary" && strings.Contains(e.header.Get(k), "Origin")) {
				t.Errorf("%s: %v", k, e.header)
			}
		}
	}
}

// TestHTTPCallsPassTheInterceptors: a call over the HTTP listener is
// counted and logged like one over gRPC, since it is one.
func TestHTTPCallsPassTheInterceptors(t *testing.T) {
	g := start(t, "sqlite")
	g.request(t, nil, "GET", "/v1/projects", nil).want(t, 401)
	g.request(t, nil, "POST", "/gatehouse.v1.ProjectService/ListProjects", []byte(`{}`), "Content-Type", "application/json").want(t, 401)
	metrics := string(g.request(t, nil, "GET", "/metrics", nil).want(t, 200).body)
	for _, series := range []string{
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="ListProjects",grpc_service="gatehouse.v1.ProjectService",grpc_type="unary"} 2`,
		`gatehouse_auth_failures_total{reason="missing_token"} 2`,
	} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// TestStreamsStillFlush: a server stream over the HTTP listener delivers
// each message as it is sent (unary answers are written whole; streams are
// not held back). Health/Watch sends the status at once and then waits.
func TestStreamsStillFlush(t *testing.T) {
	g := start(t, "sqlite")
	for _, opts := range [][]connect.ClientOption{{connect.WithProtoJSON()}, {connect.WithGRPCWeb()}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		watch := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
			&http.Client{Transport: http1()}, g.httpURL+"/grpc.health.v1.Health/Watch", opts...)
		stream, err := watch.CallServerStream(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() {
			t.Fatalf("no first message: %v", stream.Err())
		}
		if got := stream.Msg().GetStatus(); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Watch: %v", got)
		}
		stream.Close()
		cancel()
	}
}
