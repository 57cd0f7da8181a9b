package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/app"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
	"github.com/gatehouse-dev/gatehouse/internal/loopback"
)

// Dev user and organization, known to the emulator from the start.
const (
	devUserID = "user_dev"
	devOrgID  = "org_dev"
)

// devOrigin is the browser origin dev allows by default
// (CLERK_AUTHORIZED_PARTIES): where `npm start` serves examples/browser, a
// Next.js dev server's usual address, and the azp of the emulator's
// tokens.
const devOrigin = "http://localhost:3000"

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	grpcAddr := fs.String("grpc", cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_GRPC_ADDR")), "127.0.0.1:50051"), "gRPC listen address (loopback only)")
	httpAddr := fs.String("http", cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_HTTP_ADDR")), "127.0.0.1:8080"), "HTTP listen address (loopback only)")
	dir := fs.String("dir", devstate.Dir, "directory for the dev key, database and state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	parties, err := config.ParseOrigins(getenv("CLERK_AUTHORIZED_PARTIES"))
	if err != nil {
		return fmt.Errorf("CLERK_AUTHORIZED_PARTIES: %w", err)
	}
	if len(parties) == 0 {
		parties = []string{devOrigin}
	}
	for _, a := range []string{*grpcAddr, *httpAddr} {
		if err := requireLoopback(a); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	key, err := clerkemu.LoadOrCreateKey(devstate.KeyPath(*dir))
	if err != nil {
		return err
	}
	whSecret, err := loadOrCreateWebhookSecret(filepath.Join(*dir, "webhook-secret"))
	if err != nil {
		return err
	}
	emu, err := clerkemu.New(clerkemu.Options{Key: key, AutoUsers: true, WebhookSecret: whSecret})
	if err != nil {
		return err
	}
	emu.AddUser(clerkemu.User{ID: devUserID, Email: "dev@gatehouse.test", FirstName: "Dev", LastName: "User"})

	emuLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	emuSrv := &http.Server{Handler: emu.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go emuSrv.Serve(emuLis)
	defer emuSrv.Close()
	emuURL := "http://" + emuLis.Addr().String()

	dsn := cmp.Or(getenv("DATABASE_URL"), devstate.DatabasePath(*dir))
	cfg := &config.Config{
		DatabaseURL:         dsn,
		GRPCAddr:            *grpcAddr,
		HTTPAddr:            *httpAddr,
		ClerkSecretKey:      emu.SecretKey(),
		Issuer:              emu.Issuer(),
		AuthorizedParties:   parties,
		ClerkAPIURL:         emuURL + "/v1",
		WebhookSecret:       emu.WebhookSecret(),
		JWKSRefetchInterval: config.DefaultRefetchInterval,
		PageTokenKey:        config.DerivePageTokenKey(whSecret),
		Migrate:             true,
		LogFormat:           "text",
	}
	log, err := newLogger(stderr, cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_LOG_FORMAT")), "text"), cfg.LogLevel)
	if err != nil {
		return err
	}
	a, err := app.Start(ctx, cfg, log, app.WithHTTPRoute(devTokenPath, devTokenHandler(emu, devUserID, parties)))
	if err != nil {
		return err
	}

	state := devstate.State{
		GRPCAddr: a.GRPCAddr.String(), HTTPAddr: a.HTTPAddr.String(),
		EmulatorURL: emuURL, SecretKey: emu.SecretKey(), WebhookSecret: emu.WebhookSecret(), Issuer: emu.Issuer(),
		AuthorizedParties: parties,
	}
	if err := devstate.Write(*dir, state); err != nil {
		return err
	}
	defer os.Remove(devstate.Path(*dir))

	token, err := emu.MintSession(clerkemu.Session{UserID: devUserID, AuthorizedParty: parties[0], TTL: 12 * time.Hour})
	if err != nil {
		return err
	}
	if err := devBanner.Execute(stdout, map[string]any{
		"GRPC": a.GRPCAddr.String(), "HTTP": a.HTTPAddr.String(), "Emulator": emuURL,
		"Issuer": emu.Issuer(), "Database": displayDSN(dsn), "Token": token, "User": devUserID, "Org": devOrgID,
		"Origins": strings.Join(parties, ", "), "TokenPath": devTokenPath,
	}); err != nil {
		return err
	}
	return a.Wait()
}

var devBanner = template.Must(template.New("banner").Parse(`
Gatehouse dev is running: no Clerk account, no network.
  gRPC      {{.GRPC}}  (health and reflection need no token)
  HTTP      http://{{.HTTP}}  (Connect, gRPC-Web and REST /v1/…; /healthz /readyz /metrics, POST /webhooks/clerk)
  Browsers  CORS and azp allow {{.Origins}} (CLERK_AUTHORIZED_PARTIES); pages get tokens from POST http://{{.HTTP}}{{.TokenPath}}
  Clerk     emulator at {{.Emulator}}/v1, issuer {{.Issuer}}
  Database  {{.Database}}

A session token for {{.User}} (personal tenant), valid 12h:

export TOKEN='{{.Token}}'

Then, from this directory (grpcurl is pinned in go.mod: "go tool grpcurl" needs no install):

go tool grpcurl -plaintext {{.GRPC}} list
go tool grpcurl -plaintext -H "authorization: Bearer $TOKEN" {{.GRPC}} gatehouse.v1.UserService/GetMe
go tool grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"name": "My first project"}' {{.GRPC}} gatehouse.v1.ProjectService/CreateProject
go tool grpcurl -plaintext -H "authorization: Bearer $TOKEN" {{.GRPC}} gatehouse.v1.ProjectService/ListProjects
go tool grpcurl -plaintext {{.GRPC}} gatehouse.v1.UserService/GetMe    # no token: Unauthenticated

Or with curl, over the Connect protocol and the REST routes:

curl -H "authorization: Bearer $TOKEN" -H "content-type: application/json" -d '{}' http://{{.HTTP}}/gatehouse.v1.UserService/GetMe
curl -H "authorization: Bearer $TOKEN" http://{{.HTTP}}/v1/me
curl -H "authorization: Bearer $TOKEN" -H "content-type: application/json" -d '{"name": "From curl"}' http://{{.HTTP}}/v1/projects
curl -H "authorization: Bearer $TOKEN" http://{{.HTTP}}/v1/projects

More credentials (another user, an organization and role, a machine, an API key, an OAuth token):
go run ./cmd/gatehouse token --user user_alice --org {{.Org}} --role org:member
go run ./cmd/gatehouse token --machine
go run ./cmd/gatehouse token --api-key --scopes org:projects:read,org:projects:create
go run ./cmd/gatehouse token --oauth --scopes org:projects:read
Send a signed Clerk webhook:
go run ./cmd/gatehouse webhook send user.created

Ctrl-C stops it.
`))

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dev: bad address %q: %w", addr, err)
	}
	if loopback.IsHost(host) {
		return nil
	}
	return fmt.Errorf("dev: refusing to listen on %q: the dev server has no real Clerk behind it, so it serves loopback addresses only (use 127.0.0.1:PORT)", addr)
}

func loadOrCreateWebhookSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if err := config.CheckWebhookSecret(s); err != nil {
			return "", fmt.Errorf("%s: %w; delete it to start afresh", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s := "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(32))
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
