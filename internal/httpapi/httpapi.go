// Package httpapi serves Gatehouse's gRPC services on the HTTP listener too,
// for browsers and curl: the Connect protocol (JSON and binary, HTTP/1.1 and
// HTTP/2), gRPC-Web, and the JSON routes declared in the proto with
// google.api.http (GET /v1/me, PATCH /v1/projects/{id}, …).
//
// It implements no handler of its own. Vanguard (connectrpc.com/vanguard)
// turns each request into a gRPC call on the same *grpc.Server that serves
// the gRPC listener, so every call passes the same interceptors — auth,
// access rules, errors, metrics, logging — and reaches the same tenant-scoped
// store. Vanguard also maps the result back: gRPC codes to HTTP statuses and
// google.rpc.Status error bodies with their details, as the Connect protocol
// and google.api.http transcoding define them.
//
// What this package adds around it: a bound on request and response messages
// (the gRPC server's own limit); the update mask of a REST PATCH taken from
// the body's fields when the query names none; a JSON POST to an RPC path
// taken as Connect even without its protocol header (curl); a unary answer
// written in one piece; a JSON error when a REST request matches no route;
// the call's protocol, for its log line (Protocol);
// and CORS for the browsers' origins (the same list Clerk's azp is checked
// against).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Options configure New.
type Options struct {
	// MaxMessageBytes bounds each request and response message; set it to
	// the gRPC server's max receive size so both listeners take the same.
	// A larger request is RESOURCE_EXHAUSTED (HTTP 429 in Connect and REST,
	// grpc-status 8 in gRPC-Web). Required.
	MaxMessageBytes int
	// AllowedOrigins may call from a browser (CORS). None: no CORS headers
	// at all, so browsers refuse cross-origin calls.
	AllowedOrigins []string
}

// API is the HTTP handler for every service registered on a grpc.Server.
type API struct {
	handler  http.Handler
	prefixes []string
}

// New builds the API for the services registered on srv (register them
// all first). It fails if a service's descriptor or HTTP rules cannot be
// used.
func New(srv *grpc.Server, o Options) (*API, error) {
	if o.MaxMessageBytes <= 0 {
		return nil, errors.New("httpapi: MaxMessageBytes is required")
	}
	transcoder, err := vanguardgrpc.NewTranscoder(srv, vanguard.WithDefaultServiceOptions(
		vanguard.WithMaxMessageBufferBytes(uint32(o.MaxMessageBytes)),
		// A query parameter that names no field is ignored, as
		// cache-busters (?_=123) need; vanguard would otherwise answer
		// UNKNOWN (500) rather than INVALID_ARGUMENT.
		vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{DiscardUnknownQueryParams: true}),
	))
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	services, err := descriptors(srv)
	if err != nil {
		return nil, err
	}
	h, err := withInferredMasks(services, transcoder, o.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	h = connectAtRPCPaths(services, h)
	h = unaryWritesOnce(services, h)
	h = restRouteErrors(h)
	h = withProtocol(services, h)
	return &API{handler: CORS(o.AllowedOrigins)(h), prefixes: prefixes(services)}, nil
}

// connectAtRPCPaths marks a POST of JSON or binary protobuf to an RPC path
// ("/gatehouse.v1.UserService/GetMe") as the Connect protocol's unary call
// it is. Vanguard tells Connect from REST by the Connect-Protocol-Version
// header, which Connect's clients send but a person with curl, following
// Connect's own examples, leaves out; no REST route lives at an RPC path,
// so the header adds nothing there.
func connectAtRPCPaths(services []protoreflect.ServiceDescriptor, next http.Handler) http.Handler {
	rpcPrefixes := rpcPrefixes(services)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" &&
			isConnectUnaryType(r.Header.Get("Content-Type")) && hasAnyPrefix(r.URL.Path, rpcPrefixes) {
			r = r.Clone(r.Context())
			r.Header.Set("Connect-Protocol-Version", "1")
		}
		next.ServeHTTP(w, r)
	})
}

// The protocols a call can come in over, as Protocol names them.
const (
	ProtocolGRPC    = "grpc" // on either listener (h2c on the HTTP one)
	ProtocolGRPCWeb = "grpc-web"
	ProtocolConnect = "connect"
	ProtocolREST    = "rest" // the google.api.http routes
)

type protocolKey struct{}

// Protocol names the protocol of the call whose context is ctx, for its log
// line: what withProtocol recorded for a call on the HTTP listener, and
// ProtocolGRPC for any other (the gRPC listener's).
func Protocol(ctx context.Context) string {
	if p, ok := ctx.Value(protocolKey{}).(string); ok {
		return p
	}
	return ProtocolGRPC
}

// withProtocol records in the request's context which protocol it speaks.
// The gRPC server handles the call in a context derived from the
// request's, so that Protocol finds it there; a client cannot set it.
func withProtocol(services []protoreflect.ServiceDescriptor, next http.Handler) http.Handler {
	rpcPrefixes := rpcPrefixes(services)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := ProtocolREST
		switch ct := strings.ToLower(r.Header.Get("Content-Type")); {
		case strings.HasPrefix(ct, "application/grpc-web"):
			p = ProtocolGRPCWeb
		case strings.HasPrefix(ct, "application/grpc"):
			p = ProtocolGRPC
		case hasAnyPrefix(r.URL.Path, rpcPrefixes):
			// No REST route lives at an RPC path (connectAtRPCPaths).
			p = ProtocolConnect
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), protocolKey{}, p)))
	})
}

func rpcPrefixes(services []protoreflect.ServiceDescriptor) []string {
	prefixes := make([]string, len(services))
	for i, sd := range services {
		prefixes[i] = "/" + string(sd.FullName()) + "/"
	}
	return prefixes
}

func hasAnyPrefix(path string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(path, p) })
}

// restRouteErrors answers a REST request that matches no route (404), or
// matches one only by path (405, with Allow), with a google.rpc.Status in
// JSON, as every other REST error is — NOT_FOUND or UNIMPLEMENTED, as
// grpc-gateway does — where vanguard writes plain text: it has not picked a
// method, so not a protocol either. Requests to RPC paths keep the bare 404
// and 405 that connect-go answers too, which Connect clients read as
// UNIMPLEMENTED. Install it inside withProtocol.
func restRouteErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Protocol(r.Context()) != ProtocolREST {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&routeErrorWriter{ResponseWriter: w}, r)
	})
}

// routeErrorWriter turns a plain-text 404 or 405 into its JSON status.
type routeErrorWriter struct {
	http.ResponseWriter
	replaced bool // the body is written; drop the plain text
}

func (w *routeErrorWriter) WriteHeader(code int) {
	h := w.Header()
	if (code != http.StatusNotFound && code != http.StatusMethodNotAllowed) ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	c := codes.NotFound
	if code == http.StatusMethodNotAllowed {
		c = codes.Unimplemented
	}
	body, err := json.Marshal(restError{Code: int(c), Message: http.StatusText(code), Details: []any{}})
	if err != nil { // cannot happen: a fixed shape
		w.ResponseWriter.WriteHeader(code)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(code)
	w.ResponseWriter.Write(body) //nolint:errcheck // the client went away; nothing to do
	w.replaced = true
}

func (w *routeErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *routeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// restError is google.rpc.Status as REST errors carry it.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

// unaryWritesOnce hands the handler of a unary call — every REST route, and
// every RPC path but the streaming methods' — a ResponseWriter whose Flush
// does nothing. Vanguard and gRPC flush as they go (the headers and message,
// the trailers), and over HTTP/1.1 each flush is a write of its own, then
// one more for the chunked body's end; unflushed, net/http writes a small
// answer whole when the handler returns, in one write with a
// Content-Length. A unary answer is complete only then anyway. Streams keep
// their flushes.
func unaryWritesOnce(services []protoreflect.ServiceDescriptor, next http.Handler) http.Handler {
	streaming := map[string]bool{}
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			if md := methods.Get(i); md.IsStreamingClient() || md.IsStreamingServer() {
				streaming["/"+string(sd.FullName())+"/"+string(md.Name())] = true
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if streaming[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(unflushed{w}, r)
	})
}

// unflushed is a ResponseWriter whose Flush is left to net/http.
type unflushed struct{ http.ResponseWriter }

func (unflushed) Flush() {}

func (w unflushed) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func isConnectUnaryType(contentType string) bool {
	mediaType, _, _ := strings.Cut(contentType, ";")
	switch strings.TrimSpace(strings.ToLower(mediaType)) {
	case "application/json", "application/proto":
		return true
	}
	return false
}

// ServeHTTP serves a Connect, gRPC-Web or REST request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Prefixes are the path prefixes the API answers under, for a ServeMux:
// "/gatehouse.v1.UserService/" and the like for Connect and gRPC-Web, and
// the first segment of each google.api.http route ("/v1/") for REST. Other
// paths on the listener (webhooks, health, metrics) stay outside it, and so
// outside CORS.
func (a *API) Prefixes() []string { return slices.Clone(a.prefixes) }

// descriptors looks up the descriptor of every service registered on srv.
func descriptors(srv *grpc.Server) ([]protoreflect.ServiceDescriptor, error) {
	var services []protoreflect.ServiceDescriptor
	for name := range srv.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, fmt.Errorf("httpapi: service %s: %w", name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("httpapi: %s is not a service", name)
		}
		services = append(services, sd)
	}
	slices.SortFunc(services, func(a, b protoreflect.ServiceDescriptor) int {
		return strings.Compare(string(a.FullName()), string(b.FullName()))
	})
	return services, nil
}

func prefixes(services []protoreflect.ServiceDescriptor) []string {
	ps := rpcPrefixes(services)
	for _, sd := range services {
		for _, b := range httpRules(sd) {
			_, path := rulePattern(b.rule)
			if seg, _, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/"); ok && seg != "" && !strings.ContainsAny(seg, "{*") {
				if p := "/" + seg + "/"; !slices.Contains(ps, p) {
					ps = append(ps, p)
				}
			}
		}
	}
	return ps
}

// httpBinding is one google.api.http rule and the method it routes to.
type httpBinding struct {
	method protoreflect.MethodDescriptor
	rule   *annotations.HttpRule
}

// httpRules returns the google.api.http rules of sd's methods, additional
// bindings included.
func httpRules(sd protoreflect.ServiceDescriptor) []httpBinding {
	var out []httpBinding
	methods := sd.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
		if !ok || rule == nil {
			continue
		}
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			out = append(out, httpBinding{md, r})
		}
	}
	return out
}

// rulePattern returns a rule's HTTP method and path template.
func rulePattern(rule *annotations.HttpRule) (method, path string) {
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}
