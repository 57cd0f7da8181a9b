package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/app"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// BenchmarkWarmCall is one call at a time over a loopback gRPC connection
// to Gatehouse as `gatehouse serve` builds it (SQLite, JSON log line per
// call): the health check, and GetMe with a session seen before. The
// difference is what a signed-in user's warm call costs beyond gRPC,
// logging and metrics; allocs/op counts client and server together.
func BenchmarkWarmCall(b *testing.B) {
	emu, err := clerkemu.New(clerkemu.Options{AutoUsers: true})
	if err != nil {
		b.Fatal(err)
	}
	clerk := httptest.NewServer(emu.Handler())
	defer clerk.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.Start(ctx, &config.Config{
		DatabaseURL:         filepath.Join(b.TempDir(), "gatehouse.db"),
		GRPCAddr:            "127.0.0.1:0",
		HTTPAddr:            "127.0.0.1:0",
		ClerkSecretKey:      emu.SecretKey(),
		Issuer:              emu.Issuer(),
		ClerkAPIURL:         clerk.URL + "/v1",
		WebhookSecret:       emu.WebhookSecret(),
		JWKSRefetchInterval: 5 * time.Second,
		PageTokenKey:        config.DerivePageTokenKey(emu.WebhookSecret()),
		Migrate:             true,
		LogFormat:           "json",
	}, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); a.Wait() }()
	conn, err := grpc.NewClient(a.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	token, err := emu.MintSession(clerkemu.Session{UserID: "user_bench", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	signedIn := withToken(ctx, token)

	health := healthpb.NewHealthClient(conn)
	users := gatehousev1.NewUserServiceClient(conn)
	calls := []struct {
		name string
		call func() error
	}{
		{"health", func() error { _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); return err }},
		{"getme", func() error { _, err := users.GetMe(signedIn, &gatehousev1.GetMeRequest{}); return err }},
	}
	for _, c := range calls {
		b.Run(c.name, func(b *testing.B) {
			if err := c.call(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
