package cli_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// TestTokenKinds mints each kind of credential from a running gatehouse
// dev, as the README shows, and calls with it.
func TestTokenKinds(t *testing.T) {
	_, state, dir := startDev(t, nil)
	conn := dial(t, state.GRPCAddr)
	users := gatehousev1.NewUserServiceClient(conn)
	projects := gatehousev1.NewProjectServiceClient(conn)
	as := func(tok, tenant string) context.Context {
		md := []string{"authorization", "Bearer " + tok}
		if tenant != "" {
			md = append(md, "x-gatehouse-tenant", tenant)
		}
		return metadata.AppendToOutgoingContext(context.Background(), md...)
	}
	mint := func(args ...string) string {
		t.Helper()
		tok, err := run(t, append([]string{"token", "--dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("gatehouse token %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(tok)
	}

	tests := []struct {
		args       []string
		prefix     string
		credential string // GetMe's session.credential; "" when GetMe is not the kind's
		tenant     string
		create     codes.Code
	}{
		{[]string{"--api-key"}, "ak_", "api_key", "", codes.PermissionDenied},
		{[]string{"--api-key", "--scopes", "org:projects:read,org:projects:create"}, "ak_", "api_key", "", codes.OK},
		{[]string{"--api-key", "--org", "org_dev", "--scopes", "org:projects:read,org:projects:create"}, "ak_", "", "", codes.OK},
		{[]string{"--oauth", "--scopes", "org:projects:create,org:projects:read"}, "oat_", "oauth", "", codes.OK},
		{[]string{"--oauth", "--jwt"}, "eyJ", "oauth", "", codes.PermissionDenied},
		{[]string{"--machine", "--jwt"}, "eyJ", "", "org_dev", codes.PermissionDenied},
		{[]string{"--machine", "--jwt", "--tenants", "org_dev"}, "eyJ", "", "org_dev", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			tok := mint(tt.args...)
			if !strings.HasPrefix(tok, tt.prefix) {
				t.Fatalf("token %q, want %s…", tok, tt.prefix)
			}
			if _, err := projects.ListProjects(as(tok, tt.tenant), &gatehousev1.ListProjectsRequest{}); err != nil {
				t.Errorf("ListProjects: %v", err)
			}
			_, err := projects.CreateProject(as(tok, tt.tenant), &gatehousev1.CreateProjectRequest{Name: "x"})
			wantCode(t, err, tt.create)
			me, err := users.GetMe(as(tok, tt.tenant), &gatehousev1.GetMeRequest{})
			if tt.credential == "" {
				wantCode(t, err, codes.PermissionDenied)
			} else if err != nil || me.Session.Credential != tt.credential {
				t.Errorf("GetMe: %v, %v; want credential %q", me, err, tt.credential)
			}
		})
	}
}

// TestTokenFlags: flags that do not apply to the kind minted are refused,
// not ignored; nothing here needs a running dev server.
func TestTokenFlags(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"--machine", "--api-key"}, "--machine and --api-key: mint one kind"},
		{[]string{"--jwt"}, "--jwt does not apply to a session token"},
		{[]string{"--api-key", "--jwt"}, "--jwt does not apply to --api-key"},
		{[]string{"--scopes", "x"}, "--scopes does not apply to a session token"},
		{[]string{"--machine", "--aud", "x"}, "--aud does not apply to --machine"},
		{[]string{"--oauth", "--org", "org_a"}, "--org does not apply to --oauth"},
		{[]string{"--oauth", "--tenants", "org_a"}, "--tenants does not apply to --oauth"},
		{[]string{"--api-key", "--user", "user_a", "--org", "org_a"}, "drop --user"},
		{[]string{"--api-key", "--role", "org:member"}, "--role does not apply to --api-key"},
		{[]string{"--api-key", "--user", "bob"}, "--user: want user_"},
		{[]string{"--api-key", "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := run(t, append([]string{"token", "--dir", t.TempDir()}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v, want %q", err, tt.err)
			}
		})
	}
	// A session token needs no running server: it is signed with the dev key.
	if tok, err := run(t, "token", "--dir", t.TempDir(), "--user", "user_a", "--org", "org_a"); err != nil || !strings.HasPrefix(tok, "eyJ") {
		t.Errorf("session token: %q, %v", tok, err)
	}
}
