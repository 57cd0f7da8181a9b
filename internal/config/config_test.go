package config_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

func env(m map[string]string) config.Getenv {
	return func(k string) string { return m[k] }
}

func valid() map[string]string {
	return map[string]string{
		"CLERK_SECRET_KEY":             "sk_test_abc",
		"CLERK_ISSUER":                 "https://clerk.example.com",
		"CLERK_WEBHOOK_SIGNING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := config.Load(env(valid()))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.GRPCAddr, c.HTTPAddr, c.ClerkAPIURL, c.JWKSRefetchInterval, c.Migrate, c.LogFormat, c.DatabaseURL,
		c.VerifyBurst, c.VerifyRate, c.OAuthAudiences}
	want := []any{":50051", ":8080", "https://api.clerk.com/v1", 5 * time.Second, true, "json", "",
		20, 10.0, []string(nil)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if c.WebhookRetention != 168*time.Hour {
		t.Errorf("webhook retention = %s, want 168h", c.WebhookRetention)
	}
	if len(c.PageTokenKey) != 32 {
		t.Errorf("derived page token key has %d bytes", len(c.PageTokenKey))
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := config.Load(env(map[string]string{
		"DATABASE_URL":             "mysql://x",
		"GATEHOUSE_GRPC_ADDR":      "nonsense",
		"CLERK_API_URL":            "::",
		"GATEHOUSE_LOG_LEVEL":      "loud",
		"CLERK_JWT_KEY":            "not a pem",
		"GATEHOUSE_VERIFY_RATE":    "lots",
		"GATEHOUSE_OAUTH_AUDIENCE": "https://api.example.com, two words",
	}))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load: got %v, want *config.Error", err)
	}
	for _, v := range []string{"DATABASE_URL", "GATEHOUSE_GRPC_ADDR", "CLERK_API_URL", "GATEHOUSE_LOG_LEVEL",
		"CLERK_JWT_KEY", "CLERK_ISSUER", "CLERK_WEBHOOK_SIGNING_SECRET", "GATEHOUSE_VERIFY_RATE", "GATEHOUSE_OAUTH_AUDIENCE"} {
		if !strings.Contains(err.Error(), v+":") {
			t.Errorf("error does not name %s:\n%v", v, err)
		}
	}
}

func TestIssuerFromPublishableKey(t *testing.T) {
	tests := []struct {
		pk, want string
		ok       bool
	}{
		// base64("clerk.example.com$")
		{"pk_test_Y2xlcmsuZXhhbXBsZS5jb20k", "https://clerk.example.com", true},
		{"pk_live_Y2xlcmsuZXhhbXBsZS5jb20k", "https://clerk.example.com", true},
		{"pk_test_Y2xlcmsuZXhhbXBsZS5jb20", "", false}, // no "$"
		{"sk_test_Y2xlcmsuZXhhbXBsZS5jb20k", "", false},
		{"pk_test_!!!", "", false},
	}
	for _, tt := range tests {
		got, err := config.IssuerFromPublishableKey(tt.pk)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("IssuerFromPublishableKey(%q) = %q, %v; want %q, ok=%v", tt.pk, got, err, tt.want, tt.ok)
		}
	}
}

func TestPublishableKeyPinsIssuer(t *testing.T) {
	m := valid()
	delete(m, "CLERK_ISSUER")
	m["CLERK_PUBLISHABLE_KEY"] = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k"
	c, err := config.Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://clerk.example.com" {
		t.Errorf("Issuer = %q", c.Issuer)
	}
	m["CLERK_ISSUER"] = "https://other.example.com"
	if _, err := config.Load(env(m)); err == nil || !strings.Contains(err.Error(), "disagrees") {
		t.Errorf("conflicting issuer: got %v", err)
	}
}

func TestParseRolePermissions(t *testing.T) {
	got, err := config.ParseRolePermissions("org:admin=org:projects:read org:projects:create; org:viewer=org:projects:read")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"org:admin":  {"org:projects:create", "org:projects:read"},
		"org:viewer": {"org:projects:read"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, bad := range []string{"admin=org:x:y", "org:admin", "org:admin=projects:read"} {
		if _, err := config.ParseRolePermissions(bad); err == nil {
			t.Errorf("ParseRolePermissions(%q) succeeded", bad)
		}
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                  nil,
		" , ,":              nil,
		"a":                 {"a"},
		"a, b,,c ":          {"a", "b", "c"},
		"org:a , org:b":     {"org:a", "org:b"},
		"https://x.test/, ": {"https://x.test/"},
	} {
		if d := cmp.Diff(want, config.SplitList(in)); d != "" {
			t.Errorf("SplitList(%q) (-want +got):\n%s", in, d)
		}
	}
}

func TestVerifyRateAndAudience(t *testing.T) {
	tests := []struct {
		rate, audience string
		burst          int
		perSecond      float64
		audiences      []string
		bad            string // the variable Load names, if any
	}{
		{rate: "5,0.5", burst: 5, perSecond: 0.5},
		{rate: " 100 , 50 ", burst: 100, perSecond: 50},
		{rate: "20", bad: "GATEHOUSE_VERIFY_RATE"},
		{rate: "0,10", bad: "GATEHOUSE_VERIFY_RATE"},
		{rate: "1.5,10", bad: "GATEHOUSE_VERIFY_RATE"},
		{rate: "20,0", bad: "GATEHOUSE_VERIFY_RATE"},
		{rate: "20,-1", bad: "GATEHOUSE_VERIFY_RATE"},
		{rate: "20,NaN", bad: "GATEHOUSE_VERIFY_RATE"},
		{audience: "https://api.example.com", burst: 20, perSecond: 10, audiences: []string{"https://api.example.com"}},
		{audience: "a, b,", burst: 20, perSecond: 10, audiences: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.rate+"|"+tt.audience, func(t *testing.T) {
			m := valid()
			m["GATEHOUSE_VERIFY_RATE"], m["GATEHOUSE_OAUTH_AUDIENCE"] = tt.rate, tt.audience
			c, err := config.Load(env(m))
			if tt.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bad+":") {
					t.Fatalf("Load = %v, want a problem with %s", err, tt.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []any{c.VerifyBurst, c.VerifyRate, c.OAuthAudiences}
			if d := cmp.Diff([]any{tt.burst, tt.perSecond, tt.audiences}, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		in   string
		want []string // as netip.Prefix prints them
		bad  bool
	}{
		{in: "", want: nil},
		{in: "10.0.0.0/8, 192.0.2.7", want: []string{"10.0.0.0/8", "192.0.2.7/32"}},
		{in: "2001:db8::/32,::1", want: []string{"2001:db8::/32", "::1/128"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},          // masked
		{in: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}}, // IPv4 in IPv6
		{in: "::ffff:192.0.2.7", want: []string{"192.0.2.7/32"}},
		{in: "proxy.internal", bad: true},
		{in: "10.0.0.0/33", bad: true},
		{in: "::ffff:0:0/90", bad: true}, // mapped, but wider than IPv4
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m := valid()
			m["GATEHOUSE_TRUSTED_PROXIES"] = tt.in
			c, err := config.Load(env(m))
			if tt.bad {
				if err == nil || !strings.Contains(err.Error(), "GATEHOUSE_TRUSTED_PROXIES:") {
					t.Fatalf("Load = %v, want a problem with GATEHOUSE_TRUSTED_PROXIES", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range c.TrustedProxies {
				got = append(got, p.String())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestWebhookSigningSecret: the secret must be a Svix one, "whsec_" and the
// base64 of at least 24 bytes; anything weaker is listed with the other
// problems, without echoing the secret.
func TestWebhookSigningSecret(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n))) }
	for _, tc := range []struct {
		name, secret string
		ok           bool
	}{
		{"Svix's own: 24 bytes", "whsec_" + b64(24), true},
		{"longer", "whsec_" + b64(32), true},
		{"surrounding space", " whsec_" + b64(24) + "\n", true},
		{"missing", "", false},
		{"empty key", "whsec_", false},
		{"short key", "whsec_" + b64(23), false},
		{"not base64", "whsec_" + strings.Repeat("!", 32), false},
		{"no whsec_ prefix", b64(24), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := valid()
			e["CLERK_WEBHOOK_SIGNING_SECRET"] = tc.secret
			e["GATEHOUSE_LOG_LEVEL"] = "loud" // another problem, listed beside it
			_, err := config.Load(env(e))
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: got %v, want *config.Error", err)
			}
			listed := strings.Contains(err.Error(), "CLERK_WEBHOOK_SIGNING_SECRET:")
			if listed == tc.ok {
				t.Errorf("secret %q: problems\n%v", tc.secret, err)
			}
			if !strings.Contains(err.Error(), "GATEHOUSE_LOG_LEVEL:") {
				t.Errorf("the other problem is not listed:\n%v", err)
			}
			if k := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(tc.secret), "whsec_")); len(k) > 8 && strings.Contains(err.Error(), k) {
				t.Errorf("the problem echoes the secret:\n%v", err)
			}
		})
	}
}

func TestWebhookRetention(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration // 0: a problem
	}{
		{"", 168 * time.Hour},
		{"24h", 24 * time.Hour},
		{" 720h ", 720 * time.Hour},
		{"1h", time.Hour},
		{"8760h", 8760 * time.Hour},
		{"59m", 0},
		{"8761h", 0},
		{"-168h", 0},
		{"7d", 0},
		{"forever", 0},
	} {
		t.Run(tc.value, func(t *testing.T) {
			e := valid()
			e["GATEHOUSE_WEBHOOK_RETENTION"] = tc.value
			e["GATEHOUSE_LOG_FORMAT"] = "xml" // another problem, listed beside it
			c, err := config.Load(env(e))
			listed := err != nil && strings.Contains(err.Error(), "GATEHOUSE_WEBHOOK_RETENTION:")
			switch {
			case tc.want == 0 && !listed:
				t.Errorf("%q is not listed as a problem: %v", tc.value, err)
			case tc.want != 0 && listed:
				t.Errorf("%q listed as a problem: %v", tc.value, err)
			case tc.want != 0 && c.WebhookRetention != tc.want:
				t.Errorf("retention = %s, want %s", c.WebhookRetention, tc.want)
			}
			if err == nil || !strings.Contains(err.Error(), "GATEHOUSE_LOG_FORMAT:") {
				t.Errorf("the other problem is not listed: %v", err)
			}
		})
	}
}
