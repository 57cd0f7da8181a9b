// Package client connects a Go program to Gatehouse over gRPC.
//
// The generated stubs live in github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1;
// this package supplies what every caller needs around them: a connection
// that sends a Clerk token on each call ("authorization: Bearer <token>"),
// uses TLS for anything but a loopback address, and retries UNAVAILABLE with
// exponential backoff — Gatehouse answers UNAVAILABLE while it provisions a
// user it sees for the first time and Clerk is unreachable, so such calls
// heal on their own.
//
//	conn, err := client.Dial("gatehouse.internal:443", tokens)
//	if err != nil { ... }
//	defer conn.Close()
//	users := gatehousev1.NewUserServiceClient(conn)
//	me, err := users.GetMe(ctx, &gatehousev1.GetMeRequest{})
//
// A Clerk machine (M2M) token also names the tenant it acts in, per call; a
// user's API key or OAuth token may name an organization the user belongs
// to (by default it acts in the user's personal tenant):
//
//	ctx = client.WithTenant(ctx, "org_123")
//	projects, err := gatehousev1.NewProjectServiceClient(conn).ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/internal/loopback"
)

// TenantHeader is the metadata key with which a call made with a Clerk
// machine token names its tenant (org_… or user_…). Session tokens carry
// their tenant in the token and ignore it.
const TenantHeader = "x-gatehouse-tenant"

// ServiceConfig is the default gRPC service config Dial installs: calls to
// gatehouse.v1.UserService and gatehouse.v1.ProjectService that end in
// UNAVAILABLE are tried up to 4 times in all, waiting about 0.2 s, 0.4 s and
// 0.8 s (randomized, at most 2 s) between attempts. A service config from the
// name resolver, if any, replaces it.
//
// Retries are safe for the read methods. CreateProject is not idempotent: if
// a connection breaks after the server has created the project but before it
// answered, the retry creates a second one. Gatehouse itself answers
// UNAVAILABLE only before it has done anything.
const ServiceConfig = `{
  "methodConfig": [{
    "name": [
      {"service": "gatehouse.v1.UserService"},
      {"service": "gatehouse.v1.ProjectService"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.2s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// TokenSource returns the token to send on one call: a Clerk session token
// (for a user) or a Clerk machine token (mt_…, for a service). It is called
// for every attempt of every call, so it should cache and refresh the token
// itself rather than mint one each time. An error fails the call with
// UNAUTHENTICATED, or with the error's status if it has one.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken returns a TokenSource that always returns token: for tests,
// scripts and long-lived machine tokens read from the environment.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// TokenCredentials is a credentials.PerRPCCredentials that puts
// "authorization: Bearer <token>" on every call, with the token from Tokens.
//
// It refuses to send the token over a connection without transport security
// unless AllowInsecure is set. Set it only for a loopback address (a local
// `gatehouse dev`, or a sidecar on the same host): anywhere else the bearer
// token would cross the network in the clear. Dial sets it for loopback
// targets only.
type TokenCredentials struct {
	Tokens        TokenSource
	AllowInsecure bool
}

var _ credentials.PerRPCCredentials = TokenCredentials{}

// GetRequestMetadata returns the authorization header for one call.
func (c TokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if c.Tokens == nil {
		return nil, errors.New("gatehouse client: no token source")
	}
	tok, err := c.Tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("gatehouse client: get token: %w", err)
	}
	if tok == "" {
		return nil, errors.New("gatehouse client: token source returned an empty token")
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity reports whether the token may only travel over
// TLS: true unless AllowInsecure is set.
func (c TokenCredentials) RequireTransportSecurity() bool { return !c.AllowInsecure }

// WithTenant returns a context whose outgoing calls name tenant (org_… or
// user_…) in TenantHeader, as calls with a machine token must, and as calls
// with a user's API key or OAuth token may to act in an organization.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, TenantHeader, tenant)
}

// Dial returns a client connection to the Gatehouse at target (a gRPC target
// such as "gatehouse.internal:443", "dns:///gatehouse:50051" or
// "127.0.0.1:50051"). Like grpc.NewClient it does not connect until the first
// call.
//
// The connection uses TLS with the system's roots, except to a loopback
// address (127.0.0.0/8, ::1, localhost) or a unix socket, which get
// plaintext — what a local `gatehouse dev` speaks. Every call carries a token
// from tokens (none if tokens is nil), and ServiceConfig is the default
// service config. opts are applied last, so they override these: pass
// grpc.WithTransportCredentials for your own TLS configuration.
func Dial(target string, tokens TokenSource, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	local := isLocal(target)
	transport := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if local {
		transport = insecure.NewCredentials()
	}
	all := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultServiceConfig(ServiceConfig),
	}
	if tokens != nil {
		all = append(all, grpc.WithPerRPCCredentials(TokenCredentials{Tokens: tokens, AllowInsecure: local}))
	}
	conn, err := grpc.NewClient(target, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("gatehouse client: dial %s: %w", target, err)
	}
	return conn, nil
}

// isLocal reports whether target names a loopback address or a unix socket,
// where a plaintext connection does not leave the host.
func isLocal(target string) bool {
	hostport := target
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return false
		}
		// scheme://[authority]/endpoint: the endpoint is the host and port.
		hostport = strings.TrimPrefix(u.Path, "/")
		if u.Opaque != "" {
			hostport = u.Opaque
		}
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, "localhost") || loopback.IsHost(host)
}
