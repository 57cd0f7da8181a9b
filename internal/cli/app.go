package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/auth"
	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/projectapi"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/userapi"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// App is a running Gatehouse.
type App struct {
	// GRPCAddr and HTTPAddr are the bound listener addresses (useful with
	// port 0).
	GRPCAddr, HTTPAddr net.Addr
	// Store is the open database, for tests that inspect it.
	Store *store.Store
	// Registry holds the Prometheus metrics.
	Registry *prometheus.Registry

	wait func() error
}

// Wait blocks until the App has stopped (its context ended, or a listener
// failed) and its store is closed.
func (a *App) Wait() error { return a.wait() }

// Start opens the store (migrating it if cfg.Migrate), builds every part from
// cfg, binds both listeners and serves until ctx ends.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (*App, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	app, err := start(ctx, cfg, log, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	return app, nil
}

func start(ctx context.Context, cfg *config.Config, log *slog.Logger, st *store.Store) (*App, error) {
	if cfg.Migrate {
		if err := st.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()

	// Keys: networkless from CLERK_JWT_KEY, else the JWKS from the Backend API.
	var backend *clerk.Client
	if cfg.ClerkSecretKey != "" {
		backend = clerk.New(clerk.Config{APIURL: cfg.ClerkAPIURL, SecretKey: cfg.ClerkSecretKey})
	}
	var (
		keys      auth.KeySource
		keysReady func() bool
	)
	if cfg.ClerkJWTKey != "" {
		sk, err := clerk.NewStaticKey(cfg.ClerkJWTKey)
		if err != nil {
			return nil, fmt.Errorf("CLERK_JWT_KEY: %w", err)
		}
		keys, keysReady = sk, sk.Ready
	} else {
		fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_jwks_fetches_total",
			Help: "JWKS fetches from the Clerk Backend API, by result.",
		}, []string{"result"})
		reg.MustRegister(fetches)
		ks := backend.NewKeySet(clerk.KeySetOptions{
			RefetchInterval: cfg.JWKSRefetchInterval,
			OnFetch:         func(result string) { fetches.WithLabelValues(result).Inc() },
		})
		// Load the keys now so the first calls need not wait; a failure here
		// is retried by the first token with an unknown kid.
		if err := ks.Refresh(ctx); err != nil {
			log.Warn("initial JWKS fetch failed; will retry on demand", "error", err)
		}
		keys, keysReady = ks, ks.Ready
	}

	sessions, err := auth.NewSessionVerifier(auth.SessionConfig{
		Keys:              keys,
		Issuer:            cfg.Issuer,
		AuthorizedParties: cfg.AuthorizedParties,
		RoleDefaults:      cfg.RolePermissions,
	})
	if err != nil {
		return nil, err
	}
	var machines *auth.MachineVerifier
	var users provision.UserSource
	if backend != nil {
		machines = auth.NewMachineVerifier(auth.MachineConfig{Tokens: backend})
		users = backend
	}
	rules, err := auth.LoadRules(
		gatehousev1.File_gatehouse_v1_user_proto.Services().ByName("UserService"),
		gatehousev1.File_gatehouse_v1_project_proto.Services().ByName("ProjectService"),
	)
	if err != nil {
		return nil, fmt.Errorf("refusing to start: %w", err)
	}
	provisioner := provision.New(st.Client, users, provision.Options{})
	authn, err := auth.New(auth.Config{
		Sessions:    sessions,
		Machines:    machines,
		Rules:       rules,
		Provisioner: provisioner,
		Roles:       provisioner,
		Registerer:  reg,
	})
	if err != nil {
		return nil, err
	}

	receiver, err := webhook.New(webhook.Config{
		Client:        st.Client,
		Dialect:       st.Dialect,
		Secret:        cfg.WebhookSecret,
		Logger:        log,
		Registerer:    reg,
		OnUserChanged: provisioner.Forget,
	})
	if err != nil {
		return nil, fmt.Errorf("CLERK_WEBHOOK_SIGNING_SECRET: %w", err)
	}

	tokens := pagetoken.New(cfg.PageTokenKey)
	srv, err := server.New(server.Options{
		Logger:   log,
		Registry: reg,
		Auth:     server.Interceptors{Unary: grpcauth.UnaryServerInterceptor(authn.AuthFunc), Stream: grpcauth.StreamServerInterceptor(authn.AuthFunc)},
		Errors:   server.Interceptors{Unary: derrors.UnaryServerInterceptor(log), Stream: derrors.StreamServerInterceptor(log)},
		Users:    userapi.New(st.Client, tokens, provisioner),
		Projects: projectapi.New(st.Client, tokens),
		Webhooks: receiver,
		ReadyChecks: map[string]func(context.Context) error{
			"database": func(ctx context.Context) error {
				if err := st.Ping(ctx); err != nil {
					log.Warn("readiness: database unreachable", "error", err)
					return errors.New("unreachable")
				}
				return nil
			},
			"keys": func(context.Context) error {
				if !keysReady() {
					return errors.New("not loaded")
				}
				return nil
			},
		},
	})
	if err != nil {
		return nil, err
	}

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("GATEHOUSE_GRPC_ADDR: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return nil, fmt.Errorf("GATEHOUSE_HTTP_ADDR: %w", err)
	}
	log.Info("gatehouse listening",
		"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(),
		"database", st.Dialect, "issuer", cfg.Issuer, "machine_tokens", machines != nil)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.ServeGRPC(gctx, grpcLis) })
	g.Go(func() error { return srv.ServeHTTP(gctx, httpLis) })
	return &App{
		GRPCAddr: grpcLis.Addr(),
		HTTPAddr: httpLis.Addr(),
		Store:    st,
		Registry: reg,
		wait: func() error {
			err := g.Wait()
			if cerr := st.Close(); cerr != nil {
				log.Warn("closing the store", "error", cerr)
			}
			log.Info("gatehouse stopped")
			return err
		},
	}, nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
