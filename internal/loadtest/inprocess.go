package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/app"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// stack is a Clerk emulator, Gatehouse (built by app.Start exactly as
// `gatehouse serve` builds it) and the peer, all in this process on
// 127.0.0.1 ports, sharing one database.
type stack struct {
	emu     *clerkemu.Emulator
	app     *app.App
	cfg     *config.Config // what app.Start was given
	peerURL string
	close   func()
}

// startStack starts a stack on dsn ("" is a temporary SQLite file). log
// gets Gatehouse's logs (nil discards them); refetch is its JWKS refetch
// window; conns sizes the peer's connection pool to the emulator.
func startStack(ctx context.Context, dsn string, log *slog.Logger, refetch time.Duration, conns int) (_ *stack, err error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var cleanups []func()
	s := &stack{close: func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	if s.emu, err = clerkemu.New(clerkemu.Options{AutoUsers: true}); err != nil {
		return nil, err
	}
	emuURL, stopEmu, err := serveHTTP(s.emu.Handler())
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, stopEmu)

	if dsn == "" {
		dir, err := os.MkdirTemp("", "gatehouse-bench-")
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		dsn = filepath.Join(dir, "gatehouse.db")
	}
	// Besides the addresses, the emulator's and startStack's parameters,
	// the settings are config.Load's defaults — what `gatehouse serve` runs
	// with unconfigured — stated rather than left to how app.Start treats a
	// zero value.
	s.cfg = &config.Config{
		DatabaseURL:         dsn,
		GRPCAddr:            "127.0.0.1:0",
		HTTPAddr:            "127.0.0.1:0",
		ClerkSecretKey:      s.emu.SecretKey(),
		Issuer:              s.emu.Issuer(),
		ClerkAPIURL:         emuURL + "/v1",
		WebhookSecret:       s.emu.WebhookSecret(),
		JWKSRefetchInterval: refetch,
		PageTokenKey:        config.DerivePageTokenKey(s.emu.WebhookSecret()),
		Migrate:             true,
		VerifyBurst:         config.DefaultVerifyBurst,
		VerifyRate:          config.DefaultVerifyRate,
		WebhookRetention:    config.DefaultWebhookRetention,
		LogFormat:           "json",
	}
	appCtx, cancel := context.WithCancel(ctx)
	a, err := app.Start(appCtx, s.cfg, log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start gatehouse: %w", err)
	}
	s.app = a
	cleanups = append(cleanups, func() {
		cancel()
		a.Wait()
	})

	peer, err := NewPeer(PeerConfig{
		Client: a.Store.Client, APIURL: emuURL + "/v1", SecretKey: s.emu.SecretKey(),
		HTTPClient: NewHTTPClient(conns),
	})
	if err != nil {
		return nil, err
	}
	peerURL, stopPeer, err := serveHTTP(peer)
	if err != nil {
		return nil, err
	}
	s.peerURL = peerURL
	cleanups = append(cleanups, stopPeer)
	return s, nil
}

// serveHTTP serves h on a fresh 127.0.0.1 port until stop is called.
func serveHTTP(h http.Handler) (url string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	return "http://" + lis.Addr().String(), func() { srv.Close() }, nil
}
