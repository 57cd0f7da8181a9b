package config_test

import (
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
