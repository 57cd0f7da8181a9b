package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const tokenUsage = `Usage: gatehouse token [flags]

Mints a dev credential for a running "gatehouse dev" and prints it. By default a
session token, signed with the dev key; with one of --machine, --api-key or
--oauth, a credential the running dev emulator issues and later verifies
through the same Backend API endpoints as Clerk:

  gatehouse token                                   session of user_dev, personal tenant
  gatehouse token --user user_alice --org org_dev --role org:member
  gatehouse token --machine [--jwt] [--tenants org_dev]
  gatehouse token --api-key [--user user_alice] [--scopes org:projects:read,org:projects:create]
  gatehouse token --api-key --org org_dev [--scopes …]     the organization's own key
  gatehouse token --oauth [--jwt] [--user user_alice] [--scopes …] [--aud https://api.example.com]

A user's API key or OAuth token acts in the user's personal tenant, or in the
organization named by x-gatehouse-tenant when the webhooks have mirrored a
membership there; machines always name their tenant. Scopes name Gatehouse
permissions (org:projects:read|create|update|delete); none named: read only.

Flags:
`

// tokenKind is what `gatehouse token` mints.
type tokenKind int

const (
	mintSession tokenKind = iota
	mintMachine
	mintAPIKey
	mintOAuth
)

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), tokenUsage)
		fs.PrintDefaults()
	}
	user := fs.String("user", devUserID, "Clerk user id (user_…): the session's user, or whose API key or OAuth token")
	org := fs.String("org", "", "a session's active organization (org_…); with --api-key, mint the organization's own key instead of --user's")
	role := fs.String("role", "org:admin", "a session's organization role, with --org")
	perms := fs.String("permissions", "", "a session's extra organization permissions, comma-separated, with --org")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	version := fs.Int("claims-version", 2, "a session's claims format: 2 (current) or 1")
	machine := fs.Bool("machine", false, "mint a machine (M2M) token")
	apiKey := fs.Bool("api-key", false, "mint an API key (ak_…)")
	oauth := fs.Bool("oauth", false, "mint an OAuth access token an application holds for --user")
	jwt := fs.Bool("jwt", false, "with --machine or --oauth: the JWT form instead of the opaque one (mt_…, oat_…)")
	scopes := fs.String("scopes", "", "with --api-key or --oauth: comma-separated scopes, e.g. org:projects:read,org:projects:create")
	aud := fs.String("aud", "", "with --oauth: comma-separated audiences (the token's aud)")
	tenants := fs.String("tenants", "", `with --machine: comma-separated tenants the token may act in (its "tenants" claim); empty: any`)
	dir := fs.String("dir", devstate.Dir, "the dev directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see gatehouse token -h)", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	set["machine"], set["api-key"], set["oauth"] = *machine, *apiKey, *oauth
	kind, err := tokenKindOf(set)
	if err != nil {
		return err
	}
	if !viewer.ValidUserID(*user) {
		return fmt.Errorf("--user: want user_ followed by letters and digits, got %q", *user)
	}
	if *org != "" && !viewer.ValidOrgID(*org) {
		return fmt.Errorf("--org: want org_ followed by letters and digits, got %q", *org)
	}

	var tok string
	switch kind {
	case mintSession:
		tok, err = mintSessionToken(*dir, *user, *org, *role, *perms, *ttl, *version)
	case mintMachine:
		tok, err = mintMachineToken(ctx, *dir, config.SplitList(*tenants), *ttl, *jwt)
	case mintAPIKey:
		subject := *user
		if *org != "" {
			subject = *org
		}
		tok, err = mintAPIKeyFromEmulator(ctx, *dir, subject, config.SplitList(*scopes), *ttl)
	case mintOAuth:
		tok, err = mintOAuthToken(ctx, *dir, *user, config.SplitList(*scopes), config.SplitList(*aud), *ttl, *jwt)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// tokenKindOf decides what to mint from the flags set (and the kind flags
// true), refusing combinations that would be silently ignored.
func tokenKindOf(set map[string]bool) (tokenKind, error) {
	var kinds []string
	kind := mintSession
	for _, k := range []struct {
		flag string
		kind tokenKind
	}{{"machine", mintMachine}, {"api-key", mintAPIKey}, {"oauth", mintOAuth}} {
		if set[k.flag] {
			kinds, kind = append(kinds, "--"+k.flag), k.kind
		}
	}
	if len(kinds) > 1 {
		return 0, fmt.Errorf("%s: mint one kind of credential at a time", strings.Join(kinds, " and "))
	}
	// Which kinds each flag applies to.
	applies := map[string][]tokenKind{
		"user":           {mintSession, mintAPIKey, mintOAuth},
		"org":            {mintSession, mintAPIKey},
		"role":           {mintSession},
		"permissions":    {mintSession},
		"claims-version": {mintSession},
		"jwt":            {mintMachine, mintOAuth},
		"scopes":         {mintAPIKey, mintOAuth},
		"aud":            {mintOAuth},
		"tenants":        {mintMachine},
	}
	names := map[tokenKind]string{mintSession: "a session token", mintMachine: "--machine", mintAPIKey: "--api-key", mintOAuth: "--oauth"}
	var problems []string
	for flag, kinds := range applies {
		if set[flag] && !slices.Contains(kinds, kind) {
			problems = append(problems, fmt.Sprintf("--%s does not apply to %s", flag, names[kind]))
		}
	}
	if set["user"] && set["org"] && kind == mintAPIKey {
		problems = append(problems, "--api-key with --org mints the organization's key: drop --user")
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return 0, errors.New(strings.Join(problems, "; ") + " (see gatehouse token -h)")
	}
	return kind, nil
}

// mintSessionToken signs a session token with the dev key.
func mintSessionToken(dir, user, org, role, perms string, ttl time.Duration, version int) (string, error) {
	s := clerkemu.Session{UserID: user, TTL: ttl, Version: version}
	if org != "" {
		s.OrgID, s.OrgRole, s.Permissions = org, role, config.SplitList(perms)
	}
	// The azp a browser would put there: the running dev server's first
	// allowed origin, which it checks azp against.
	if st, err := devstate.Read(dir); err == nil && len(st.AuthorizedParties) > 0 {
		s.AuthorizedParty = st.AuthorizedParties[0]
	}
	key, err := clerkemu.LoadOrCreateKey(devstate.KeyPath(dir))
	if err != nil {
		return "", err
	}
	emu, err := clerkemu.New(clerkemu.Options{Key: key})
	if err != nil {
		return "", err
	}
	return emu.MintSession(s)
}

// devBackend is the running dev emulator's Backend API, through
// clerk-sdk-go as a real service reaches Clerk's.
func devBackend(dir string) (clerksdk.Backend, error) {
	st, err := devstate.Read(dir)
	if err != nil {
		return nil, err
	}
	return clerksdk.NewBackend(&clerksdk.BackendConfig{
		URL:        clerksdk.String(st.EmulatorURL + "/v1"),
		Key:        clerksdk.String(st.SecretKey),
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}), nil
}

// devRequest is the body of a request to the dev emulator.
type devRequest struct {
	clerksdk.APIParams
	body map[string]any
}

func (r *devRequest) MarshalJSON() ([]byte, error) { return json.Marshal(r.body) }

// devAnswer is the part of the emulator's answers `token` prints.
type devAnswer struct {
	clerksdk.APIResource
	Token  string `json:"token"`
	Secret string `json:"secret"`
}

// postDev sends body to path of the running dev emulator.
func postDev(ctx context.Context, dir, path string, body map[string]any) (*devAnswer, error) {
	backend, err := devBackend(dir)
	if err != nil {
		return nil, err
	}
	req := clerksdk.NewAPIRequest(http.MethodPost, path)
	req.SetParams(&devRequest{body: body})
	ans := &devAnswer{}
	if err := backend.Call(ctx, req, ans); err != nil {
		return nil, fmt.Errorf("ask the dev emulator (POST %s): %w", path, err)
	}
	return ans, nil
}

// mintMachineToken asks the running dev emulator for an M2M token (POST
// /m2m_tokens, "token_format": "jwt" for a JWT).
func mintMachineToken(ctx context.Context, dir string, tenants []string, ttl time.Duration, jwt bool) (string, error) {
	body := map[string]any{"seconds_until_expiration": int64(ttl.Seconds())}
	if len(tenants) > 0 {
		body["claims"] = map[string]any{"tenants": tenants}
	}
	if jwt {
		body["token_format"] = "jwt"
	}
	ans, err := postDev(ctx, dir, "/m2m_tokens", body)
	if err != nil {
		return "", err
	}
	return ans.Token, nil
}

// mintAPIKeyFromEmulator asks the running dev emulator for an API key of
// subject (POST /api_keys), as an application creates one with Clerk.
func mintAPIKeyFromEmulator(ctx context.Context, dir, subject string, scopes []string, ttl time.Duration) (string, error) {
	ans, err := postDev(ctx, dir, "/api_keys", map[string]any{
		"name":                     "gatehouse token",
		"subject":                  subject,
		"scopes":                   nonNil(scopes),
		"seconds_until_expiration": int64(ttl.Seconds()),
	})
	if err != nil {
		return "", err
	}
	return ans.Secret, nil
}

// mintOAuthToken asks the running dev emulator for an OAuth access token
// for user, as an OAuth application would get one at the end of Clerk's
// authorization flow.
func mintOAuthToken(ctx context.Context, dir, user string, scopes, aud []string, ttl time.Duration, jwt bool) (string, error) {
	body := map[string]any{
		"user_id":                  user,
		"client_id":                "client_gatehousedev",
		"scopes":                   nonNil(scopes),
		"seconds_until_expiration": int64(ttl.Seconds()),
	}
	if len(aud) > 0 {
		body["aud"] = aud
	}
	if jwt {
		body["token_format"] = "jwt"
	}
	ans, err := postDev(ctx, dir, "/emulator/oauth_access_tokens", body)
	if err != nil {
		return "", err
	}
	return ans.Token, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
