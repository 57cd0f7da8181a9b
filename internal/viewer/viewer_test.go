package viewer_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// tenantPattern is DESIGN.md's rule, which ValidTenantID implements by hand.
var tenantPattern = regexp.MustCompile(`^(org|user)_[A-Za-z0-9]+$`)

func TestValidTenantID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"org_2abcXYZ09", true},
		{"user_2abc", true},
		{"org_", false},
		{"user_", false},
		{"org", false},
		{"team_abc", false},
		{"org_abc-def", false},
		{"org_abc'; DROP TABLE projects; --", false},
		{"org_abc\x00", false},
		{"ORG_abc", false},
		{" org_abc", false},
		{"org_ä", false},
		{"org_" + string(make([]byte, 65)), false},
	} {
		if got := viewer.ValidTenantID(tt.id); got != tt.want {
			t.Errorf("ValidTenantID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestValidUserAndOrgID(t *testing.T) {
	for _, tt := range []struct {
		id        string
		user, org bool
	}{
		{"user_2abc", true, false},
		{"org_2abc", false, true},
		{"user_", false, false},
		{"org_", false, false},
		{"mch_2abc", false, false},
		{"user_a-b", false, false},
		{"org_user_1", false, false},
	} {
		if got := viewer.ValidUserID(tt.id); got != tt.user {
			t.Errorf("ValidUserID(%q) = %v, want %v", tt.id, got, tt.user)
		}
		if got := viewer.ValidOrgID(tt.id); got != tt.org {
			t.Errorf("ValidOrgID(%q) = %v, want %v", tt.id, got, tt.org)
		}
	}
}

func FuzzValidTenantID(f *testing.F) {
	for _, s := range []string{"org_abc", "user_1", "org_", "x", "org_a b", "user_Ωmega"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if viewer.ValidTenantID(id) && !tenantPattern.MatchString(id) {
			t.Fatalf("ValidTenantID accepts %q, which the pattern rejects", id)
		}
		if !viewer.ValidTenantID(id) && tenantPattern.MatchString(id) && len(id) <= 68 {
			t.Fatalf("ValidTenantID rejects %q, which the pattern accepts", id)
		}
	})
}

func TestContextAndPermissions(t *testing.T) {
	ctx := context.Background()
	if _, ok := viewer.FromContext(ctx); ok {
		t.Fatal("an empty context has a principal")
	}
	if viewer.IsSystem(ctx) || !viewer.IsSystem(viewer.NewSystemContext(ctx)) {
		t.Fatal("IsSystem")
	}
	if _, ok := viewer.FromContext(viewer.NewContext(ctx, nil)); ok {
		t.Fatal("a nil principal counts as one")
	}
	p := &viewer.Principal{Kind: viewer.KindUser, Subject: "user_a", TenantID: "user_a",
		Permissions: []string{"org:projects:create", "org:projects:read"}}
	got, ok := viewer.FromContext(viewer.NewContext(ctx, p))
	if !ok || got != p {
		t.Fatal("FromContext does not return the principal put in")
	}
	if !p.Has("org:projects:read") || p.Has("org:projects:delete") ||
		!p.HasAll([]string{"org:projects:read", "org:projects:create"}) || p.HasAll([]string{"org:projects:read", "org:projects:update"}) {
		t.Error("Has/HasAll")
	}
	if !p.Personal() {
		t.Error("a user in its own tenant is not Personal")
	}
}
