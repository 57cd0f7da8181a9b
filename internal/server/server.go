// Package server runs Gatehouse's two listeners: the gRPC API (with health and
// reflection) and the HTTP side (Clerk webhooks, /healthz, /readyz,
// /metrics, and the same API again for browsers and curl — Connect, gRPC-Web
// and REST, through internal/httpapi, on the same grpc.Server). Each Serve
// method blocks until its context ends, then stops gracefully: it stops
// accepting, drains in-flight calls, and returns.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	gmetrics "github.com/gatehouse-dev/gatehouse/internal/metrics"
)

// MaxMessageBytes bounds a request message on both listeners (gRPC's
// default max receive size, made explicit so that the HTTP side takes the
// same): a larger one is RESOURCE_EXHAUSTED.
const MaxMessageBytes = 4 << 20

// MaxHeaderBytes bounds a request's headers (metadata) on both listeners:
// far more than a bearer token needs, far less than gRPC's own default of
// 16 MiB.
const MaxHeaderBytes = 64 << 10

// ShutdownTimeout bounds how long a Serve method drains in-flight work after
// its context ends before it cuts connections.
const ShutdownTimeout = 15 * time.Second

// Interceptors is a pair of unary and stream interceptors.
type Interceptors struct {
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
}

// Options are the parts a Server is built from.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Auth authenticates and authorizes every call (internal/auth).
	Auth Interceptors
	// Errors turns handler errors into gRPC statuses (internal/derrors).
	Errors Interceptors

	Users    gatehousev1.UserServiceServer
	Projects gatehousev1.ProjectServiceServer

	// Webhooks receives POST /webhooks/clerk.
	Webhooks http.Handler
	// ReadyChecks are run by /readyz; any error makes it answer 503.
	ReadyChecks map[string]func(context.Context) error

	// AllowedOrigins may call the API from a browser (CORS): the
	// authorized parties. None: no CORS headers.
	AllowedOrigins []string
	// Routes are more HTTP routes (ServeMux patterns), behind the same CORS
	// policy as the API: gatehouse dev's token endpoint. serve adds none.
	Routes map[string]http.Handler
}

// Server holds both listeners' handlers.
type Server struct {
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	http   *http.Server

	// httpServing is set while ServeHTTP runs; httpStopped is closed when
	// it has drained. The HTTP listener's API calls are calls on s.grpc,
	// which cancels them when it stops, so it must stop after them.
	httpServing atomic.Bool
	httpStopped chan struct{}
}

// New builds the gRPC server and the HTTP handler. It registers the
// standard Go and process collectors and the grpc_server_* series in
// o.Registry.
func New(o Options) (*Server, error) {
	if o.Logger == nil || o.Registry == nil || o.Auth.Unary == nil || o.Auth.Stream == nil ||
		o.Errors.Unary == nil || o.Errors.Stream == nil || o.Users == nil || o.Projects == nil || o.Webhooks == nil {
		return nil, errors.New("server: incomplete options")
	}
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}),
	))
	if err := o.Registry.Register(metrics); err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if _, err := gmetrics.Register(o.Registry, c); err != nil {
			return nil, err
		}
	}

	s := &Server{log: o.Logger, health: health.NewServer(), httpStopped: make(chan struct{})}
	// A panic is INTERNAL for the client; its value and stack are the
	// cause on the call's log line.
	panics := recovery.WithRecoveryHandler(func(p any) error {
		return &panicError{value: p, stack: debug.Stack()}
	})
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxHeaderListSize(MaxHeaderBytes),
		grpc.ChainUnaryInterceptor(
			metrics.UnaryServerInterceptor(),
			logUnary(o.Logger),
			recovery.UnaryServerInterceptor(panics),
			o.Auth.Unary,
			notePrincipalUnary,
			o.Errors.Unary,
		),
		grpc.ChainStreamInterceptor(
			metrics.StreamServerInterceptor(),
			logStream(o.Logger),
			recovery.StreamServerInterceptor(panics),
			o.Auth.Stream,
			notePrincipalStream,
			o.Errors.Stream,
		),
	)
	gatehousev1.RegisterUserServiceServer(s.grpc, o.Users)
	gatehousev1.RegisterProjectServiceServer(s.grpc, o.Projects)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	metrics.InitializeMetrics(s.grpc)
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

	// The API on the HTTP listener, under its own prefixes only: CORS
	// never reaches the webhooks, health or metrics.
	api, err := httpapi.New(s.grpc, httpapi.Options{MaxMessageBytes: MaxMessageBytes, AllowedOrigins: o.AllowedOrigins})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for _, p := range api.Prefixes() {
		mux.Handle(p, api)
	}
	for pattern, h := range o.Routes {
		mux.Handle(pattern, httpapi.CORS(o.AllowedOrigins)(h))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /readyz", readyHandler(o.ReadyChecks))
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	mux.Handle("/webhooks/clerk", o.Webhooks)
	// HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge), for
	// Connect and gRPC-Web over either; TLS is terminated in front.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// ServeGRPC serves gRPC on lis until ctx ends. Then it stops accepting
// connections at once, reports NOT_SERVING to health checks, and drains the
// calls in flight, cutting what is left ShutdownTimeout after ctx ended.
// While ServeHTTP runs, the drain first waits for the HTTP listener's:
// grpc.Server's graceful stop would cancel the calls that came in over HTTP
// rather than wait for them. Both waits share the one deadline.
func (s *Server) ServeGRPC(ctx context.Context, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	deadline := time.NewTimer(ShutdownTimeout)
	defer deadline.Stop()
	lis.Close() // Serve returns; the connections it accepted stay until the drain
	s.health.Shutdown()
	if s.httpServing.Load() {
		select {
		case <-s.httpStopped:
		case <-deadline.C:
		}
	}
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-deadline.C:
		s.log.Warn("grpc drain timed out; closing connections")
		s.grpc.Stop()
	}
	return nil
}

// ServeHTTP serves the HTTP side on lis until ctx ends, then shuts down
// gracefully: in-flight requests, API calls among them, finish first. Call
// it once.
func (s *Server) ServeHTTP(ctx context.Context, lis net.Listener) error {
	s.httpServing.Store(true)
	defer close(s.httpStopped)
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		s.http.Close()
	}
	return nil
}

func readyHandler(checks map[string]func(context.Context) error) http.Handler {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		result := make(map[string]string, len(names))
		code := http.StatusOK
		for _, n := range names {
			if err := checks[n](ctx); err != nil {
				result[n] = err.Error()
				code = http.StatusServiceUnavailable
			} else {
				result[n] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(result)
	})
}
