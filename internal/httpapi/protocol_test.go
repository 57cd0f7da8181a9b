package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// TestProtocolOfRequest: withProtocol names each request's protocol as
// vanguard will serve it — by content type for gRPC and gRPC-Web, by path
// for Connect (POST, or GET with its query), REST for the routes — and the
// gRPC listener's calls, which never pass it, are gRPC.
func TestProtocolOfRequest(t *testing.T) {
	services := []protoreflect.ServiceDescriptor{gatehousev1.File_gatehouse_v1_user_proto.Services().Get(0)}
	tests := []struct {
		method, target, contentType string
		want                        string
	}{
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/grpc", ProtocolGRPC},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/grpc+proto", ProtocolGRPC},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/grpc-web+proto", ProtocolGRPCWeb},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/grpc-web", ProtocolGRPCWeb},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/json", ProtocolConnect},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/json; charset=utf-8", ProtocolConnect},
		{"POST", "/gatehouse.v1.UserService/GetMe", "application/proto", ProtocolConnect},
		{"GET", "/gatehouse.v1.UserService/GetMe?connect=v1&encoding=json&message=%7B%7D", "", ProtocolConnect},
		{"GET", "/v1/me", "", ProtocolREST},
		{"GET", "/v1/users?page_size=2", "", ProtocolREST},
		{"POST", "/v1/users", "application/json", ProtocolREST},
	}
	for _, tt := range tests {
		var got string
		h := withProtocol(services, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got = Protocol(r.Context())
		}))
		r := httptest.NewRequest(tt.method, tt.target, nil)
		if tt.contentType != "" {
			r.Header.Set("Content-Type", tt.contentType)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want {
			t.Errorf("%s %s (%s): protocol %q, want %q", tt.method, tt.target, tt.contentType, got, tt.want)
		}
	}
	if got := Protocol(t.Context()); got != ProtocolGRPC {
		t.Errorf("a context without one: protocol %q, want %q", got, ProtocolGRPC)
	}
}
