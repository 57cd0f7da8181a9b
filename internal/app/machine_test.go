package app_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
)

// TestMachineTokens: a Clerk M2M token reads the tenant it names, only
// through RPCs that allow machines, and only tenants its claims list.
func TestMachineTokens(t *testing.T) { eachProtocol(t, testMachineTokens) }

func testMachineTokens(t *testing.T, via protocol) {
	g := start(t, "sqlite").over(t, via)
	ctx := context.Background()
	for _, org := range []string{"org_one", "org_two"} {
		admin := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_" + org[4:], OrgID: org, OrgRole: "org:admin"}))
		if _, err := g.projects.CreateProject(admin, &gatehousev1.CreateProjectRequest{Name: "of " + org}); err != nil {
			t.Fatal(err)
		}
	}
	mint := func(m clerkemu.Machine) string {
		tok, err := g.emu.MintMachineToken(m)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	as := func(token, tenant string) context.Context {
		md := []string{"authorization", "Bearer " + token}
		if tenant != "" {
			md = append(md, "x-gatehouse-tenant", tenant)
		}
		return metadata.AppendToOutgoingContext(ctx, md...)
	}
	anyTenant := mint(clerkemu.Machine{})
	onlyOne := mint(clerkemu.Machine{Claims: map[string]any{"tenants": []string{"org_one"}}})

	list, err := g.projects.ListProjects(as(anyTenant, "org_two"), &gatehousev1.ListProjectsRequest{})
	if err != nil || len(list.Projects) != 1 || list.Projects[0].Name != "of org_two" {
		t.Fatalf("machine ListProjects in org_two: %v, %v", list, err)
	}
	if _, err := g.projects.GetProject(as(anyTenant, "org_one"), &gatehousev1.GetProjectRequest{Id: list.Projects[0].Id}); grpcstatus.Code(err) != codes.NotFound {
		t.Errorf("org_two's project read as org_one: %v, want NotFound", err)
	}

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"write method", func() error {
			_, err := g.projects.CreateProject(as(anyTenant, "org_one"), &gatehousev1.CreateProjectRequest{Name: "x"})
			return err
		}, codes.PermissionDenied},
		{"method without allow_machines", func() error {
			_, err := g.users.GetMe(as(anyTenant, "org_one"), &gatehousev1.GetMeRequest{})
			return err
		}, codes.PermissionDenied},
		{"no tenant header", func() error {
			_, err := g.projects.ListProjects(as(anyTenant, ""), &gatehousev1.ListProjectsRequest{})
			return err
		}, codes.InvalidArgument},
		{"malformed tenant", func() error {
			_, err := g.projects.ListProjects(as(anyTenant, "org_one; DROP TABLE projects"), &gatehousev1.ListProjectsRequest{})
			return err
		}, codes.InvalidArgument},
		{"tenant in its claim", func() error {
			_, err := g.projects.ListProjects(as(onlyOne, "org_one"), &gatehousev1.ListProjectsRequest{})
			return err
		}, codes.OK},
		{"tenant not in its claim", func() error {
			_, err := g.projects.ListProjects(as(onlyOne, "org_two"), &gatehousev1.ListProjectsRequest{})
			return err
		}, codes.PermissionDenied},
		{"unknown token", func() error {
			_, err := g.projects.ListProjects(as("mt_unknown0000000000000000000000", "org_one"), &gatehousev1.ListProjectsRequest{})
			return err
		}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := grpcstatus.Code(tt.call()); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("revoked", func(t *testing.T) {
		tok := mint(clerkemu.Machine{})
		// Fresh tokens are verified once, then cached for at most 30 s; a
		// revoked one is refused from its first verification on.
		if !g.emu.RevokeMachineToken(tok) {
			t.Fatal("emulator did not know the token")
		}
		_, err := g.projects.ListProjects(as(tok, "org_one"), &gatehousev1.ListProjectsRequest{})
		wantCode(t, err, codes.Unauthenticated)
	})
}
