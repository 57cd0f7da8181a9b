// Package config reads Gatehouse's configuration from the environment and
// checks all of it at once, so that `gatehouse serve` can report every problem
// in one go, each with the variable's name.
package config

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
)

// Defaults.
const (
	DefaultGRPCAddr        = ":50051"
	DefaultHTTPAddr        = ":8080"
	DefaultClerkAPIURL     = "https://api.clerk.com/v1"
	DefaultRefetchInterval = 5 * time.Second
	DefaultVerifyBurst     = 20
	DefaultVerifyRate      = 10.0
)

// DefaultWebhookRetention is how long the record of a webhook delivery —
// its svix-id, and the payload of a handled event — is kept before the
// receiver's sweep purges it (GATEHOUSE_WEBHOOK_RETENTION).
const DefaultWebhookRetention = 7 * 24 * time.Hour

// Bounds of GATEHOUSE_WEBHOOK_RETENTION. Below a day, Svix's retries of a
// delivery (spread over about a day) may outlive its record and be applied
// again, harmlessly but answered "stale" rather than "duplicate"; an hour is
// the floor. A year is the ceiling: the records hold personal data.
const (
	minWebhookRetention = time.Hour
	maxWebhookRetention = 365 * 24 * time.Hour
)

// minWebhookSecretBytes is the shortest webhook signing key Gatehouse
// accepts. Svix's endpoint secrets are 24 random bytes.
const minWebhookSecretBytes = 24

// Config is Gatehouse's configuration. See the README's table.
type Config struct {
	DatabaseURL string // "" = embedded SQLite file gatehouse.db
	GRPCAddr    string
	HTTPAddr    string

	ClerkSecretKey    string
	ClerkJWTKey       string // PEM public key: networkless verification
	Issuer            string // pinned iss, from CLERK_ISSUER or CLERK_PUBLISHABLE_KEY
	AuthorizedParties []string
	ClerkAPIURL       string
	WebhookSecret     string

	// JWKSRefetchInterval bounds how often an unknown kid may trigger a JWKS
	// fetch (GATEHOUSE_JWKS_REFETCH_INTERVAL).
	JWKSRefetchInterval time.Duration
	// RolePermissions are the permissions each organization role holds by
	// default (GATEHOUSE_ROLE_PERMISSIONS); nil means the built-in defaults.
	RolePermissions map[string][]string
	// PageTokenKey authenticates page tokens. Replicas must share it; by
	// default it is derived from the Clerk secrets they already share.
	PageTokenKey []byte
	// Migrate says whether serve migrates the schema on start
	// (GATEHOUSE_MIGRATE, default true).
	Migrate bool
	// OAuthAudiences, when set, are the audiences an OAuth access token
	// must name one of (GATEHOUSE_OAUTH_AUDIENCE).
	OAuthAudiences []string
	// VerifyBurst and VerifyRate are each caller address's token bucket of
	// calls to Clerk's verify endpoints (GATEHOUSE_VERIFY_RATE,
	// "burst,refill per second").
	VerifyBurst int
	VerifyRate  float64
	// TrustedProxies are the proxies in front of Gatehouse whose
	// x-forwarded-for names the caller address of that budget
	// (GATEHOUSE_TRUSTED_PROXIES: addresses or CIDR prefixes).
	TrustedProxies []netip.Prefix
	// WebhookRetention is how long the record of a webhook delivery (its
	// svix-id and raw payload) is kept (GATEHOUSE_WEBHOOK_RETENTION).
	WebhookRetention time.Duration

	LogFormat string // json or text
	LogLevel  slog.Level
}

// Getenv is os.Getenv's shape, so tests pass a map.
type Getenv func(string) string

// Load reads the configuration and validates it as `gatehouse serve` needs
// it. The error joins every problem found, each naming its variable.
func Load(getenv Getenv) (*Config, error) {
	var problems []string
	bad := func(variable, format string, args ...any) {
		problems = append(problems, variable+": "+fmt.Sprintf(format, args...))
	}
	c := &Config{
		DatabaseURL:         strings.TrimSpace(getenv("DATABASE_URL")),
		GRPCAddr:            cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_GRPC_ADDR")), DefaultGRPCAddr),
		HTTPAddr:            cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_HTTP_ADDR")), DefaultHTTPAddr),
		ClerkSecretKey:      strings.TrimSpace(getenv("CLERK_SECRET_KEY")),
		ClerkJWTKey:         strings.TrimSpace(getenv("CLERK_JWT_KEY")),
		ClerkAPIURL:         strings.TrimRight(cmp.Or(strings.TrimSpace(getenv("CLERK_API_URL")), DefaultClerkAPIURL), "/"),
		WebhookSecret:       strings.TrimSpace(getenv("CLERK_WEBHOOK_SIGNING_SECRET")),
		JWKSRefetchInterval: DefaultRefetchInterval,
		Migrate:             true,
		OAuthAudiences:      SplitList(getenv("GATEHOUSE_OAUTH_AUDIENCE")),
		VerifyBurst:         DefaultVerifyBurst,
		VerifyRate:          DefaultVerifyRate,
		WebhookRetention:    DefaultWebhookRetention,
		LogFormat:           cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_LOG_FORMAT")), "json"),
	}

	if d := c.DatabaseURL; strings.Contains(d, "://") &&
		!strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") {
		bad("DATABASE_URL", "want postgres://… or a SQLite file path")
	}
	for _, a := range []struct{ name, addr string }{
		{"GATEHOUSE_GRPC_ADDR", c.GRPCAddr}, {"GATEHOUSE_HTTP_ADDR", c.HTTPAddr},
	} {
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			bad(a.name, "want host:port, got %q", a.addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(a.name, "bad port %q", port)
		}
	}

	if c.ClerkSecretKey == "" && c.ClerkJWTKey == "" {
		bad("CLERK_SECRET_KEY", "set it (or CLERK_JWT_KEY for networkless verification)")
	}
	if c.ClerkSecretKey != "" && !strings.HasPrefix(c.ClerkSecretKey, "sk_") {
		bad("CLERK_SECRET_KEY", "want a Clerk secret key (sk_…)")
	}
	if c.ClerkJWTKey != "" {
		if _, err := clerksdk.JSONWebKeyFromPEM(c.ClerkJWTKey); err != nil {
			bad("CLERK_JWT_KEY", "want a PEM public key: %v", err)
		}
	}

	issuer := strings.TrimSpace(getenv("CLERK_ISSUER"))
	if pk := strings.TrimSpace(getenv("CLERK_PUBLISHABLE_KEY")); pk != "" {
		fromPK, err := IssuerFromPublishableKey(pk)
		switch {
		case err != nil:
			bad("CLERK_PUBLISHABLE_KEY", "%v", err)
		case issuer != "" && issuer != fromPK:
			bad("CLERK_ISSUER", "%q disagrees with CLERK_PUBLISHABLE_KEY's issuer %q", issuer, fromPK)
		default:
			issuer = fromPK
		}
	}
	if issuer == "" {
		bad("CLERK_ISSUER", "set it or CLERK_PUBLISHABLE_KEY: the token issuer is pinned")
	} else if u, err := url.Parse(issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		bad("CLERK_ISSUER", "want a URL like https://clerk.example.com, got %q", issuer)
	}
	c.Issuer = strings.TrimRight(issuer, "/")

	if ps, err := ParseOrigins(getenv("CLERK_AUTHORIZED_PARTIES")); err != nil {
		bad("CLERK_AUTHORIZED_PARTIES", "%v", err)
	} else {
		c.AuthorizedParties = ps
	}

	if u, err := url.Parse(c.ClerkAPIURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		bad("CLERK_API_URL", "want an http(s) URL, got %q", c.ClerkAPIURL)
	}

	if c.WebhookSecret == "" {
		bad("CLERK_WEBHOOK_SIGNING_SECRET", "set it (whsec_…) from the Clerk dashboard's webhook endpoint")
	} else if err := CheckWebhookSecret(c.WebhookSecret); err != nil {
		bad("CLERK_WEBHOOK_SIGNING_SECRET", "%v", err)
	}

	if v := getenv("GATEHOUSE_JWKS_REFETCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Hour {
			bad("GATEHOUSE_JWKS_REFETCH_INTERVAL", "want a duration between 1s and 1h, got %q", v)
		} else {
			c.JWKSRefetchInterval = d
		}
	}
	if v := strings.TrimSpace(getenv("GATEHOUSE_WEBHOOK_RETENTION")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minWebhookRetention || d > maxWebhookRetention {
			bad("GATEHOUSE_WEBHOOK_RETENTION", "want a duration between %s and %s (e.g. 168h for 7 days), got %q",
				fmtHours(minWebhookRetention), fmtHours(maxWebhookRetention), v)
		} else {
			c.WebhookRetention = d
		}
	}
	if v := getenv("GATEHOUSE_ROLE_PERMISSIONS"); v != "" {
		rp, err := ParseRolePermissions(v)
		if err != nil {
			bad("GATEHOUSE_ROLE_PERMISSIONS", "%v", err)
		}
		c.RolePermissions = rp
	}
	if v := getenv("GATEHOUSE_MIGRATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("GATEHOUSE_MIGRATE", "want true or false, got %q", v)
		}
		c.Migrate = b
	}
	for _, aud := range c.OAuthAudiences {
		if strings.ContainsFunc(aud, unicode.IsSpace) {
			bad("GATEHOUSE_OAUTH_AUDIENCE", "want comma-separated audiences without spaces, got %q", aud)
		}
	}
	if v := strings.TrimSpace(getenv("GATEHOUSE_VERIFY_RATE")); v != "" {
		burst, rate, err := parseVerifyRate(v)
		if err != nil {
			bad("GATEHOUSE_VERIFY_RATE", "%v", err)
		} else {
			c.VerifyBurst, c.VerifyRate = burst, rate
		}
	}
	for _, v := range SplitList(getenv("GATEHOUSE_TRUSTED_PROXIES")) {
		p, err := parsePrefix(v)
		if err != nil {
			bad("GATEHOUSE_TRUSTED_PROXIES", "want comma-separated addresses or CIDR prefixes, got %q", v)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
	if v := getenv("GATEHOUSE_PAGE_TOKEN_SECRET"); v != "" {
		if len(v) < 32 {
			bad("GATEHOUSE_PAGE_TOKEN_SECRET", "want at least 32 characters")
		}
		c.PageTokenKey = []byte(v)
	} else {
		c.PageTokenKey = DerivePageTokenKey(c.ClerkSecretKey + "\x00" + c.WebhookSecret)
	}

	switch c.LogFormat {
	case "json", "text":
	default:
		bad("GATEHOUSE_LOG_FORMAT", "want json or text, got %q", c.LogFormat)
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(strings.TrimSpace(getenv("GATEHOUSE_LOG_LEVEL")), "info"))); err != nil {
		bad("GATEHOUSE_LOG_LEVEL", "want debug, info, warn or error")
	}

	if len(problems) > 0 {
		return c, &Error{Problems: problems}
	}
	return c, nil
}

// CheckWebhookSecret reports whether secret is an endpoint signing secret as
// Svix issues them (CLERK_WEBHOOK_SIGNING_SECRET): "whsec_" followed by the
// standard base64 of a key of at least minWebhookSecretBytes bytes. Svix's
// verifier itself takes any base64, even "whsec_" alone — an empty HMAC key
// with which anyone can sign. The error never quotes the secret.
func CheckWebhookSecret(secret string) error {
	key, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return errors.New("want the endpoint's signing secret, whsec_ followed by base64")
	}
	// Not the decoder's message: it quotes the offending byte.
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return errors.New("want whsec_ followed by base64")
	}
	if len(raw) < minWebhookSecretBytes {
		return fmt.Errorf("the key after whsec_ is %d bytes, want at least %d", len(raw), minWebhookSecretBytes)
	}
	return nil
}

// ParseOrigins reads a comma-separated list of origins, as
// CLERK_AUTHORIZED_PARTIES holds them ("https://app.example.com"), without
// trailing slashes. The error names the first entry that is not one.
func ParseOrigins(list string) ([]string, error) {
	var origins []string
	for _, p := range SplitList(list) {
		if p = strings.TrimRight(p, "/"); p != "" {
			if u, err := url.Parse(p); err != nil || u.Host == "" {
				return nil, fmt.Errorf("want origins like https://app.example.com, got %q", p)
			}
			origins = append(origins, p)
		}
	}
	return origins, nil
}

// fmtHours writes d in hours, as GATEHOUSE_WEBHOOK_RETENTION is usually
// written ("168h", not "168h0m0s").
func fmtHours(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
}

// Error lists every configuration problem.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// IssuerFromPublishableKey decodes the Frontend API host that a Clerk
// publishable key (pk_test_… / pk_live_…) carries, as the issuer URL.
func IssuerFromPublishableKey(pk string) (string, error) {
	var enc string
	switch {
	case strings.HasPrefix(pk, "pk_test_"):
		enc = pk[len("pk_test_"):]
	case strings.HasPrefix(pk, "pk_live_"):
		enc = pk[len("pk_live_"):]
	default:
		return "", errors.New("want pk_test_… or pk_live_…")
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "="))
	if err != nil {
		return "", errors.New("not a Clerk publishable key (bad base64)")
	}
	host, ok := strings.CutSuffix(string(raw), "$")
	if !ok || host == "" || strings.ContainsAny(host, "/ \t\r\n") {
		return "", errors.New("not a Clerk publishable key")
	}
	return "https://" + host, nil
}

// ParseRolePermissions reads "role=perm perm;role=perm", for example
// "org:admin=org:projects:read org:projects:create;org:viewer=org:projects:read".
func ParseRolePermissions(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, perms, ok := strings.Cut(part, "=")
		role = strings.TrimSpace(role)
		if !ok || !strings.HasPrefix(role, "org:") {
			return nil, fmt.Errorf("want role=permission …;… with roles like org:admin, got %q", part)
		}
		list := strings.Fields(perms)
		for _, p := range list {
			if !strings.HasPrefix(p, "org:") {
				return nil, fmt.Errorf("permission %q of %s: want org:feature:action", p, role)
			}
		}
		sort.Strings(list)
		out[role] = list
	}
	return out, nil
}

// parseVerifyRate reads GATEHOUSE_VERIFY_RATE: "burst,refill", a whole
// burst of 1 to 10,000 calls and a refill of more than 0 and at most 10,000
// calls per second, e.g. "20,10" or "5,0.5".
func parseVerifyRate(s string) (burst int, perSecond float64, err error) {
	b, r, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("want burst,refill per second like 20,10, got %q", s)
	}
	burst, err = strconv.Atoi(strings.TrimSpace(b))
	if err != nil || burst < 1 || burst > 10_000 {
		return 0, 0, fmt.Errorf("burst: want a whole number from 1 to 10000, got %q", b)
	}
	perSecond, err = strconv.ParseFloat(strings.TrimSpace(r), 64)
	if err != nil || !(perSecond > 0 && perSecond <= 10_000) {
		return 0, 0, fmt.Errorf("refill: want calls per second, more than 0 and at most 10000, got %q", r)
	}
	return burst, perSecond, nil
}

// parsePrefix reads "10.0.0.0/8", or an address alone as the prefix of
// just that address.
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s reaches beyond IPv4-mapped addresses", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// SplitList reads a comma-separated list, as in CLERK_AUTHORIZED_PARTIES
// or a command-line flag: each item trimmed, empty ones dropped, so
// "a, b,,c" is [a b c] and "" is nil.
func SplitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// DerivePageTokenKey derives the page-token key from a secret the replicas
// share.
func DerivePageTokenKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("gatehouse page tokens v1"))
	return m.Sum(nil)
}
