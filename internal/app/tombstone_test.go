package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/gatehouse-dev/gatehouse/ent/project"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

func onDatabase(url string) option {
	return func(c *config.Config) { c.DatabaseURL = url }
}

// projectsIn counts the projects of tenant, read as Gatehouse itself.
func (g *gatehouse) projectsIn(t *testing.T, tenant string) int {
	t.Helper()
	n, err := g.app.Store.Client.Project.Query().Where(project.TenantID(tenant)).
		Count(viewer.NewSystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNoWritesIntoADeletedTenant: once organization.deleted or user.deleted
// is applied, a session that is still valid cannot put anything back into
// that tenant: FAILED_PRECONDITION, and no row is written. The deleted
// user's session is tried on a second replica, which still trusts the user
// (its live-user window has not run out) and so lets the call reach the
// store.
func TestNoWritesIntoADeletedTenant(t *testing.T) { eachProtocol(t, testNoWritesIntoADeletedTenant) }

func testNoWritesIntoADeletedTenant(t *testing.T, via protocol) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := storetest.URL(t, dialect)
			g := start(t, dialect, onDatabase(url)).over(t, via)
			ctx := context.Background()

			member := withToken(ctx, g.mint(t, clerkemu.Session{UserID: "user_m", OrgID: "org_gone", OrgRole: "org:admin"}))
			kept, err := g.projects.CreateProject(member, &gatehousev1.CreateProjectRequest{Name: "before"})
			if err != nil {
				t.Fatal(err)
			}
			g.send(t, webhook.TypeOrganizationDeleted, clerkemu.Sample{OrgID: "org_gone"})
			_, err = g.projects.CreateProject(member, &gatehousev1.CreateProjectRequest{Name: "after"})
			wantCode(t, err, codes.FailedPrecondition)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "deleted") {
				t.Errorf("message %q does not say the tenant is deleted", msg)
			}
			_, err = g.projects.UpdateProject(member, &gatehousev1.UpdateProjectRequest{
				Project:    &gatehousev1.Project{Id: kept.Project.Id, Name: "renamed"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
			})
			wantCode(t, err, codes.FailedPrecondition)
			if n := g.projectsIn(t, "org_gone"); n != 0 {
				t.Errorf("%d projects in the deleted organization, want 0", n)
			}

			// A second replica on the same database.
			other := start(t, dialect, onDatabase(url), func(c *config.Config) { c.Migrate = false }).over(t, via)
			user := withToken(ctx, other.mint(t, clerkemu.Session{UserID: "user_leaving"}))
			if _, err := other.projects.CreateProject(user, &gatehousev1.CreateProjectRequest{Name: "diary"}); err != nil {
				t.Fatal(err)
			}
			g.send(t, webhook.TypeUserDeleted, clerkemu.Sample{UserID: "user_leaving"})
			_, err = other.projects.CreateProject(user, &gatehousev1.CreateProjectRequest{Name: "diary, again"})
			if code := status.Code(err); code != codes.FailedPrecondition && code != codes.Unauthenticated {
				t.Errorf("create in a deleted user's tenant: got %v (%v), want FailedPrecondition", code, err)
			}
			if n := other.projectsIn(t, "user_leaving"); n != 0 {
				t.Errorf("%d projects in the deleted user's tenant, want 0", n)
			}
		})
	}
}

// TestCreatesRacingOrganizationDeleted: CreateProject calls running while
// organization.deleted is applied either commit before it (and are deleted
// with the organization) or are refused with FAILED_PRECONDITION; no project
// outlives the deletion, and no call fails otherwise.
func TestCreatesRacingOrganizationDeleted(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			g := start(t, dialect)
			ctx := context.Background()
			rounds := 8
			if dialect == "sqlite" {
				rounds = 2
			}
			for r := range rounds {
				org := fmt.Sprintf("org_race%d", r)
				tok := withToken(ctx, g.mint(t, clerkemu.Session{UserID: fmt.Sprintf("user_racer%d", r), OrgID: org, OrgRole: "org:admin"}))
				if _, err := g.projects.CreateProject(tok, &gatehousev1.CreateProjectRequest{Name: "first"}); err != nil {
					t.Fatal(err)
				}
				var deleted atomic.Bool
				var created, refused atomic.Int64
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Go(func() {
						after := 0
						for i := 0; after < 3; i++ {
							if deleted.Load() {
								after++
							}
							_, err := g.projects.CreateProject(tok, &gatehousev1.CreateProjectRequest{Name: fmt.Sprintf("w%d-%d", w, i)})
							switch status.Code(err) {
							case codes.OK:
								created.Add(1)
							case codes.FailedPrecondition:
								refused.Add(1)
								return
							default:
								t.Errorf("create while the organization is deleted: %v", err)
								return
							}
						}
					})
				}
				time.Sleep(time.Duration(r%4) * 5 * time.Millisecond)
				g.send(t, webhook.TypeOrganizationDeleted, clerkemu.Sample{OrgID: org})
				deleted.Store(true)
				wg.Wait()
				if n := g.projectsIn(t, org); n != 0 {
					t.Errorf("round %d: %d projects outlived organization.deleted (%d created, %d refused)", r, n, created.Load(), refused.Load())
				}
			}
		})
	}
}
