package projectapi_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/project"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/projectapi"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const (
	orgA  = "org_A"
	orgB  = "org_B"
	alice = "user_alice" // admin of A
	bob   = "user_bob"   // admin of B
	carol = "user_carol" // personal tenant
	dave  = "user_dave"  // personal tenant
)

type fixture struct {
	svc    *projectapi.Service
	client *ent.Client
	tokens *pagetoken.Codec
}

func setup(t *testing.T, s *store.Store) *fixture {
	t.Helper()
	ctx := viewer.NewSystemContext(context.Background())
	now := time.Now()
	for _, id := range []string{alice, bob, carol, dave} {
		if err := s.Client.User.Create().SetID(id).SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx); err != nil {
			t.Fatalf("seed user %s: %v", id, err)
		}
	}
	tokens := pagetoken.New([]byte("projectapi test key, 32 bytes.."))
	return &fixture{svc: projectapi.New(s.Client, tokens), client: s.Client, tokens: tokens}
}

// as returns the context of a signed-in user acting in tenant.
func as(subject, tenant string) context.Context {
	p := &viewer.Principal{Kind: viewer.KindUser, Subject: subject, TenantID: tenant, Permissions: []string{
		"org:projects:create", "org:projects:delete", "org:projects:read", "org:projects:update",
	}}
	if strings.HasPrefix(tenant, "org_") {
		p.OrgID, p.OrgRole = tenant, "org:admin"
	}
	return viewer.NewContext(context.Background(), p)
}

func asMachine(tenant string) context.Context {
	return viewer.NewContext(context.Background(), &viewer.Principal{
		Kind: viewer.KindMachine, Subject: "mch_1", TenantID: tenant, Permissions: []string{"org:projects:read"},
	})
}

func (f *fixture) create(t *testing.T, ctx context.Context, name string) *gatehousev1.Project {
	t.Helper()
	resp, err := f.svc.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: name, Description: "about " + name})
	if err != nil {
		t.Fatalf("CreateProject(%q): %v", name, err)
	}
	return resp.GetProject()
}

// wantError checks that err maps to code and, for INVALID_ARGUMENT, that
// its google.rpc.BadRequest names exactly fields.
func wantError(t *testing.T, err error, code codes.Code, fields ...string) {
	t.Helper()
	st := derrors.Status(err)
	if st.Code() != code {
		t.Fatalf("error %v has code %v, want %v", err, st.Code(), code)
	}
	var got []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				got = append(got, v.GetField())
			}
		}
	}
	if diff := cmp.Diff(fields, got); diff != "" {
		t.Errorf("field violations of %v (-want +got):\n%s", err, diff)
	}
}

// ignoreGenerated ignores what the server chooses.
var ignoreGenerated = protocmp.IgnoreFields(&gatehousev1.Project{}, "id", "create_time", "update_time")

func TestCreateProject(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		start := time.Now().Add(-time.Second)
		resp, err := f.svc.CreateProject(as(alice, orgA), &gatehousev1.CreateProjectRequest{
			Name:        "  Apollo  ",
			Description: "to the moon\n\tand back",
		})
		if err != nil {
			t.Fatalf("CreateProject: %v", err)
		}
		got := resp.GetProject()
		want := &gatehousev1.Project{
			TenantId:    orgA,
			OwnerId:     alice,
			Name:        "Apollo",
			Description: "to the moon\n\tand back",
			Status:      gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE,
		}
		if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreGenerated); diff != "" {
			t.Errorf("created project (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(got.GetId(), "prj_") {
			t.Errorf("id = %q, want prj_…", got.GetId())
		}
		ct := got.GetCreateTime().AsTime()
		if ct.Before(start) || ct.After(time.Now().Add(time.Second)) || !got.GetUpdateTime().AsTime().Equal(ct) {
			t.Errorf("create_time %v, update_time %v: want both now", ct, got.GetUpdateTime().AsTime())
		}

		// What Create returned is what a later read returns, to the timestamp.
		again, err := f.svc.GetProject(as(alice, orgA), &gatehousev1.GetProjectRequest{Id: got.GetId()})
		if err != nil {
			t.Fatalf("GetProject: %v", err)
		}
		if diff := cmp.Diff(got, again.GetProject(), protocmp.Transform()); diff != "" {
			t.Errorf("GetProject after CreateProject (-created +read):\n%s", diff)
		}

		// A personal tenant is the user's own.
		mine := f.create(t, as(carol, carol), "Mine")
		if mine.GetTenantId() != carol || mine.GetOwnerId() != carol {
			t.Errorf("personal project tenant %q owner %q, want %q", mine.GetTenantId(), mine.GetOwnerId(), carol)
		}
	})
}

func TestCreateProjectValidation(t *testing.T) {
	tests := []struct {
		name, inName, inDescription string
		wantName                    string // when valid
		wantFields                  []string
	}{
		{name: "empty name", inName: "", wantFields: []string{"name"}},
		{name: "white space name", inName: " \t\n\u00a0\u3000 ", wantFields: []string{"name"}},
		{name: "101 code points", inName: strings.Repeat("a", 101), wantFields: []string{"name"}},
		{name: "101 multi-byte code points", inName: strings.Repeat("é", 101), wantFields: []string{"name"}},
		{name: "control character", inName: "a\u0007b", wantFields: []string{"name"}},
		{name: "NUL in name", inName: "a\x00b", wantFields: []string{"name"}},
		{name: "C1 control in name", inName: "a\u009bb", wantFields: []string{"name"}},
		{name: "newline inside name", inName: "a\nb", wantFields: []string{"name"}},
		{name: "invalid UTF-8 name", inName: "a\xffb", wantFields: []string{"name"}},
		{name: "2001-character description", inName: "ok", inDescription: strings.Repeat("d", 2001), wantFields: []string{"description"}},
		{name: "NUL in description", inName: "ok", inDescription: "a\x00b", wantFields: []string{"description"}},
		{name: "every field wrong", inName: "", inDescription: strings.Repeat("ü", 2001), wantFields: []string{"name", "description"}},

		{name: "100 ASCII", inName: strings.Repeat("a", 100), wantName: strings.Repeat("a", 100)},
		{name: "100 two-byte", inName: strings.Repeat("é", 100), wantName: strings.Repeat("é", 100)},
		{name: "100 four-byte", inName: strings.Repeat("😀", 100), wantName: strings.Repeat("😀", 100)},
		{name: "100 after trimming", inName: "  " + strings.Repeat("字", 100) + "\n", wantName: strings.Repeat("字", 100)},
		{name: "inner spaces kept", inName: " a  b ", wantName: "a  b"},
		{name: "2000 four-byte description", inName: "ok", inDescription: strings.Repeat("😀", 2000), wantName: "ok"},
	}
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := as(alice, orgA)
				before := f.client.Project.Query().CountX(ctx)
				resp, err := f.svc.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: tt.inName, Description: tt.inDescription})
				if tt.wantFields != nil {
					wantError(t, err, codes.InvalidArgument, tt.wantFields...)
					if after := f.client.Project.Query().CountX(ctx); after != before {
						t.Errorf("an invalid request wrote: %d projects, had %d", after, before)
					}
					return
				}
				if err != nil {
					t.Fatalf("CreateProject: %v", err)
				}
				got, err := f.svc.GetProject(ctx, &gatehousev1.GetProjectRequest{Id: resp.GetProject().GetId()})
				if err != nil {
					t.Fatalf("GetProject: %v", err)
				}
				if got.GetProject().GetName() != tt.wantName || got.GetProject().GetDescription() != tt.inDescription {
					t.Errorf("stored name %q, description of %d bytes; want %q, %d bytes",
						got.GetProject().GetName(), len(got.GetProject().GetDescription()), tt.wantName, len(tt.inDescription))
				}
			})
		}
	})
}

// TestCreateProjectWithOrganizationKey: an organization calling with its
// own API key creates projects owned by the key, in the organization.
func TestCreateProjectWithOrganizationKey(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		const keyID = "ak_3beecc9c60adb5f9b850e91a8ee1e992"
		ctx := viewer.NewContext(context.Background(), &viewer.Principal{
			Kind: viewer.KindOrganization, Credential: viewer.CredentialAPIKey, Subject: orgA, SessionID: keyID,
			TenantID: orgA, OrgID: orgA, Permissions: []string{"org:projects:create", "org:projects:read"},
		})
		got := f.create(t, ctx, "by key")
		want := &gatehousev1.Project{TenantId: orgA, OwnerId: keyID, Name: "by key", Description: "about by key",
			Status: gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE}
		if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreGenerated); diff != "" {
			t.Errorf("created project (-want +got):\n%s", diff)
		}
		list, err := f.svc.ListProjects(as(alice, orgA), &gatehousev1.ListProjectsRequest{})
		if err != nil || len(list.GetProjects()) != 1 || list.GetProjects()[0].GetOwnerId() != keyID {
			t.Errorf("a member lists %v, %v; want the key's project", list, err)
		}
	})
}

func TestCreateProjectByMachineIsDenied(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		_, err := f.svc.CreateProject(asMachine(orgA), &gatehousev1.CreateProjectRequest{Name: "x"})
		wantError(t, err, codes.PermissionDenied)
		_, err = f.svc.CreateProject(context.Background(), &gatehousev1.CreateProjectRequest{Name: "x"})
		wantError(t, err, codes.Internal)
	})
}

func TestProjectsOfOtherTenantsAreNotFound(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		a := f.create(t, as(alice, orgA), "A's")
		b := f.create(t, as(bob, orgB), "B's")
		c := f.create(t, as(carol, carol), "carol's")
		d := f.create(t, as(dave, dave), "dave's")

		tests := []struct {
			name string
			ctx  context.Context
			id   string
		}{
			{"org A, B's project", as(alice, orgA), b.GetId()},
			{"org A, carol's project", as(alice, orgA), c.GetId()},
			{"B's member in A's personal tenant", as(bob, bob), b.GetId()},
			{"carol, dave's project", as(carol, carol), d.GetId()},
			{"dave, carol's project", as(dave, dave), c.GetId()},
			{"machine of B, A's project", asMachine(orgB), a.GetId()},
			{"malformed id", as(alice, orgA), "not-an-id"},
			{"prefix only", as(alice, orgA), "prj_"},
			{"injection", as(alice, orgA), "prj_1' OR '1'='1"},
			{"nonexistent", as(alice, orgA), "prj_AAAAAAAAAAAAAAAAAAAAAAAAAA"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.svc.GetProject(tt.ctx, &gatehousev1.GetProjectRequest{Id: tt.id})
				wantError(t, err, codes.NotFound)
				_, err = f.svc.UpdateProject(tt.ctx, &gatehousev1.UpdateProjectRequest{
					Project:    &gatehousev1.Project{Id: tt.id, Name: "pwned"},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
				})
				wantError(t, err, codes.NotFound)
				_, err = f.svc.DeleteProject(tt.ctx, &gatehousev1.DeleteProjectRequest{Id: tt.id})
				wantError(t, err, codes.NotFound)
			})
		}

		// Nothing moved.
		for _, p := range []*gatehousev1.Project{a, b, c, d} {
			got, err := f.svc.GetProject(as(p.GetOwnerId(), p.GetTenantId()), &gatehousev1.GetProjectRequest{Id: p.GetId()})
			if err != nil {
				t.Fatalf("owner's GetProject(%s): %v", p.GetId(), err)
			}
			if diff := cmp.Diff(p, got.GetProject(), protocmp.Transform()); diff != "" {
				t.Errorf("project of %s changed (-before +after):\n%s", p.GetTenantId(), diff)
			}
		}

		// A machine of the tenant reads its projects.
		if _, err := f.svc.GetProject(asMachine(orgA), &gatehousev1.GetProjectRequest{Id: a.GetId()}); err != nil {
			t.Errorf("machine of A, GetProject(A's): %v", err)
		}
	})
}

func TestEmptyIDIsInvalid(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		ctx := as(alice, orgA)
		_, err := f.svc.GetProject(ctx, &gatehousev1.GetProjectRequest{})
		wantError(t, err, codes.InvalidArgument, "id")
		_, err = f.svc.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{})
		wantError(t, err, codes.InvalidArgument, "id")
	})
}

func TestUpdateProject(t *testing.T) {
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	const (
		active   = gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE
		archived = gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED
	)
	tests := []struct {
		name       string
		in         *gatehousev1.Project // Id filled in with the project's
		noID       bool
		mask       *fieldmaskpb.FieldMask
		want       *gatehousev1.Project // name, description, status after
		wantFields []string             // INVALID_ARGUMENT
	}{
		{
			name: "name only",
			in:   &gatehousev1.Project{Name: "  New  ", Description: "ignored", Status: archived},
			mask: mask("name"),
			want: &gatehousev1.Project{Name: "New", Description: "old description", Status: active},
		},
		{
			name: "description and status",
			in:   &gatehousev1.Project{Name: "", Description: "new description", Status: archived},
			mask: mask("description", "status"),
			want: &gatehousev1.Project{Name: "Old", Description: "new description", Status: archived},
		},
		{
			name: "clear description",
			in:   &gatehousev1.Project{},
			mask: mask("description"),
			want: &gatehousev1.Project{Name: "Old", Status: active},
		},
		{
			name: "all three, repeated path",
			in:   &gatehousev1.Project{Name: "N", Description: "D", Status: archived},
			mask: mask("name", "description", "status", "name"),
			want: &gatehousev1.Project{Name: "N", Description: "D", Status: archived},
		},
		{
			name: "tenant and owner in the request are ignored",
			in:   &gatehousev1.Project{Name: "N", TenantId: orgB, OwnerId: bob},
			mask: mask("name"),
			want: &gatehousev1.Project{Name: "N", Description: "old description", Status: active},
		},
		{
			name: "invalid value outside the mask is ignored",
			in:   &gatehousev1.Project{Name: "", Description: "d"},
			mask: mask("description"),
			want: &gatehousev1.Project{Name: "Old", Description: "d", Status: active},
		},
		{name: "nil mask", in: &gatehousev1.Project{Name: "N"}, mask: nil, wantFields: []string{"update_mask"}},
		{name: "empty mask", in: &gatehousev1.Project{Name: "N"}, mask: mask(), wantFields: []string{"update_mask"}},
		{name: "wildcard", in: &gatehousev1.Project{Name: "N"}, mask: mask("*"), wantFields: []string{"update_mask"}},
		{name: "unknown path", in: &gatehousev1.Project{Name: "N"}, mask: mask("name", "owner_id"), wantFields: []string{"update_mask"}},
		{name: "tenant_id path", in: &gatehousev1.Project{TenantId: orgB}, mask: mask("tenant_id"), wantFields: []string{"update_mask"}},
		{name: "nested path", in: &gatehousev1.Project{Name: "N"}, mask: mask("project.name"), wantFields: []string{"update_mask"}},
		{name: "status unspecified", in: &gatehousev1.Project{}, mask: mask("status"), wantFields: []string{"project.status"}},
		{name: "status unknown", in: &gatehousev1.Project{Status: 7}, mask: mask("status"), wantFields: []string{"project.status"}},
		{name: "empty name", in: &gatehousev1.Project{Name: "  "}, mask: mask("name"), wantFields: []string{"project.name"}},
		{name: "long name", in: &gatehousev1.Project{Name: strings.Repeat("ß", 101)}, mask: mask("name"), wantFields: []string{"project.name"}},
		{name: "long description", in: &gatehousev1.Project{Description: strings.Repeat("x", 2001)}, mask: mask("description"), wantFields: []string{"project.description"}},
		{name: "no project", in: nil, mask: mask("name"), wantFields: []string{"project"}},
		{name: "no id", in: &gatehousev1.Project{Name: "N"}, noID: true, mask: mask("name"), wantFields: []string{"project.id"}},
		{
			name: "everything wrong at once", in: &gatehousev1.Project{Name: "", Status: 0}, noID: true,
			mask:       mask("name", "status", "bogus"),
			wantFields: []string{"update_mask", "project.id", "project.name", "project.status"},
		},
	}
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		ctx := as(alice, orgA)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				created, err := f.svc.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: "Old", Description: "old description"})
				if err != nil {
					t.Fatal(err)
				}
				orig := created.GetProject()
				var in *gatehousev1.Project
				if tt.in != nil {
					in = clone(tt.in)
					if !tt.noID {
						in.Id = orig.GetId()
					}
				}
				time.Sleep(2 * time.Millisecond) // so that update_time moves
				resp, err := f.svc.UpdateProject(ctx, &gatehousev1.UpdateProjectRequest{Project: in, UpdateMask: tt.mask})

				after, gerr := f.svc.GetProject(ctx, &gatehousev1.GetProjectRequest{Id: orig.GetId()})
				if gerr != nil {
					t.Fatalf("GetProject after update: %v", gerr)
				}
				if tt.wantFields != nil {
					wantError(t, err, codes.InvalidArgument, tt.wantFields...)
					if diff := cmp.Diff(orig, after.GetProject(), protocmp.Transform()); diff != "" {
						t.Errorf("a rejected update changed the project (-before +after):\n%s", diff)
					}
					return
				}
				if err != nil {
					t.Fatalf("UpdateProject: %v", err)
				}
				want := clone(orig)
				want.Name, want.Description, want.Status = tt.want.Name, tt.want.Description, tt.want.Status
				if diff := cmp.Diff(want, resp.GetProject(), protocmp.Transform(), protocmp.IgnoreFields(&gatehousev1.Project{}, "update_time")); diff != "" {
					t.Errorf("updated project (-want +got):\n%s", diff)
				}
				if !resp.GetProject().GetUpdateTime().AsTime().After(orig.GetUpdateTime().AsTime()) {
					t.Errorf("update_time %v did not move past %v", resp.GetProject().GetUpdateTime().AsTime(), orig.GetUpdateTime().AsTime())
				}
				if diff := cmp.Diff(resp.GetProject(), after.GetProject(), protocmp.Transform()); diff != "" {
					t.Errorf("GetProject after UpdateProject (-updated +read):\n%s", diff)
				}
			})
		}
	})
}

func clone(p *gatehousev1.Project) *gatehousev1.Project {
	return proto.Clone(p).(*gatehousev1.Project)
}

func TestDeleteProject(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		ctx := as(alice, orgA)
		p := f.create(t, ctx, "doomed")
		keep := f.create(t, ctx, "kept")
		if _, err := f.svc.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: p.GetId()}); err != nil {
			t.Fatalf("DeleteProject: %v", err)
		}
		_, err := f.svc.GetProject(ctx, &gatehousev1.GetProjectRequest{Id: p.GetId()})
		wantError(t, err, codes.NotFound)
		_, err = f.svc.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: p.GetId()})
		wantError(t, err, codes.NotFound)
		if _, err := f.svc.GetProject(ctx, &gatehousev1.GetProjectRequest{Id: keep.GetId()}); err != nil {
			t.Errorf("the other project: %v", err)
		}
	})
}

// listAll pages through ListProjects, returning the ids in order and the
// number of pages.
func listAll(t *testing.T, svc *projectapi.Service, ctx context.Context, pageSize int32) (ids []string, pages int) {
	t.Helper()
	token := ""
	for {
		resp, err := svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: pageSize, PageToken: token})
		if err != nil {
			t.Fatalf("ListProjects page %d: %v", pages+1, err)
		}
		pages++
		if n := len(resp.GetProjects()); n > int(pageSize) && pageSize > 0 {
			t.Fatalf("page %d has %d projects, page size %d", pages, n, pageSize)
		}
		for _, p := range resp.GetProjects() {
			ids = append(ids, p.GetId())
		}
		token = resp.GetNextPageToken()
		if token == "" {
			return ids, pages
		}
		if pages > 1000 {
			t.Fatal("ListProjects does not end")
		}
	}
}

// seedProjects writes n projects to tenant directly, with created_at taking
// only a few distinct values so that pages split between equal timestamps.
// It returns their ids in ListProjects' order.
func seedProjects(t *testing.T, c *ent.Client, tenant, owner string, n int) []string {
	t.Helper()
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	builders := make([]*ent.ProjectCreate, n)
	for i := range n {
		at := base.Add(time.Duration(i%3) * time.Second)
		builders[i] = c.Project.Create().SetTenantID(tenant).SetOwnerID(owner).
			SetName(fmt.Sprintf("p%03d", i)).SetCreatedAt(at).SetUpdatedAt(at)
	}
	rows, err := c.Project.CreateBulk(builders...).Save(viewer.NewSystemContext(context.Background()))
	if err != nil {
		t.Fatalf("seed projects: %v", err)
	}
	slices.SortFunc(rows, func(a, b *ent.Project) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	ids := make([]string, n)
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

func TestListProjectsPages(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		want := seedProjects(t, f.client, orgA, alice, 11)
		seedProjects(t, f.client, orgB, bob, 4)
		// One made through the API is the newest.
		newest := f.create(t, as(alice, orgA), "newest")
		want = append([]string{newest.GetId()}, want...)

		for _, size := range []int32{1, 2, 5, 11, 12, 13, 200} {
			t.Run(fmt.Sprint("size ", size), func(t *testing.T) {
				got, pages := listAll(t, f.svc, as(alice, orgA), size)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
				if wantPages := max(1, (len(want)+int(size)-1)/int(size)); pages != wantPages {
					t.Errorf("%d pages, want %d", pages, wantPages)
				}
			})
		}
		// The whole page carries the messages, not just ids.
		resp, err := f.svc.ListProjects(as(alice, orgA), &gatehousev1.ListProjectsRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]*gatehousev1.Project{newest}, resp.GetProjects(), protocmp.Transform()); diff != "" {
			t.Errorf("first page (-want +got):\n%s", diff)
		}

		// Personal tenants and machines see their own only.
		if got, _ := listAll(t, f.svc, as(carol, carol), 50); len(got) != 0 {
			t.Errorf("carol lists %d projects, want 0", len(got))
		}
		if got, _ := listAll(t, f.svc, asMachine(orgB), 50); len(got) != 4 {
			t.Errorf("machine of B lists %d projects, want 4", len(got))
		}
	})
}

func TestListProjectsPageSize(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		seedProjects(t, f.client, orgA, alice, 205)
		ctx := as(alice, orgA)
		for _, tt := range []struct {
			size      int32
			want      int
			wantToken bool
		}{
			{0, 50, true},
			{1000, 200, true},
			{200, 200, true},
			{205, 200, true},
			{199, 199, true},
		} {
			resp, err := f.svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: tt.size})
			if err != nil {
				t.Fatalf("page_size %d: %v", tt.size, err)
			}
			if len(resp.GetProjects()) != tt.want || (resp.GetNextPageToken() != "") != tt.wantToken {
				t.Errorf("page_size %d: %d projects, token %q; want %d, token %t",
					tt.size, len(resp.GetProjects()), resp.GetNextPageToken(), tt.want, tt.wantToken)
			}
		}
		_, err := f.svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: -1})
		wantError(t, err, codes.InvalidArgument, "page_size")
	})
}

func TestListProjectsRejectsForeignTokens(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		seedProjects(t, f.client, orgA, alice, 3)
		seedProjects(t, f.client, orgB, bob, 3)
		seedProjects(t, f.client, alice, alice, 3)
		first := func(ctx context.Context) string {
			t.Helper()
			resp, err := f.svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: 1})
			if err != nil || resp.GetNextPageToken() == "" {
				t.Fatalf("first page: %v, token %q", err, resp.GetNextPageToken())
			}
			return resp.GetNextPageToken()
		}
		tokenA, tokenB, tokenAlice := first(as(alice, orgA)), first(as(bob, orgB)), first(as(alice, alice))
		tampered := []byte(tokenA)
		tampered[len(tampered)/2] ^= 'A' ^ 'B'

		tests := []struct {
			name, token string
		}{
			{"another organization's", tokenB},
			{"the same user's personal tenant's", tokenAlice},
			{"ListUsers'", f.tokens.Encode(orgA, "users", pagetoken.Cursor{ID: alice})},
			{"another server key's", pagetoken.New([]byte("some other key of 32 bytes......")).Encode(orgA, "projects", pagetoken.Cursor{Time: time.Now(), ID: "prj_X"})},
			{"tampered", string(tampered)},
			{"garbage", "not a token"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.svc.ListProjects(as(alice, orgA), &gatehousev1.ListProjectsRequest{PageSize: 1, PageToken: tt.token})
				wantError(t, err, codes.InvalidArgument, "page_token")
			})
		}
		if _, err := f.svc.ListProjects(as(alice, orgA), &gatehousev1.ListProjectsRequest{PageToken: tokenA}); err != nil {
			t.Errorf("own token with another page size: %v", err)
		}
	})
}

// TestListProjectsAfterDelete: a token stays usable when the row it points
// after is deleted (keyset, not offset).
func TestListProjectsAfterDelete(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		want := seedProjects(t, f.client, orgA, alice, 6)
		ctx := as(alice, orgA)
		resp, err := f.svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.DeleteProject(ctx, &gatehousev1.DeleteProjectRequest{Id: want[1]}); err != nil {
			t.Fatal(err)
		}
		next, err := f.svc.ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: 2, PageToken: resp.GetNextPageToken()})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range next.GetProjects() {
			got = append(got, p.GetId())
		}
		if diff := cmp.Diff(want[2:4], got); diff != "" {
			t.Errorf("second page (-want +got):\n%s", diff)
		}
	})
}

func TestStatusesRoundTrip(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		ctx := as(alice, orgA)
		p := f.create(t, ctx, "p")
		for _, st := range []gatehousev1.ProjectStatus{gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED, gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE} {
			resp, err := f.svc.UpdateProject(ctx, &gatehousev1.UpdateProjectRequest{
				Project: &gatehousev1.Project{Id: p.GetId(), Status: st}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			row, err := f.client.Project.Get(ctx, p.GetId())
			if err != nil {
				t.Fatal(err)
			}
			wantRow := map[gatehousev1.ProjectStatus]project.Status{
				gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED: project.StatusArchived,
				gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE:   project.StatusActive,
			}[st]
			if resp.GetProject().GetStatus() != st || row.Status != wantRow {
				t.Errorf("status %v: response %v, stored %q", st, resp.GetProject().GetStatus(), row.Status)
			}
		}
	})
}
