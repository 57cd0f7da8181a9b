package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// KidFloodOptions configures KidFlood.
type KidFloodOptions struct {
	// DatabaseURL is the database Gatehouse and the peer share; "" is a
	// fresh SQLite file in a temporary directory.
	DatabaseURL string
	// Requests is the number of forged tokens sent to each side; default
	// 10,000.
	Requests int
	// Concurrency is the number of workers; default 50.
	Concurrency int
	// RefetchInterval is Gatehouse's JWKS refetch window; default
	// config.DefaultRefetchInterval (5 s).
	RefetchInterval time.Duration
	// Logger receives Gatehouse's logs; nil discards them.
	Logger *slog.Logger
}

// KidFloodResult is what KidFlood measured.
type KidFloodResult struct {
	Requests        int           `json:"requests"`
	Concurrency     int           `json:"concurrency"`
	RefetchInterval time.Duration `json:"refetch_interval_ns"`
	Gatehouse       KidFloodSide  `json:"gatehouse"`
	Peer            KidFloodSide  `json:"peer"`
}

// KidFloodSide is one side of the comparison.
type KidFloodSide struct {
	// Load is the run: requests, latency, and as errors any answer other
	// than the expected rejection (UNAUTHENTICATED, or HTTP 401).
	Load *Result `json:"load"`
	// JWKSFetches is how many times the emulator served GET /v1/jwks
	// during the run.
	JWKSFetches int64 `json:"jwks_fetches"`
	// Windows is the number of refetch windows the run touched: the most
	// fetches "at most one per window" allows.
	Windows int64 `json:"windows"`
}

// KidFlood starts a Clerk emulator, Gatehouse (as `gatehouse serve` builds
// it, via app.Start) and the peer in this process, all on 127.0.0.1, and
// sends each opts.Requests session tokens signed by a key Clerk never
// issued, each naming a random kid. It counts the JWKS fetches each side
// makes: a verifier that refetches on every unknown kid lets anyone with a
// laptop make it hammer Clerk (and hit Clerk's rate limits for the whole
// application).
func KidFlood(ctx context.Context, opts KidFloodOptions) (*KidFloodResult, error) {
	if opts.Requests <= 0 {
		opts.Requests = 10_000
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	if opts.RefetchInterval <= 0 {
		opts.RefetchInterval = config.DefaultRefetchInterval
	}
	st, err := startStack(ctx, opts.DatabaseURL, opts.Logger, opts.RefetchInterval, opts.Concurrency)
	if err != nil {
		return nil, err
	}
	defer st.close()
	emu, peerURL := st.emu, st.peerURL

	conns, err := DialGRPC(st.app.GRPCAddr.String(), 1)
	if err != nil {
		return nil, err
	}
	defer CloseAll(conns)
	users := gatehousev1.NewUserServiceClient(conns[0])
	httpc := NewHTTPClient(opts.Concurrency)

	// Both sides must accept a genuine token, or a rejection proves
	// nothing.
	good, err := emu.MintSession(clerkemu.Session{UserID: "user_kidflood"})
	if err != nil {
		return nil, err
	}
	if _, err := users.GetMe(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+good), &gatehousev1.GetMeRequest{}); err != nil {
		return nil, fmt.Errorf("gatehouse rejects a genuine token: %w", err)
	}
	if err := getBearer(ctx, httpc, peerURL+"/me", good, http.StatusOK); err != nil {
		return nil, fmt.Errorf("the peer rejects a genuine token: %w", err)
	}

	forged, err := forgeTokens(emu, opts.Requests)
	if err != nil {
		return nil, err
	}
	res := &KidFloodResult{Requests: opts.Requests, Concurrency: opts.Concurrency, RefetchInterval: opts.RefetchInterval}
	run := func(name string, call Call) (KidFloodSide, error) {
		before := emu.JWKSFetches()
		r, err := Run(ctx, Options{Name: name, Concurrency: opts.Concurrency, Requests: int64(opts.Requests)}, call)
		if err != nil {
			return KidFloodSide{}, err
		}
		return KidFloodSide{
			Load:        r,
			JWKSFetches: emu.JWKSFetches() - before,
			Windows:     int64(r.Elapsed/opts.RefetchInterval) + 1,
		}, nil
	}
	res.Gatehouse, err = run("gatehouse GetMe", func(ctx context.Context, seq int64) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+forged[seq%int64(len(forged))])
		_, err := users.GetMe(ctx, &gatehousev1.GetMeRequest{})
		if status.Code(err) == codes.Unauthenticated {
			return nil
		}
		if err == nil {
			return errors.New("forged token accepted")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Peer, err = run("peer GET /me", func(ctx context.Context, seq int64) error {
		return getBearer(ctx, httpc, peerURL+"/me", forged[seq%int64(len(forged))], http.StatusUnauthorized)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// forgeTokens mints n well-formed session tokens signed by a fresh RSA key
// Clerk never issued, each with a random kid. Signing is the slow part, so
// it runs on every core.
func forgeTokens(emu *clerkemu.Emulator, n int) ([]string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	var g errgroup.Group
	workers := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	next := 0
	for range workers {
		g.Go(func() error {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return nil
				}
				tok, err := emu.MintSession(clerkemu.Session{
					UserID:     "user_kidflood",
					KeyID:      "ins_" + rand.Text(),
					SigningKey: key,
				})
				if err != nil {
					return err
				}
				out[i] = tok
			}
		})
	}
	return out, g.Wait()
}
