package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	user := fs.String("user", devUserID, "Clerk user id (user_…)")
	org := fs.String("org", "", "active organization id (org_…); empty for the personal tenant")
	role := fs.String("role", "org:admin", "organization role, with --org")
	perms := fs.String("permissions", "", "comma-separated extra organization permissions, with --org")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	version := fs.Int("claims-version", 2, "session claims format: 2 (current) or 1")
	machine := fs.Bool("machine", false, "mint a machine (M2M) token from the running dev emulator instead")
	tenants := fs.String("tenants", "", `with --machine: comma-separated tenants the token may act in (its "tenants" claim); empty: any`)
	dir := fs.String("dir", devstate.Dir, "the dev directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *machine {
		tok, err := mintMachineToken(ctx, *dir, config.SplitList(*tenants), *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}
	if !viewer.ValidUserID(*user) {
		return fmt.Errorf("--user: want user_ followed by letters and digits, got %q", *user)
	}
	s := clerkemu.Session{UserID: *user, TTL: *ttl, Version: *version}
	if *org != "" {
		if !viewer.ValidOrgID(*org) {
			return fmt.Errorf("--org: want org_ followed by letters and digits, got %q", *org)
		}
		s.OrgID, s.OrgRole, s.Permissions = *org, *role, config.SplitList(*perms)
	}
	// The azp a browser would put there: the running dev server's first
	// allowed origin, which it checks azp against.
	if st, err := devstate.Read(*dir); err == nil && len(st.AuthorizedParties) > 0 {
		s.AuthorizedParty = st.AuthorizedParties[0]
	}
	key, err := clerkemu.LoadOrCreateKey(devstate.KeyPath(*dir))
	if err != nil {
		return err
	}
	emu, err := clerkemu.New(clerkemu.Options{Key: key})
	if err != nil {
		return err
	}
	tok, err := emu.MintSession(s)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// mintMachineToken asks the running dev emulator for an M2M token, through
// clerk-sdk-go as a real service would ask Clerk.
func mintMachineToken(ctx context.Context, dir string, tenants []string, ttl time.Duration) (string, error) {
	st, err := devstate.Read(dir)
	if err != nil {
		return "", err
	}
	params := &m2m_token.CreateParams{SecondsUntilExpiration: clerksdk.Int64(int64(ttl.Seconds()))}
	if len(tenants) > 0 {
		raw, _ := json.Marshal(map[string]any{"tenants": tenants})
		claims := json.RawMessage(raw)
		params.Claims = &claims
	}
	client := m2m_token.NewClient(&clerksdk.ClientConfig{BackendConfig: clerksdk.BackendConfig{
		URL:        clerksdk.String(st.EmulatorURL + "/v1"),
		Key:        clerksdk.String(st.SecretKey),
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}})
	tok, err := client.Create(ctx, params)
	if err != nil {
		return "", fmt.Errorf("mint machine token from the dev emulator: %w", err)
	}
	return tok.Token, nil
}
