package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/auth"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// FloodOptions configures Flood.
type FloodOptions struct {
	// DatabaseURL is the database Gatehouse and the peer share; "" is a
	// fresh SQLite file in a temporary directory.
	DatabaseURL string
	// Requests is the number of invented credentials, a third each mt_,
	// ak_ and oat_, each sent once; default 10,000.
	Requests int
	// Concurrency is the number of flood workers; default 50.
	Concurrency int
	// Background is the number of workers of each kind of caller whose
	// credential is already verified — one kind with a session, one with a
	// machine token — that run beside each flood; default 4.
	Background int
	// Baseline is how long the background runs alone before each flood,
	// for comparison; default 3 s.
	Baseline time.Duration
	// Logger receives Gatehouse's logs; nil discards them.
	Logger *slog.Logger
}

// FloodResult is what Flood measured.
type FloodResult struct {
	Requests    int           `json:"requests"`
	Concurrency int           `json:"concurrency"`
	Background  int           `json:"background_workers_per_kind"`
	Baseline    time.Duration `json:"baseline_ns"`
	// VerifyBurst and VerifyRate are Gatehouse's budget of verify calls
	// per caller address (GATEHOUSE_VERIFY_RATE), as configured.
	VerifyBurst int       `json:"verify_burst"`
	VerifyRate  float64   `json:"verify_rate"`
	Gatehouse   FloodSide `json:"gatehouse"`
	Peer        FloodSide `json:"peer"`
}

// FloodSide is one side of the comparison.
type FloodSide struct {
	// Prefixes are the kinds of invented credential this side was sent:
	// the peer can verify machine tokens only.
	Prefixes []string `json:"prefixes"`
	// Flood is the run of invented credentials, each sent once. Its errors
	// are answers other than a refusal.
	Flood *Result `json:"flood"`
	// Unauthenticated counts the flood's UNAUTHENTICATED answers (HTTP 401
	// from the peer); ResourceExhausted those refused with no call to
	// Clerk because the caller was over its budget.
	Unauthenticated   int64 `json:"unauthenticated"`
	ResourceExhausted int64 `json:"resource_exhausted"`
	// Verifies are all the Backend API verify calls the emulator answered
	// from the flood's start until the background beside it stopped.
	Verifies VerifyCalls `json:"verifies"`
	// FloodVerifies are those of them for credentials Clerk never issued:
	// the flood's. BackgroundVerifies are the rest: the background's.
	FloodVerifies      int64 `json:"flood_verifies"`
	BackgroundVerifies int64 `json:"background_verifies"`
	// Bound is burst + rate × the flood's elapsed time: the most verify
	// calls Gatehouse's budget lets one address make in the run (0 for the
	// peer, which has none).
	Bound float64 `json:"bound,omitempty"`
	// Baseline is the background alone, before the flood; During, beside
	// it, for as long as it lasted.
	Baseline BackgroundRuns `json:"baseline"`
	During   BackgroundRuns `json:"during"`
	// BaselineVerifies are the verify calls made during Baseline.
	BaselineVerifies int64 `json:"baseline_verifies"`
}

// BackgroundRuns are the runs of the callers whose credentials are
// already verified. Their errors are answers other than OK.
type BackgroundRuns struct {
	Session *Result `json:"session"`
	Machine *Result `json:"machine"`
}

// VerifyCalls counts requests to the Backend API's verify endpoints.
type VerifyCalls struct {
	Machine int64 `json:"machine"`
	APIKey  int64 `json:"api_key"`
	OAuth   int64 `json:"oauth"`
	Total   int64 `json:"total"`
}

// since is the calls made between counts v0 and v.
func (v VerifyCalls) since(v0 VerifyCalls) VerifyCalls {
	return VerifyCalls{Machine: v.Machine - v0.Machine, APIKey: v.APIKey - v0.APIKey, OAuth: v.OAuth - v0.OAuth, Total: v.Total - v0.Total}
}

// floodTenant is the tenant the background machine names, and the flood
// with it.
const floodTenant = "org_flood"

// Flood starts a Clerk emulator, Gatehouse (as `gatehouse serve` builds it,
// via app.Start) and the peer in this process, all on 127.0.0.1, and sends
// each opts.Requests invented opaque credentials, well formed and unknown to
// Clerk, each once, while callers whose credentials are already verified
// keep calling. A verifier that asks Clerk about every credential it has
// not seen lets anyone spend the Backend API rate limit that every service
// on the same secret key shares; Gatehouse bounds the calls per caller
// address. Flood counts the verify calls each side makes, and measures the
// background callers beside the flood and without it.
//
// The peer verifies machine tokens with clerk-sdk-go's m2m_token.Verify; the
// SDK (v2.4.2) cannot verify API keys or OAuth tokens, so the peer is sent
// only the flood's mt_ third.
func Flood(ctx context.Context, opts FloodOptions) (*FloodResult, error) {
	if opts.Requests <= 0 {
		opts.Requests = 10_000
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	if opts.Background <= 0 {
		opts.Background = 4
	}
	if opts.Baseline <= 0 {
		opts.Baseline = 3 * time.Second
	}
	st, err := startStack(ctx, opts.DatabaseURL, opts.Logger, config.DefaultRefetchInterval, opts.Concurrency+opts.Background)
	if err != nil {
		return nil, err
	}
	defer st.close()
	emu, peerURL := st.emu, st.peerURL

	// The flood and the background each have their own connection, as
	// different callers would.
	conns, err := DialGRPC(st.app.GRPCAddr.String(), 2)
	if err != nil {
		return nil, err
	}
	defer CloseAll(conns)
	floodProjects := gatehousev1.NewProjectServiceClient(conns[0])
	users := gatehousev1.NewUserServiceClient(conns[1])
	projects := gatehousev1.NewProjectServiceClient(conns[1])
	floodHTTP, bgHTTP := NewHTTPClient(opts.Concurrency), NewHTTPClient(2*opts.Background)

	session, err := emu.MintSession(clerkemu.Session{UserID: "user_flood", TTL: time.Hour})
	if err != nil {
		return nil, err
	}
	machine, err := emu.MintMachineToken(clerkemu.Machine{ID: "mch_flood", Claims: map[string]any{"tenants": []string{floodTenant}}})
	if err != nil {
		return nil, err
	}
	asSession := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+session)
	}
	asMachine := func(ctx context.Context, token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, auth.TenantKey, floodTenant)
	}
	gatehouseBG := [2]Call{
		func(ctx context.Context, _ int64) error {
			_, err := users.GetMe(asSession(ctx), &gatehousev1.GetMeRequest{})
			return err
		},
		func(ctx context.Context, _ int64) error {
			_, err := projects.ListProjects(asMachine(ctx, machine), &gatehousev1.ListProjectsRequest{})
			return err
		},
	}
	peerBG := [2]Call{
		func(ctx context.Context, _ int64) error {
			return getBearer(ctx, bgHTTP, peerURL+"/me", session, http.StatusOK)
		},
		func(ctx context.Context, _ int64) error {
			return getBearer(ctx, bgHTTP, peerURL+"/machine", machine, http.StatusOK)
		},
	}
	// Each background credential is verified once — and Gatehouse caches
	// it — before anything is measured; GetMe also provisions the user, so
	// the peer finds the row.
	for i, call := range append(gatehouseBG[:], peerBG[:]...) {
		if err := call(ctx, 0); err != nil {
			return nil, fmt.Errorf("background call %d with a genuine credential: %w", i, err)
		}
	}

	invented := inventCredentials(opts.Requests)
	var machineOnly []string
	for _, tok := range invented {
		if strings.HasPrefix(tok, auth.MachineTokenPrefix) {
			machineOnly = append(machineOnly, tok)
		}
	}

	verifies := func() VerifyCalls {
		v := VerifyCalls{Machine: emu.MachineVerifies(), APIKey: emu.APIKeyVerifies(), OAuth: emu.OAuthVerifies()}
		v.Total = v.Machine + v.APIKey + v.OAuth
		return v
	}
	// side runs the background alone for opts.Baseline, then beside the
	// flood of tokens until the flood is done.
	side := func(name string, prefixes, tokens []string, flood func(context.Context, string) (codes.Code, error), bg [2]Call) (FloodSide, error) {
		s := FloodSide{Prefixes: prefixes}
		before := verifies().Total
		var err error
		if s.Baseline, err = background(ctx, name, opts.Background, opts.Baseline, nil, bg); err != nil {
			return s, err
		}
		v0, unknown0 := verifies(), emu.UnknownVerifies()
		s.BaselineVerifies = v0.Total - before

		stop := make(chan struct{})
		var g errgroup.Group
		g.Go(func() (err error) {
			s.During, err = background(ctx, name, opts.Background, 0, stop, bg)
			return err
		})
		var unauthenticated, exhausted atomic.Int64
		s.Flood, err = Run(ctx, Options{Name: name + " flood", Concurrency: opts.Concurrency, Requests: int64(len(tokens))},
			func(ctx context.Context, seq int64) error {
				code, err := flood(ctx, tokens[seq%int64(len(tokens))])
				switch code {
				case codes.Unauthenticated:
					unauthenticated.Add(1)
				case codes.ResourceExhausted:
					exhausted.Add(1)
				}
				return err
			})
		close(stop)
		if gerr := g.Wait(); err == nil {
			err = gerr
		}
		if err != nil {
			return s, err
		}
		v1 := verifies()
		s.Verifies = v1.since(v0)
		s.FloodVerifies = emu.UnknownVerifies() - unknown0
		s.BackgroundVerifies = s.Verifies.Total - s.FloodVerifies
		s.Unauthenticated, s.ResourceExhausted = unauthenticated.Load(), exhausted.Load()
		return s, nil
	}

	res := &FloodResult{
		Requests: opts.Requests, Concurrency: opts.Concurrency, Background: opts.Background, Baseline: opts.Baseline,
		VerifyBurst: st.cfg.VerifyBurst, VerifyRate: st.cfg.VerifyRate,
	}
	res.Gatehouse, err = side("gatehouse", []string{auth.MachineTokenPrefix, auth.APIKeyPrefix, auth.OAuthTokenPrefix}, invented, func(ctx context.Context, token string) (codes.Code, error) {
		_, err := floodProjects.ListProjects(asMachine(ctx, token), &gatehousev1.ListProjectsRequest{})
		switch code := status.Code(err); code {
		case codes.Unauthenticated, codes.ResourceExhausted:
			return code, nil
		case codes.OK:
			return code, errors.New("invented credential accepted")
		default:
			return code, err
		}
	}, gatehouseBG)
	if err != nil {
		return nil, err
	}
	res.Gatehouse.Bound = float64(res.VerifyBurst) + res.VerifyRate*res.Gatehouse.Flood.Elapsed.Seconds()

	res.Peer, err = side("peer", []string{auth.MachineTokenPrefix}, machineOnly, func(ctx context.Context, token string) (codes.Code, error) {
		if err := getBearer(ctx, floodHTTP, peerURL+"/machine", token, http.StatusUnauthorized); err != nil {
			return codes.Unknown, err
		}
		return codes.Unauthenticated, nil
	}, peerBG)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// background runs the callers of bg — [0] with a session, [1] with a
// machine token — with n workers each, for d or until stop is closed.
func background(ctx context.Context, side string, n int, d time.Duration, stop <-chan struct{}, bg [2]Call) (BackgroundRuns, error) {
	var runs BackgroundRuns
	var g errgroup.Group
	for i, r := range []**Result{&runs.Session, &runs.Machine} {
		name := side + [2]string{" session", " machine"}[i]
		g.Go(func() (err error) {
			*r, err = Run(ctx, Options{Name: name, Concurrency: n, Duration: d, Stop: stop}, bg[i])
			return err
		})
	}
	return runs, g.Wait()
}

// inventCredentials returns n distinct opaque credentials of the shape
// Clerk issues — a prefix and 32 base64url characters — that Clerk never
// issued: mt_, ak_ and oat_ in turn.
func inventCredentials(n int) []string {
	prefixes := [3]string{auth.MachineTokenPrefix, auth.APIKeyPrefix, auth.OAuthTokenPrefix}
	out := make([]string, n)
	body := make([]byte, 24)
	for i := range out {
		rand.Read(body)
		out[i] = prefixes[i%3] + base64.RawURLEncoding.EncodeToString(body)
	}
	return out
}
