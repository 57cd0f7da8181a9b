package client_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/client"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// fakeUsers answers GetMe with code fail times, then OK, and records the
// metadata of every attempt that reached it.
type fakeUsers struct {
	gatehousev1.UnimplementedUserServiceServer

	mu      sync.Mutex
	fail    int
	code    codes.Code
	auth    []string
	tenants []string
}

func (f *fakeUsers) GetMe(ctx context.Context, _ *gatehousev1.GetMeRequest) (*gatehousev1.GetMeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.tenants = append(f.tenants, md.Get(client.TenantHeader)...)
	if f.fail > 0 {
		f.fail--
		return nil, status.Error(f.code, "try again")
	}
	return &gatehousev1.GetMeResponse{User: &gatehousev1.User{Id: "user_test"}}, nil
}

func (f *fakeUsers) seen() (auth, tenants []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...), append([]string(nil), f.tenants...)
}

// startServer serves health and users on a plaintext loopback port and
// returns its address.
func startServer(t *testing.T, users *fakeUsers) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	gatehousev1.RegisterUserServiceServer(s, users)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, target string, tokens client.TokenSource, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := client.Dial(target, tokens, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestDialRetriesOnlyUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		fail     int
		code     codes.Code
		want     codes.Code
		attempts int
	}{
		{"UNAVAILABLE twice heals on the third attempt", 2, codes.Unavailable, codes.OK, 3},
		{"UNAVAILABLE every time gives up after 4 attempts", 100, codes.Unavailable, codes.Unavailable, 4},
		{"PERMISSION_DENIED is not retried", 100, codes.PermissionDenied, codes.PermissionDenied, 1},
		{"UNAUTHENTICATED is not retried", 100, codes.Unauthenticated, codes.Unauthenticated, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := &fakeUsers{fail: tt.fail, code: tt.code}
			conn := dial(t, startServer(t, users), client.StaticToken("tok_123"))
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()

			res, err := gatehousev1.NewUserServiceClient(conn).GetMe(ctx, &gatehousev1.GetMeRequest{})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("GetMe: code %v, want %v (err %v)", got, tt.want, err)
			}
			if tt.want == codes.OK && res.GetUser().GetId() != "user_test" {
				t.Errorf("GetMe user = %q, want user_test", res.GetUser().GetId())
			}
			auth, _ := users.seen()
			want := make([]string, tt.attempts)
			for i := range want {
				want[i] = "Bearer tok_123"
			}
			if diff := cmp.Diff(want, auth); diff != "" {
				t.Errorf("authorization per attempt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTokenSourceIsAskedOnEveryAttempt(t *testing.T) {
	users := &fakeUsers{fail: 1, code: codes.Unavailable}
	var mu sync.Mutex
	n := 0
	tokens := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return []string{"first", "second"}[min(n-1, 1)], nil
	}
	conn := dial(t, startServer(t, users), tokens)
	if _, err := gatehousev1.NewUserServiceClient(conn).GetMe(t.Context(), &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	auth, _ := users.seen()
	if diff := cmp.Diff([]string{"Bearer first", "Bearer second"}, auth); diff != "" {
		t.Errorf("authorization per attempt (-want +got):\n%s", diff)
	}
}

func TestTokenSourceErrorFailsTheCallUnauthenticated(t *testing.T) {
	users := &fakeUsers{}
	tokens := func(context.Context) (string, error) { return "", errors.New("clerk is down") }
	conn := dial(t, startServer(t, users), tokens)
	_, err := gatehousev1.NewUserServiceClient(conn).GetMe(t.Context(), &gatehousev1.GetMeRequest{})
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Fatalf("GetMe: code %v, want Unauthenticated (err %v)", got, err)
	}
	if auth, _ := users.seen(); len(auth) != 0 {
		t.Errorf("the server saw %d calls, want none", len(auth))
	}
}

func TestWithTenantSendsTheTenantHeader(t *testing.T) {
	users := &fakeUsers{}
	conn := dial(t, startServer(t, users), client.StaticToken("mt_123"))
	ctx := client.WithTenant(t.Context(), "org_acme")
	if _, err := gatehousev1.NewUserServiceClient(conn).GetMe(ctx, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	auth, tenants := users.seen()
	if diff := cmp.Diff([]string{"Bearer mt_123"}, auth); diff != "" {
		t.Errorf("authorization (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"org_acme"}, tenants); diff != "" {
		t.Errorf("%s (-want +got):\n%s", client.TenantHeader, diff)
	}
}

func TestHealthNeedsNoToken(t *testing.T) {
	conn := dial(t, startServer(t, &fakeUsers{}), nil)
	res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", res.GetStatus())
	}
}

// A target that is not a loopback address gets TLS, so a plaintext server
// (here reached through a resolver that hides its address) is never sent the
// token in the clear.
func TestDialUsesTLSBeyondLoopback(t *testing.T) {
	users := &fakeUsers{}
	addr := startServer(t, users)
	r := manual.NewBuilderWithScheme("gatehousetest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: addr}}})
	conn := dial(t, "gatehousetest:///gatehouse.example.com:443", client.StaticToken("tok_secret"), grpc.WithResolvers(r))

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := gatehousev1.NewUserServiceClient(conn).GetMe(ctx, &gatehousev1.GetMeRequest{})
	if got := status.Code(err); got != codes.Unavailable {
		t.Fatalf("GetMe over TLS to a plaintext server: code %v, want Unavailable (err %v)", got, err)
	}
	if auth, _ := users.seen(); len(auth) != 0 {
		t.Errorf("the plaintext server saw %d calls, want none", len(auth))
	}
}

func TestTokenCredentialsRequireTLSUnlessAllowed(t *testing.T) {
	if !(client.TokenCredentials{Tokens: client.StaticToken("t")}).RequireTransportSecurity() {
		t.Error("TokenCredentials without AllowInsecure does not require transport security")
	}
	if (client.TokenCredentials{Tokens: client.StaticToken("t"), AllowInsecure: true}).RequireTransportSecurity() {
		t.Error("TokenCredentials with AllowInsecure requires transport security")
	}
}
