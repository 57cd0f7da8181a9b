package httpapi_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// TestPrefixes: the API claims the services' RPC paths and the first
// segment of the proto's REST routes, and nothing else on the listener.
func TestPrefixes(t *testing.T) {
	srv := grpc.NewServer()
	gatehousev1.RegisterUserServiceServer(srv, gatehousev1.UnimplementedUserServiceServer{})
	gatehousev1.RegisterProjectServiceServer(srv, gatehousev1.UnimplementedProjectServiceServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	api, err := httpapi.New(srv, httpapi.Options{MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/gatehouse.v1.ProjectService/", "/gatehouse.v1.UserService/", "/grpc.health.v1.Health/", "/v1/"}
	if d := cmp.Diff(want, api.Prefixes()); d != "" {
		t.Errorf("Prefixes (-want +got):\n%s", d)
	}
	if _, err := httpapi.New(srv, httpapi.Options{}); err == nil {
		t.Error("New without MaxMessageBytes succeeded")
	}
}
