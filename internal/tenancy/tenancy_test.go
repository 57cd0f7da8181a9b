package tenancy_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/membership"
	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	"github.com/gatehouse-dev/gatehouse/ent/project"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// The world every test starts from: two organizations with a member and a
// project each, a live and a departed second member of org A, and two users
// who only have personal tenants (one project each).
const (
	orgA = "org_A"
	orgB = "org_B"

	alice = "user_alice" // member of A
	frank = "user_frank" // member of A
	erin  = "user_erin"  // was a member of A (tombstoned membership)
	bob   = "user_bob"   // member of B
	carol = "user_carol" // personal tenant only
	dave  = "user_dave"  // personal tenant only
)

type world struct {
	client *ent.Client
	// project ids by tenant
	projectA, projectB, projectCarol, projectDave string
}

func seed(t *testing.T, s *store.Store) *world {
	t.Helper()
	ctx := viewer.NewSystemContext(context.Background())
	c := s.Client
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, id := range []string{alice, frank, erin, bob, carol, dave} {
		if err := c.User.Create().SetID(id).SetEmail(id + "@example.com").
			SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx); err != nil {
			t.Fatalf("seed user %s: %v", id, err)
		}
	}
	for _, id := range []string{orgA, orgB} {
		if err := c.Organization.Create().SetID(id).SetName(id).
			SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx); err != nil {
			t.Fatalf("seed organization %s: %v", id, err)
		}
	}
	members := []struct {
		id, tenant, user string
		deleted          bool
	}{
		{"orgmem_1", orgA, alice, false},
		{"orgmem_2", orgA, frank, false},
		{"orgmem_3", orgA, erin, true},
		{"orgmem_4", orgB, bob, false},
	}
	for _, m := range members {
		b := c.Membership.Create().SetID(m.id).SetTenantID(m.tenant).SetUserID(m.user).
			SetRole("org:member").SetCreatedAt(now).SetUpdatedAt(now)
		if m.deleted {
			b.SetDeletedAt(now)
		}
		if err := b.Exec(ctx); err != nil {
			t.Fatalf("seed membership %s: %v", m.id, err)
		}
	}
	w := &world{client: c}
	for _, p := range []struct {
		tenant, owner string
		id            *string
	}{
		{orgA, alice, &w.projectA},
		{orgB, bob, &w.projectB},
		{carol, carol, &w.projectCarol},
		{dave, dave, &w.projectDave},
	} {
		// Created as the owner would create it, so that the seed itself
		// exercises the create path of the policy.
		var got *ent.Project
		err := tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			got, err = c.Project.Create().SetName("p of " + p.tenant).SetOwnerID(p.owner).
				Save(asUser(p.owner, p.tenant))
			return err
		})
		if err != nil {
			t.Fatalf("seed project in %s: %v", p.tenant, err)
		}
		if got.TenantID != p.tenant {
			t.Fatalf("seed project: tenant = %q, want %q", got.TenantID, p.tenant)
		}
		*p.id = got.ID
	}
	return w
}

func asUser(subject, tenant string) context.Context {
	p := &viewer.Principal{Kind: viewer.KindUser, Subject: subject, TenantID: tenant}
	if strings.HasPrefix(tenant, "org_") {
		p.OrgID, p.OrgRole = tenant, "org:admin"
	}
	return viewer.NewContext(context.Background(), p)
}

func asMachine(tenant string) context.Context {
	return viewer.NewContext(context.Background(), &viewer.Principal{
		Kind: viewer.KindMachine, Subject: "mch_1", TenantID: tenant,
	})
}

// projectRow is what a test compares of a project: everything but the
// unexported ent plumbing.
type projectRow struct {
	Tenant, Owner, Name, Description, Status string
	Updated                                  time.Time
}

// projects returns every project in the database, read unscoped.
func projects(t *testing.T, c *ent.Client) map[string]projectRow {
	t.Helper()
	all, err := c.Project.Query().All(viewer.NewSystemContext(context.Background()))
	if err != nil {
		t.Fatalf("read all projects: %v", err)
	}
	rows := make(map[string]projectRow, len(all))
	for _, p := range all {
		rows[p.ID] = projectRow{p.TenantID, p.OwnerID, p.Name, p.Description, string(p.Status), p.UpdatedAt}
	}
	return rows
}

// onlyTenant keeps the rows of tenant.
func onlyTenant(rows map[string]projectRow, tenant string) map[string]projectRow {
	out := map[string]projectRow{}
	for id, r := range rows {
		if r.Tenant == tenant {
			out[id] = r
		}
	}
	return out
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, privacy.Deny) {
		t.Errorf("%s: err = %v, want a privacy denial", what, err)
	}
}

func TestNoViewerIsDenied(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		before := projects(t, c)
		ctx := context.Background()

		ops := []struct {
			name string
			run  func() error
		}{
			{"Query.All", func() error { _, err := c.Project.Query().All(ctx); return err }},
			{"Query.Count", func() error { _, err := c.Project.Query().Count(ctx); return err }},
			{"Get", func() error { _, err := c.Project.Get(ctx, w.projectA); return err }},
			{"Create", func() error {
				return c.Project.Create().SetTenantID(orgA).SetOwnerID(alice).SetName("x").Exec(ctx)
			}},
			{"Upsert", func() error {
				return c.Project.Create().SetTenantID(orgA).SetOwnerID(alice).SetName("x").
					OnConflictColumns(project.FieldID).UpdateNewValues().Exec(ctx)
			}},
			{"Update", func() error { _, err := c.Project.Update().SetName("x").Save(ctx); return err }},
			{"UpdateOne", func() error { return c.Project.UpdateOneID(w.projectA).SetName("x").Exec(ctx) }},
			{"Delete", func() error { _, err := c.Project.Delete().Exec(ctx); return err }},
			{"DeleteOne", func() error { return c.Project.DeleteOneID(w.projectA).Exec(ctx) }},
			{"User.Query", func() error { _, err := c.User.Query().All(ctx); return err }},
			{"Membership.Query", func() error { _, err := c.Membership.Query().All(ctx); return err }},
			{"Organization.Query", func() error { _, err := c.Organization.Query().All(ctx); return err }},
		}
		for _, op := range ops {
			wantDenied(t, op.name, op.run())
		}
		if diff := cmp.Diff(before, projects(t, c)); diff != "" {
			t.Errorf("projects changed without a viewer (-before +after):\n%s", diff)
		}
	})
}

func TestMalformedTenantIsDenied(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		before := projects(t, c)
		for _, tenant := range []string{"", "org_", "user_", "acme", "ORG_A", "org_A' OR '1'='1", "org_A;", "org_Ä", "org_" + strings.Repeat("a", 65)} {
			ctx := asUser(alice, tenant)
			_, err := c.Project.Query().All(ctx)
			wantDenied(t, "query with tenant "+tenant, err)
			err = c.Project.Create().SetOwnerID(alice).SetName("x").Exec(ctx)
			wantDenied(t, "create with tenant "+tenant, err)
			_, err = c.Project.Delete().Exec(ctx)
			wantDenied(t, "delete with tenant "+tenant, err)
			_, err = c.User.Query().All(ctx)
			wantDenied(t, "user query with tenant "+tenant, err)
		}
		if diff := cmp.Diff(before, projects(t, c)); diff != "" {
			t.Errorf("projects changed (-before +after):\n%s", diff)
		}
	})
}

func TestProjectsOfAnotherTenantAreUnreachable(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ctx := asUser(alice, orgA)
		before := projects(t, c)

		if _, err := c.Project.Get(ctx, w.projectB); !ent.IsNotFound(err) {
			t.Errorf("Get(B's project) err = %v, want not found", err)
		}
		if _, err := c.Project.Query().Where(project.ID(w.projectB)).Only(ctx); !ent.IsNotFound(err) {
			t.Errorf("Query(id = B's).Only err = %v, want not found", err)
		}
		ids, err := c.Project.Query().IDs(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if diff := cmp.Diff([]string{w.projectA}, ids); diff != "" {
			t.Errorf("A lists (-want +got):\n%s", diff)
		}
		// Asking for another tenant explicitly changes nothing: the filter is
		// ANDed with the caller's.
		n, err := c.Project.Query().Where(project.TenantID(orgB)).Count(ctx)
		if err != nil || n != 0 {
			t.Errorf("Count(tenant = B) = %d, %v; want 0", n, err)
		}
		if n, err := c.Project.Query().Count(ctx); err != nil || n != 1 {
			t.Errorf("Count() = %d, %v; want 1", n, err)
		}

		if err := tenancy.InTx(context.Background(), c, func(c *ent.Client) error { return c.Project.UpdateOneID(w.projectB).SetName("pwned").Exec(ctx) }); !ent.IsNotFound(err) {
			t.Errorf("UpdateOneID(B's) err = %v, want not found", err)
		}
		if err := c.Project.DeleteOneID(w.projectB).Exec(ctx); !ent.IsNotFound(err) {
			t.Errorf("DeleteOneID(B's) err = %v, want not found", err)
		}
		err = tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			n, err = c.Project.Update().Where(project.ID(w.projectB)).SetName("pwned").Save(ctx)
			return err
		})
		if err != nil || n != 0 {
			t.Errorf("Update(id = B's) = %d, %v; want 0 rows", n, err)
		}
		if n, err := c.Project.Delete().Where(project.TenantID(orgB)).Exec(ctx); err != nil || n != 0 {
			t.Errorf("Delete(tenant = B) = %d, %v; want 0 rows", n, err)
		}
		// Unfiltered bulk writes reach the caller's own rows only.
		err = tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			n, err = c.Project.Update().SetDescription("mine").Save(ctx)
			return err
		})
		if err != nil || n != 1 {
			t.Errorf("Update() = %d, %v; want 1 row", n, err)
		}
		after := projects(t, c)
		for _, tenant := range []string{orgB, carol, dave} {
			if diff := cmp.Diff(onlyTenant(before, tenant), onlyTenant(after, tenant)); diff != "" {
				t.Errorf("%s's projects changed (-before +after):\n%s", tenant, diff)
			}
		}
		if got := after[w.projectA].Description; got != "mine" {
			t.Errorf("A's description = %q, want %q", got, "mine")
		}
		if n, err := c.Project.Delete().Exec(ctx); err != nil || n != 1 {
			t.Errorf("Delete() = %d, %v; want 1 row", n, err)
		}
		if got, want := len(projects(t, c)), len(before)-1; got != want {
			t.Errorf("after A deletes all its projects: %d projects, want %d", got, want)
		}
	})
}

func TestCreateTakesTheViewersTenant(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ctx := asUser(alice, orgA)
		before := projects(t, c)

		for _, tenant := range []string{orgB, carol, alice} {
			err := c.Project.Create().SetTenantID(tenant).SetOwnerID(alice).SetName("planted").Exec(ctx)
			wantDenied(t, "create in "+tenant, err)
		}
		err := tenancy.InTx(context.Background(), c, func(c *ent.Client) error {
			return c.Project.CreateBulk(
				c.Project.Create().SetOwnerID(alice).SetName("mine"),
				c.Project.Create().SetTenantID(orgB).SetOwnerID(alice).SetName("planted"),
			).Exec(ctx)
		})
		wantDenied(t, "bulk create with one row in B", err)
		if diff := cmp.Diff(before, projects(t, c)); diff != "" {
			t.Fatalf("denied creates wrote (-before +after):\n%s", diff)
		}

		var p *ent.Project
		err = tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			p, err = c.Project.Create().SetOwnerID(alice).SetName("mine").Save(ctx)
			return err
		})
		if err != nil {
			t.Fatalf("create without a tenant: %v", err)
		}
		if p.TenantID != orgA {
			t.Errorf("tenant = %q, want %q", p.TenantID, orgA)
		}
		err = tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			p, err = c.Project.Create().SetTenantID(orgA).SetOwnerID(alice).SetName("mine too").Save(ctx)
			return err
		})
		if err != nil || p.TenantID != orgA {
			t.Errorf("create naming its own tenant = %v, %v; want it in %s", p, err, orgA)
		}
	})
}

func TestUpsertCannotReachAnotherTenant(t *testing.T) {
	tests := []struct {
		name string
		// upsert is A's attempt on B's project bID.
		upsert func(ctx context.Context, c *ent.Client, bID string) error
	}{
		{"conflict on id, update new values", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("pwned").
				OnConflictColumns(project.FieldID).UpdateNewValues().Exec(ctx)
		}},
		{"conflict on id, no tenant named", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetOwnerID(alice).SetName("pwned").
				OnConflictColumns(project.FieldID).UpdateNewValues().Exec(ctx)
		}},
		{"conflict on id, explicit update", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("x").
				OnConflictColumns(project.FieldID).
				Update(func(u *ent.ProjectUpsert) { u.SetName("pwned").SetStatus(project.StatusArchived) }).
				Exec(ctx)
		}},
		{"raw conflict options", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("pwned").
				OnConflict(entsql.ConflictColumns(project.FieldID), entsql.ResolveWithNewValues()).Exec(ctx)
		}},
		{"conflict on (tenant_id, id)", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("pwned").
				OnConflictColumns(project.FieldTenantID, project.FieldID).UpdateNewValues().Exec(ctx)
		}},
		{"conflict on (tenant_id, id) naming B", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgB).SetOwnerID(alice).SetName("pwned").
				OnConflictColumns(project.FieldTenantID, project.FieldID).UpdateNewValues().Exec(ctx)
		}},
		{"ignore", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("pwned").
				OnConflictColumns(project.FieldID).Ignore().Exec(ctx)
		}},
		{"bulk", func(ctx context.Context, c *ent.Client, bID string) error {
			return c.Project.CreateBulk(
				c.Project.Create().SetID(bID).SetTenantID(orgA).SetOwnerID(alice).SetName("pwned"),
			).OnConflictColumns(project.FieldID).UpdateNewValues().Exec(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storetest.ForEach(t, func(t *testing.T, s *store.Store) {
				w := seed(t, s)
				c := w.client
				before := projects(t, c)
				// The outcome may be a denial or a fresh row of A's; either is
				// fine so long as no other tenant's row moved.
				err := tenancy.InTx(context.Background(), c, func(c *ent.Client) error { return tt.upsert(asUser(alice, orgA), c, w.projectB) })
				after := projects(t, c)
				for _, tenant := range []string{orgB, carol, dave} {
					if diff := cmp.Diff(onlyTenant(before, tenant), onlyTenant(after, tenant)); diff != "" {
						t.Errorf("upsert from A (err %v) changed %s's projects (-before +after):\n%s", err, tenant, diff)
					}
				}
				if diff := cmp.Diff(before[w.projectA], after[w.projectA]); diff != "" {
					t.Errorf("upsert naming B's id changed A's existing project (-before +after):\n%s", diff)
				}
				for id, r := range after {
					if _, existed := before[id]; !existed && r.Tenant != orgA {
						t.Errorf("upsert from A created %s in tenant %s", id, r.Tenant)
					}
				}
			})
		})
	}
}

func TestUpsertOfOwnRowTouchesOwnTenantOnly(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ctx := asUser(alice, orgA)
		before := projects(t, c)
		var id string
		err := tenancy.InTx(context.Background(), c, func(c *ent.Client) (err error) {
			id, err = c.Project.Create().SetID(w.projectA).SetOwnerID(alice).SetName("again").
				OnConflictColumns(project.FieldTenantID, project.FieldID).UpdateNewValues().ID(ctx)
			return err
		})
		if err != nil {
			t.Fatalf("upsert of own project: %v", err)
		}
		after := projects(t, c)
		if r := after[id]; r.Tenant != orgA {
			t.Errorf("upserted row %s is in tenant %q, want %q", id, r.Tenant, orgA)
		}
		for _, tenant := range []string{orgB, carol, dave} {
			if diff := cmp.Diff(onlyTenant(before, tenant), onlyTenant(after, tenant)); diff != "" {
				t.Errorf("%s's projects changed (-before +after):\n%s", tenant, diff)
			}
		}
	})
}

// methodsContaining lists the methods of the type of v whose names contain
// any of substrs.
func methodsContaining(v any, substrs ...string) []string {
	var found []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		for _, s := range substrs {
			if strings.Contains(name, s) {
				found = append(found, name)
				break
			}
		}
	}
	return found
}

// TestNoEdgeFromUnscopedEntities: a builder of an entity without a tenant
// filter that could add or remove projects would write another tenant's
// rows without the Project policy seeing it.
func TestNoEdgeFromUnscopedEntities(t *testing.T) {
	builders := []any{
		(*ent.UserCreate)(nil), (*ent.UserCreateBulk)(nil), (*ent.UserUpdate)(nil), (*ent.UserUpdateOne)(nil),
		(*ent.UserUpsert)(nil), (*ent.UserUpsertOne)(nil), (*ent.UserUpsertBulk)(nil), (*ent.UserMutation)(nil),
		(*ent.UserQuery)(nil),
		(*ent.OrganizationCreate)(nil), (*ent.OrganizationUpdate)(nil), (*ent.OrganizationUpdateOne)(nil),
		(*ent.OrganizationUpsert)(nil), (*ent.OrganizationUpsertOne)(nil), (*ent.OrganizationMutation)(nil),
		(*ent.OrganizationQuery)(nil),
		(*ent.MembershipCreate)(nil), (*ent.MembershipUpdate)(nil), (*ent.MembershipUpdateOne)(nil),
		(*ent.MembershipUpsert)(nil), (*ent.MembershipUpsertOne)(nil), (*ent.MembershipMutation)(nil),
		(*ent.WebhookEventCreate)(nil), (*ent.WebhookEventUpdate)(nil), (*ent.WebhookEventUpdateOne)(nil),
		(*ent.WebhookEventMutation)(nil),
	}
	for _, b := range builders {
		if m := methodsContaining(b, "Project"); len(m) > 0 {
			t.Errorf("%T has %v: an unscoped entity must not have an edge to projects", b, m)
		}
	}
	// The owner edge, declared on Project, cannot be moved after create.
	for _, b := range []any{(*ent.ProjectUpdate)(nil), (*ent.ProjectUpdateOne)(nil), (*ent.ProjectUpsert)(nil), (*ent.ProjectUpsertOne)(nil), (*ent.ProjectUpsertBulk)(nil)} {
		if m := methodsContaining(b, "Owner"); len(m) > 0 {
			t.Errorf("%T has %v: a project's owner must be immutable", b, m)
		}
	}
}

// TestTenantIDIsImmutable: no update, and no upsert's update branch, can
// move a row to another tenant.
func TestTenantIDIsImmutable(t *testing.T) {
	builders := []any{
		(*ent.ProjectUpdate)(nil), (*ent.ProjectUpdateOne)(nil),
		(*ent.ProjectUpsert)(nil), (*ent.ProjectUpsertOne)(nil), (*ent.ProjectUpsertBulk)(nil),
		(*ent.MembershipUpdate)(nil), (*ent.MembershipUpdateOne)(nil),
		(*ent.MembershipUpsert)(nil), (*ent.MembershipUpsertOne)(nil), (*ent.MembershipUpsertBulk)(nil),
	}
	for _, b := range builders {
		if m := methodsContaining(b, "TenantID"); len(m) > 0 {
			t.Errorf("%T has %v: tenant_id must be immutable", b, m)
		}
	}
}

func TestUserVisibility(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		want []string
	}{
		{"org member sees self and live members", asUser(alice, orgA), []string{alice, frank}},
		{"not yet mirrored as a member: self and members", asUser(carol, orgA), []string{alice, carol, frank}},
		{"other organization", asUser(bob, orgB), []string{bob}},
		{"personal tenant: self only", asUser(carol, carol), []string{carol}},
		{"member acting in personal tenant", asUser(alice, alice), []string{alice}},
		{"machine in an organization: its members", asMachine(orgA), []string{alice, frank}},
		{"machine in a personal tenant: its owner", asMachine(dave), []string{dave}},
	}
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := c.User.Query().Order(ent.Asc(user.FieldID)).IDs(tt.ctx)
				if err != nil {
					t.Fatalf("list users: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("visible users (-want +got):\n%s", diff)
				}
				for _, id := range []string{alice, bob, carol, dave, erin, frank} {
					_, err := c.User.Get(tt.ctx, id)
					switch visible := slices.Contains(tt.want, id); {
					case visible && err != nil:
						t.Errorf("Get(%s) = %v, want the user", id, err)
					case !visible && !ent.IsNotFound(err):
						t.Errorf("Get(%s) err = %v, want not found", id, err)
					}
				}
			})
		}
	})
}

func TestPersonalTenantsAreIsolated(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		carolCtx := asUser(carol, carol)
		if _, err := c.User.Get(carolCtx, dave); !ent.IsNotFound(err) {
			t.Errorf("carol Get(dave) err = %v, want not found", err)
		}
		if _, err := c.Project.Get(carolCtx, w.projectDave); !ent.IsNotFound(err) {
			t.Errorf("carol Get(dave's project) err = %v, want not found", err)
		}
		ids, err := c.Project.Query().IDs(carolCtx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{w.projectCarol}, ids); diff != "" {
			t.Errorf("carol's projects (-want +got):\n%s", diff)
		}
	})
}

func TestMirroredEntitiesAreReadOnlyForCallers(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		now := time.Now()
		for _, ctx := range []context.Context{asUser(alice, orgA), asUser(carol, carol), asMachine(orgA)} {
			p, _ := viewer.FromContext(ctx)
			who := p.Kind.String() + " " + p.Subject + "@" + p.TenantID
			ops := []struct {
				name string
				run  func() error
			}{
				{"User.Create", func() error {
					return c.User.Create().SetID("user_new").SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx)
				}},
				{"User.Upsert", func() error {
					return c.User.Create().SetID(alice).SetEmail("evil@example.com").SetCreatedAt(now).SetUpdatedAt(now).
						OnConflictColumns(user.FieldID).UpdateNewValues().Exec(ctx)
				}},
				{"User.UpdateOne(self)", func() error { return c.User.UpdateOneID(p.Subject).SetEmail("evil@example.com").Exec(ctx) }},
				{"User.Update", func() error { _, err := c.User.Update().SetEmail("evil@example.com").Save(ctx); return err }},
				{"User.Delete", func() error { _, err := c.User.Delete().Exec(ctx); return err }},
				{"Organization.Create", func() error {
					return c.Organization.Create().SetID("org_new").SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx)
				}},
				{"Organization.Update", func() error { _, err := c.Organization.Update().SetName("evil").Save(ctx); return err }},
				{"Organization.Delete", func() error { _, err := c.Organization.Delete().Exec(ctx); return err }},
				{"Membership.Create", func() error {
					return c.Membership.Create().SetID("orgmem_new").SetTenantID(p.TenantID).SetUserID(dave).
						SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx)
				}},
				{"Membership.Update", func() error { _, err := c.Membership.Update().SetRole("org:admin").Save(ctx); return err }},
				{"Membership.Delete", func() error { _, err := c.Membership.Delete().Exec(ctx); return err }},
				{"WebhookEvent.Create", func() error {
					return c.WebhookEvent.Create().SetID("msg_1").SetType("user.created").SetResult("applied").SetPayload([]byte("{}")).Exec(ctx)
				}},
				{"WebhookEvent.Query", func() error { _, err := c.WebhookEvent.Query().All(ctx); return err }},
			}
			for _, op := range ops {
				wantDenied(t, who+": "+op.name, op.run())
			}
		}

		sys := viewer.NewSystemContext(context.Background())
		if n := c.User.Query().Where(user.EmailEQ("evil@example.com")).CountX(sys); n != 0 {
			t.Errorf("%d users got the caller's email", n)
		}
		if n := c.User.Query().CountX(sys); n != 6 {
			t.Errorf("%d users, want the 6 seeded", n)
		}
		if n := c.Membership.Query().Where(membership.RoleEQ("org:admin")).CountX(sys); n != 0 {
			t.Errorf("%d memberships promoted", n)
		}
		if n := c.Membership.Query().CountX(sys); n != 4 {
			t.Errorf("%d memberships, want the 4 seeded", n)
		}
		if n := c.Organization.Query().CountX(sys); n != 2 {
			t.Errorf("%d organizations, want the 2 seeded", n)
		}
		if n := c.WebhookEvent.Query().CountX(sys); n != 0 {
			t.Errorf("%d webhook events written by callers", n)
		}
	})
}

func TestOrganizationVisibility(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		w := seed(t, s)
		c := w.client
		ids, err := c.Organization.Query().IDs(asUser(alice, orgA))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{orgA}, ids); diff != "" {
			t.Errorf("organizations visible in A (-want +got):\n%s", diff)
		}
		if _, err := c.Organization.Get(asUser(alice, orgA), orgB); !ent.IsNotFound(err) {
			t.Errorf("Get(org B) from A err = %v, want not found", err)
		}
		if n, err := c.Organization.Query().Count(asUser(carol, carol)); err != nil || n != 0 {
			t.Errorf("organizations visible in a personal tenant = %d, %v; want 0", n, err)
		}
	})
}
