package app_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// BenchmarkWarmCall is one call at a time over a loopback gRPC connection
// to Gatehouse as `gatehouse serve` builds it (SQLite, a JSON log line per
// call): the health check, and GetMe with a session seen before. The
// difference is what a signed-in user's warm call costs beyond gRPC,
// logging and metrics; allocs/op counts client and server together.
func BenchmarkWarmCall(b *testing.B) {
	c := newClerk(b)
	cfg := c.serveConfig(storetest.URL(b, "sqlite"))
	cfg.LogFormat = "json"
	g := c.startApp(b, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	token := g.mint(b, clerkemu.Session{UserID: "user_bench", TTL: time.Hour})
	signedIn := withToken(b.Context(), token)

	health := healthpb.NewHealthClient(g.conn)
	calls := []struct {
		name string
		call func() error
	}{
		{"health", func() error { _, err := health.Check(b.Context(), &healthpb.HealthCheckRequest{}); return err }},
		{"getme", func() error { _, err := g.users.GetMe(signedIn, &gatehousev1.GetMeRequest{}); return err }},
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
