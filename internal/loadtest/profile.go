package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"google.golang.org/grpc/metadata"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// ProfileOptions configures Profile.
type ProfileOptions struct {
	// DatabaseURL is the database; "" is a temporary SQLite file.
	DatabaseURL string
	// Scenario is one of ScenarioNames.
	Scenario string
	// Concurrency, Warmup and Duration are as in Options.
	Concurrency      int
	Warmup, Duration time.Duration
	// CPUProfile receives the CPU profile of the measured window.
	CPUProfile io.Writer
}

// Profile runs one scenario against an in-process stack (Gatehouse as
// app.Start builds it, the peer, a Clerk emulator) and writes a CPU profile
// of the measured window. Server and load share the process, so read the
// profile under the server's entry points, e.g.
//
//	go tool pprof -top -cum -focus 'grpc.\(\*Server\).handleStream' getme.prof
//	go tool pprof -top -cum -focus 'http.\(\*conn\).serve' peer.prof
//	go tool pprof -top -cum -focus 'vanguard.\(\*Transcoder\).ServeHTTP' getme-connect.prof
//
// Gatehouse logs as in production (JSON, one line per RPC) to /dev/null,
// so formatting and the write are in the profile.
func Profile(ctx context.Context, opts ProfileOptions) (*Result, error) {
	if opts.CPUProfile == nil {
		return nil, errors.New("profile: no CPU profile destination")
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	st, err := startStack(ctx, opts.DatabaseURL, slog.New(slog.NewJSONHandler(devNull, nil)),
		config.DefaultRefetchInterval, opts.Concurrency)
	if err != nil {
		return nil, err
	}
	defer st.close()
	conns, err := DialGRPC(st.app.GRPCAddr.String(), 1)
	if err != nil {
		return nil, err
	}
	defer CloseAll(conns)
	token, err := st.emu.MintSession(clerkemu.Session{UserID: "user_profile", TTL: time.Hour})
	if err != nil {
		return nil, err
	}
	// First sight provisions the user, so GetMe and the peer find the row.
	if _, err := gatehousev1.NewUserServiceClient(conns[0]).GetMe(
		metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), &gatehousev1.GetMeRequest{}); err != nil {
		return nil, fmt.Errorf("priming GetMe: %w", err)
	}
	t := &Target{Conns: conns, GatehouseURL: "http://" + st.app.HTTPAddr.String(), PeerURL: st.peerURL,
		HTTP: NewHTTPClient(opts.Concurrency), Tokens: []string{token}}
	call, err := t.NewCall(opts.Scenario)
	if err != nil {
		return nil, err
	}
	if opts.Warmup > 0 {
		if _, err := Run(ctx, Options{Concurrency: opts.Concurrency, Duration: opts.Warmup}, call); err != nil {
			return nil, err
		}
	}
	if err := pprof.StartCPUProfile(opts.CPUProfile); err != nil {
		return nil, err
	}
	r, err := Run(ctx, Options{Name: opts.Scenario, Concurrency: opts.Concurrency, Duration: opts.Duration}, call)
	pprof.StopCPUProfile()
	return r, err
}
