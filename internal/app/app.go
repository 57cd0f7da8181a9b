// Package app builds a running Gatehouse from a Config: it opens the store,
// builds the key source, the verifiers, the webhook receiver and the
// handlers, binds the gRPC and HTTP listeners and serves until its context
// ends. `gatehouse serve` and `gatehouse dev` start it this way, and so do the
// end-to-end tests and gatehouse-bench, with port 0 and a temporary database.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/auth"
	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/projectapi"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/userapi"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// subscribeWait bounds how long Start waits to hear other replicas' cache
// invalidations before it returns.
const subscribeWait = 10 * time.Second

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

// Option adds to what Start builds beyond cfg.
type Option func(*options)

type options struct {
	routes map[string]http.Handler
}

// WithHTTPRoute serves h at pattern (a ServeMux pattern) on the HTTP
// listener, behind the same CORS policy as the API. gatehouse dev adds its
// token endpoint this way; serve adds nothing.
func WithHTTPRoute(pattern string, h http.Handler) Option {
	return func(o *options) {
		if o.routes == nil {
			o.routes = map[string]http.Handler{}
		}
		o.routes[pattern] = h
	}
}

// Start opens the store (migrating it if cfg.Migrate), builds every part from
// cfg, binds both listeners and serves until ctx ends.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	a, err := start(ctx, cfg, log, st, o)
	if err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

// start builds Gatehouse on the open store, step by step: the keys, the
// authenticator, the webhook receiver, the server with its handlers and
// ready checks, then the listeners and the webhook records' sweep.
func start(ctx context.Context, cfg *config.Config, log *slog.Logger, st *store.Store, o options) (*App, error) {
	if cfg.Migrate {
		if err := st.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()

	// The Backend API, when there is a secret key: JWKS, users, and the
	// verification of opaque credentials.
	var backend *clerk.Client
	if cfg.ClerkSecretKey != "" {
		backend = clerk.New(clerk.Config{APIURL: cfg.ClerkAPIURL, SecretKey: cfg.ClerkSecretKey})
	}
	keys, err := newKeySource(ctx, cfg, backend, reg, log)
	if err != nil {
		return nil, err
	}
	authn, provisioner, err := newAuthenticator(cfg, keys, backend, st, reg)
	if err != nil {
		return nil, err
	}

	// What this replica caches from the database, kept in step with the
	// changes every replica's webhooks apply.
	changes, err := invalidation.New(st, invalidation.Options{Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	tokens := pagetoken.New(cfg.PageTokenKey)
	users := userapi.New(st.Client, tokens, provisioner)
	changes.Subscribe(provisioner)
	changes.Subscribe(users) // after the provisioner, whose rows its messages follow

	receiver, err := webhook.New(webhook.Config{
		Client:        st.Client,
		Dialect:       st.Dialect,
		Secret:        cfg.WebhookSecret,
		Logger:        log,
		Registerer:    reg,
		Invalidations: changes,
		Retention:     cfg.WebhookRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("CLERK_WEBHOOK_SIGNING_SECRET: %w", err)
	}

	srv, err := server.New(server.Options{
		Logger:   log,
		Registry: reg,
		Auth:     server.Interceptors{Unary: grpcauth.UnaryServerInterceptor(authn.AuthFunc), Stream: grpcauth.StreamServerInterceptor(authn.AuthFunc)},
		Errors:   server.Interceptors{Unary: derrors.UnaryServerInterceptor(), Stream: derrors.StreamServerInterceptor()},
		Users:    users,
		Projects: projectapi.New(st.Client, tokens),
		Webhooks: receiver,

		ReadyChecks: readyChecks(st, keys, log),

		AllowedOrigins: cfg.AuthorizedParties,
		Routes:         o.routes,
	})
	if err != nil {
		return nil, err
	}

	grpcLis, httpLis, err := listen(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log.Info("gatehouse listening",
		"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(),
		"database", st.Dialect, "issuer", cfg.Issuer, "opaque_credentials", backend != nil,
		"browser_origins", cfg.AuthorizedParties)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return changes.Listen(gctx) })
	g.Go(func() error { return srv.ServeGRPC(gctx, grpcLis) })
	g.Go(func() error { return srv.ServeHTTP(gctx, httpLis) })
	// Start returns once other replicas' changes reach this one's caches;
	// if listening takes long, it returns anyway and the caches' own expiry
	// covers the gap.
	select {
	case <-changes.Subscribed():
	case <-gctx.Done():
	case <-time.After(subscribeWait):
		log.Warn("cache invalidations: not yet listening; until it is, changes made on other replicas show here only when the cached entries expire")
	}
	// Purges the webhook records older than GATEHOUSE_WEBHOOK_RETENTION;
	// it stops with the listeners, before the store closes.
	g.Go(func() error { return receiver.Sweep(gctx) })
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

// keySource is where session tokens find their verification keys, and
// whether those are loaded yet (for /readyz).
type keySource interface {
	auth.KeySource
	Ready() bool
}

// newKeySource returns the key from CLERK_JWT_KEY (networkless), or else
// the JWKS from the Backend API, fetched once now and counted in
// gatehouse_jwks_fetches_total.
func newKeySource(ctx context.Context, cfg *config.Config, backend *clerk.Client, reg prometheus.Registerer, log *slog.Logger) (keySource, error) {
	if cfg.ClerkJWTKey != "" {
		sk, err := clerk.NewStaticKey(cfg.ClerkJWTKey)
		if err != nil {
			return nil, fmt.Errorf("CLERK_JWT_KEY: %w", err)
		}
		return sk, nil
	}
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
	return ks, nil
}

// newAuthenticator builds what authenticates and authorizes every call: the
// session verifier and the machine-JWT verifier (one key source for both),
// the access rules declared in the proto, the provisioner that creates
// users on first sight and, with a Backend API (backend not nil), the
// verifier of opaque credentials and first-sight fetches from Clerk. It
// refuses to start if an RPC lacks a rule.
func newAuthenticator(cfg *config.Config, keys auth.KeySource, backend *clerk.Client, st *store.Store, reg prometheus.Registerer) (*auth.Authenticator, *provision.Provisioner, error) {
	sessions, err := auth.NewSessionVerifier(auth.SessionConfig{
		Keys:              keys,
		Issuer:            cfg.Issuer,
		AuthorizedParties: cfg.AuthorizedParties,
		RoleDefaults:      cfg.RolePermissions,
	})
	if err != nil {
		return nil, nil, err
	}
	jwts, err := auth.NewMachineJWTVerifier(auth.MachineJWTConfig{
		Keys:           keys,
		Issuer:         cfg.Issuer,
		OAuthAudiences: cfg.OAuthAudiences,
	})
	if err != nil {
		return nil, nil, err
	}
	var opaque *auth.OpaqueVerifier
	var users provision.UserSource
	if backend != nil {
		opaque = auth.NewOpaqueVerifier(auth.OpaqueConfig{
			Clerk:          backend,
			Burst:          cfg.VerifyBurst,
			Rate:           cfg.VerifyRate,
			TrustedProxies: cfg.TrustedProxies,
			OAuthAudiences: cfg.OAuthAudiences,
		})
		users = backend
	}
	rules, err := auth.LoadRules(
		gatehousev1.File_gatehouse_v1_user_proto.Services().ByName("UserService"),
		gatehousev1.File_gatehouse_v1_project_proto.Services().ByName("ProjectService"),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("refusing to start: %w", err)
	}
	provisioner := provision.New(st.Client, users, provision.Options{})
	authn, err := auth.New(auth.Config{
		Sessions:    sessions,
		MachineJWTs: jwts,
		Opaque:      opaque,
		Rules:       rules,
		Provisioner: provisioner,
		Roles:       provisioner,
		Registerer:  reg,
	})
	if err != nil {
		return nil, nil, err
	}
	return authn, provisioner, nil
}

// readyChecks are what /readyz reports: the database answers, and the keys
// are loaded.
func readyChecks(st *store.Store, keys keySource, log *slog.Logger) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"database": func(ctx context.Context) error {
			if err := st.Ping(ctx); err != nil {
				log.Warn("readiness: database unreachable", "error", err)
				return errors.New("unreachable")
			}
			return nil
		},
		"keys": func(context.Context) error {
			if !keys.Ready() {
				return errors.New("not loaded")
			}
			return nil
		},
	}
}

// listen binds the gRPC and the HTTP listener; errors name the variable
// that set the address.
func listen(ctx context.Context, cfg *config.Config) (grpcLis, httpLis net.Listener, err error) {
	var lc net.ListenConfig
	grpcLis, err = lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("GATEHOUSE_GRPC_ADDR: %w", err)
	}
	httpLis, err = lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return nil, nil, fmt.Errorf("GATEHOUSE_HTTP_ADDR: %w", err)
	}
	return grpcLis, httpLis, nil
}
