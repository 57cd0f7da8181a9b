package userapi_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-dev/gatehouse/ent"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/userapi"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const (
	orgA = "org_A"
	orgB = "org_B"

	alice = "user_alice" // member of A
	frank = "user_frank" // member of A
	erin  = "user_erin"  // left A (tombstoned membership)
	gus   = "user_gus"   // member of A, deleted from Clerk (tombstoned user)
	bob   = "user_bob"   // member of B
	carol = "user_carol" // personal tenant only
	dave  = "user_dave"  // personal tenant only
)

// seedTime is when every seeded user was created and last updated.
var seedTime = time.Date(2026, 3, 4, 5, 6, 7, 891000000, time.UTC)

type fixture struct {
	svc    *userapi.Service
	client *ent.Client
	tokens *pagetoken.Codec
}

func setup(t *testing.T, s *store.Store) *fixture {
	t.Helper()
	for _, id := range []string{alice, frank, erin, gus, bob, carol, dave} {
		addUser(t, s.Client, id)
	}
	addMember(t, s.Client, orgA, alice, false)
	addMember(t, s.Client, orgA, frank, false)
	addMember(t, s.Client, orgA, erin, true)
	addMember(t, s.Client, orgA, gus, false)
	addMember(t, s.Client, orgB, bob, false)
	ctx := viewer.NewSystemContext(context.Background())
	if err := s.Client.User.UpdateOneID(gus).SetDeletedAt(seedTime).SetEmail("").Exec(ctx); err != nil {
		t.Fatalf("tombstone %s: %v", gus, err)
	}
	tokens := pagetoken.New([]byte("userapi test key of 32 bytes...."))
	return &fixture{svc: userapi.New(s.Client, tokens, nil), client: s.Client, tokens: tokens}
}

func addUser(t *testing.T, c *ent.Client, id string) {
	t.Helper()
	name := strings.TrimPrefix(id, "user_")
	err := c.User.Create().SetID(id).SetEmail(name + "@example.com").
		SetFirstName(strings.ToUpper(name[:1]) + name[1:]).SetLastName("Test").
		SetImageURL("https://img.example.com/" + name).
		SetCreatedAt(seedTime).SetUpdatedAt(seedTime).
		Exec(viewer.NewSystemContext(context.Background()))
	if err != nil {
		t.Fatalf("seed user %s: %v", id, err)
	}
}

func addMember(t *testing.T, c *ent.Client, org, userID string, left bool) {
	t.Helper()
	m := c.Membership.Create().SetID("orgmem_" + org[4:] + strings.TrimPrefix(userID, "user_")).
		SetTenantID(org).SetUserID(userID).SetRole("org:member").
		SetCreatedAt(seedTime).SetUpdatedAt(seedTime)
	if left {
		m.SetDeletedAt(seedTime)
	}
	if err := m.Exec(viewer.NewSystemContext(context.Background())); err != nil {
		t.Fatalf("seed membership %s in %s: %v", userID, org, err)
	}
}

// wantUser is the message of a seeded user.
func wantUser(id string) *gatehousev1.User {
	name := strings.TrimPrefix(id, "user_")
	return &gatehousev1.User{
		Id:         id,
		Email:      name + "@example.com",
		FirstName:  strings.ToUpper(name[:1]) + name[1:],
		LastName:   "Test",
		ImageUrl:   "https://img.example.com/" + name,
		CreateTime: timestamppb.New(seedTime),
		UpdateTime: timestamppb.New(seedTime),
	}
}

// as returns a context for a user principal as auth builds one: permissions
// sorted and deduplicated.
func as(subject, tenant string, perms ...string) context.Context {
	perms = slices.Compact(slices.Sorted(slices.Values(perms)))
	p := &viewer.Principal{Kind: viewer.KindUser, Subject: subject, SessionID: "sess_1", TenantID: tenant, Permissions: perms}
	if strings.HasPrefix(tenant, "org_") {
		p.OrgID, p.OrgRole = tenant, "org:member"
	}
	return viewer.NewContext(context.Background(), p)
}

// asWith is as, calling with credential c.
func asWith(c viewer.Credential, subject, tenant string, perms ...string) context.Context {
	p, _ := viewer.FromContext(as(subject, tenant, perms...))
	q := *p
	q.Credential = c
	return viewer.NewContext(context.Background(), &q)
}

func asMachine(tenant string) context.Context {
	return viewer.NewContext(context.Background(), &viewer.Principal{
		Kind: viewer.KindMachine, Subject: "mch_1", TenantID: tenant, Permissions: []string{"org:projects:read"},
	})
}

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

func TestGetMe(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		tests := []struct {
			name string
			ctx  context.Context
			want *gatehousev1.GetMeResponse
		}{
			{
				name: "organization member",
				ctx:  as(alice, orgA, "org:projects:create", "org:projects:read"),
				want: &gatehousev1.GetMeResponse{
					User: wantUser(alice),
					Session: &gatehousev1.Session{
						TenantId: orgA, OrganizationId: orgA, OrganizationRole: "org:member",
						Permissions: []string{"org:projects:create", "org:projects:read"},
					},
				},
			},
			{
				name: "personal tenant",
				ctx:  as(carol, carol, "org:projects:read", "org:projects:create"),
				want: &gatehousev1.GetMeResponse{
					User:    wantUser(carol),
					Session: &gatehousev1.Session{TenantId: carol, Permissions: []string{"org:projects:create", "org:projects:read"}},
				},
			},
			{
				name: "no permissions",
				ctx:  as(dave, dave),
				want: &gatehousev1.GetMeResponse{User: wantUser(dave), Session: &gatehousev1.Session{TenantId: dave}},
			},
			{
				name: "with an API key",
				ctx:  asWith(viewer.CredentialAPIKey, alice, alice, "org:projects:read"),
				want: &gatehousev1.GetMeResponse{
					User:    wantUser(alice),
					Session: &gatehousev1.Session{TenantId: alice, Permissions: []string{"org:projects:read"}, Credential: "api_key"},
				},
			},
			{
				name: "with an OAuth token",
				ctx:  asWith(viewer.CredentialOAuth, alice, orgA, "org:projects:read"),
				want: &gatehousev1.GetMeResponse{
					User: wantUser(alice),
					Session: &gatehousev1.Session{TenantId: orgA, OrganizationId: orgA, OrganizationRole: "org:member",
						Permissions: []string{"org:projects:read"}, Credential: "oauth"},
				},
			},
			{
				// A session's org claims are the caller's own access: the
				// membership webhook may not have arrived yet.
				name: "signed in to an organization not yet mirrored",
				ctx:  as(carol, orgB),
				want: &gatehousev1.GetMeResponse{
					User:    wantUser(carol),
					Session: &gatehousev1.Session{TenantId: orgB, OrganizationId: orgB, OrganizationRole: "org:member"},
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := f.svc.GetMe(tt.ctx, &gatehousev1.GetMeRequest{})
				if err != nil {
					t.Fatalf("GetMe: %v", err)
				}
				if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
					t.Errorf("GetMe (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestGetMeFailures(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		tests := []struct {
			name string
			ctx  context.Context
			code codes.Code
		}{
			{"machine", asMachine(orgA), codes.PermissionDenied},
			{"deleted user", as(gus, gus), codes.Unauthenticated},
			{"never provisioned", as("user_ghost", "user_ghost"), codes.NotFound},
			{"no principal", context.Background(), codes.Internal},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.svc.GetMe(tt.ctx, &gatehousev1.GetMeRequest{})
				wantError(t, err, tt.code)
			})
		}
	})
}

func TestGetUser(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		id   string
		code codes.Code // OK: the seeded user
	}{
		{"self", as(alice, orgA), alice, codes.OK},
		{"fellow member", as(alice, orgA), frank, codes.OK},
		{"former member", as(alice, orgA), erin, codes.NotFound},
		{"deleted member", as(alice, orgA), gus, codes.NotFound},
		{"member of another organization", as(alice, orgA), bob, codes.NotFound},
		{"user with a personal tenant only", as(alice, orgA), carol, codes.NotFound},
		{"member in personal tenant: fellow member", as(alice, alice), frank, codes.NotFound},
		{"personal: self", as(carol, carol), carol, codes.OK},
		{"personal: another personal user", as(carol, carol), dave, codes.NotFound},
		{"personal: the other way", as(dave, dave), carol, codes.NotFound},
		{"machine: member", asMachine(orgA), frank, codes.OK},
		{"machine: other organization", asMachine(orgA), bob, codes.NotFound},
		{"machine in a personal tenant: its owner", asMachine(dave), dave, codes.OK},
		{"machine in a personal tenant: anyone else", asMachine(dave), carol, codes.NotFound},
		{"not a user id", as(alice, orgA), "org_A", codes.NotFound},
		{"malformed", as(alice, orgA), "user_alice' OR '1'='1", codes.NotFound},
		{"unknown", as(alice, orgA), "user_nobody", codes.NotFound},
		{"empty", as(alice, orgA), "", codes.InvalidArgument},
	}
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := f.svc.GetUser(tt.ctx, &gatehousev1.GetUserRequest{Id: tt.id})
				if tt.code != codes.OK {
					if tt.code == codes.InvalidArgument {
						wantError(t, err, tt.code, "id")
					} else {
						wantError(t, err, tt.code)
					}
					return
				}
				if err != nil {
					t.Fatalf("GetUser(%s): %v", tt.id, err)
				}
				if diff := cmp.Diff(&gatehousev1.GetUserResponse{User: wantUser(tt.id)}, got, protocmp.Transform()); diff != "" {
					t.Errorf("GetUser(%s) (-want +got):\n%s", tt.id, diff)
				}
			})
		}
	})
}

func listAll(t *testing.T, svc *userapi.Service, ctx context.Context, size int32) (ids []string, pages int) {
	t.Helper()
	token := ""
	for {
		resp, err := svc.ListUsers(ctx, &gatehousev1.ListUsersRequest{PageSize: size, PageToken: token})
		if err != nil {
			t.Fatalf("ListUsers page %d: %v", pages+1, err)
		}
		pages++
		if size > 0 && len(resp.GetUsers()) > int(size) {
			t.Fatalf("page %d has %d users, page size %d", pages, len(resp.GetUsers()), size)
		}
		for _, u := range resp.GetUsers() {
			ids = append(ids, u.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			return ids, pages
		}
		if pages > 1000 {
			t.Fatal("ListUsers does not end")
		}
	}
}

func TestListUsers(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		want []string
	}{
		{"organization: live members", as(alice, orgA), []string{alice, frank}},
		{"other organization", as(bob, orgB), []string{bob}},
		{"not yet a mirrored member: self and members", as(carol, orgB), []string{bob, carol}},
		{"personal tenant: just the caller", as(carol, carol), []string{carol}},
		{"another personal tenant", as(dave, dave), []string{dave}},
		{"member acting in personal tenant", as(alice, alice), []string{alice}},
		{"machine of an organization", asMachine(orgA), []string{alice, frank}},
		{"machine of a personal tenant", asMachine(dave), []string{dave}},
		{"machine of an organization nobody joined", asMachine("org_empty"), nil},
	}
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, pages := listAll(t, f.svc, tt.ctx, 0)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ListUsers (-want +got):\n%s", diff)
				}
				if pages != 1 {
					t.Errorf("%d pages, want 1", pages)
				}
			})
		}
		// The page carries whole messages.
		resp, err := f.svc.ListUsers(as(alice, orgA), &gatehousev1.ListUsersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := &gatehousev1.ListUsersResponse{Users: []*gatehousev1.User{wantUser(alice), wantUser(frank)}}
		if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
			t.Errorf("ListUsers (-want +got):\n%s", diff)
		}
	})
}

// seedMembers adds n members to org, with ids in ListUsers' order.
func seedMembers(t *testing.T, c *ent.Client, org string, n int) []string {
	t.Helper()
	ctx := viewer.NewSystemContext(context.Background())
	users := make([]*ent.UserCreate, n)
	members := make([]*ent.MembershipCreate, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("user_m%04d", i)
		users[i] = c.User.Create().SetID(ids[i]).SetCreatedAt(seedTime).SetUpdatedAt(seedTime)
		members[i] = c.Membership.Create().SetID(fmt.Sprintf("orgmem_m%04d", i)).SetTenantID(org).SetUserID(ids[i]).
			SetCreatedAt(seedTime).SetUpdatedAt(seedTime)
	}
	if err := c.User.CreateBulk(users...).Exec(ctx); err != nil {
		t.Fatalf("seed users: %v", err)
	}
	if err := c.Membership.CreateBulk(members...).Exec(ctx); err != nil {
		t.Fatalf("seed memberships: %v", err)
	}
	return ids
}

func TestListUsersPages(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		const org = "org_P"
		want := seedMembers(t, f.client, org, 7)
		// The caller is a member too, and sorts before the seeded ones.
		addMember(t, f.client, org, alice, false)
		want = append([]string{alice}, want...)
		ctx := as(alice, org)
		for _, size := range []int32{1, 2, 3, 7, 8, 9} {
			t.Run(fmt.Sprint("size ", size), func(t *testing.T) {
				got, pages := listAll(t, f.svc, ctx, size)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
				if wantPages := (len(want) + int(size) - 1) / int(size); pages != wantPages {
					t.Errorf("%d pages, want %d", pages, wantPages)
				}
			})
		}
	})
}

func TestListUsersPageSize(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		seedMembers(t, f.client, "org_P", 205)
		ctx := asMachine("org_P")
		for _, tt := range []struct {
			size int32
			want int
		}{
			{0, 50},
			{1000, 200},
			{200, 200},
			{150, 150},
		} {
			resp, err := f.svc.ListUsers(ctx, &gatehousev1.ListUsersRequest{PageSize: tt.size})
			if err != nil {
				t.Fatalf("page_size %d: %v", tt.size, err)
			}
			if len(resp.GetUsers()) != tt.want || resp.GetNextPageToken() == "" {
				t.Errorf("page_size %d: %d users, token %q; want %d and a token", tt.size, len(resp.GetUsers()), resp.GetNextPageToken(), tt.want)
			}
		}
		_, err := f.svc.ListUsers(ctx, &gatehousev1.ListUsersRequest{PageSize: -5})
		wantError(t, err, codes.InvalidArgument, "page_size")
	})
}

func TestListUsersRejectsForeignTokens(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		seedMembers(t, f.client, orgB, 3)
		respB, err := f.svc.ListUsers(as(bob, orgB), &gatehousev1.ListUsersRequest{PageSize: 1})
		if err != nil || respB.GetNextPageToken() == "" {
			t.Fatalf("B's first page: %v, token %q", err, respB.GetNextPageToken())
		}
		respA, err := f.svc.ListUsers(as(alice, orgA), &gatehousev1.ListUsersRequest{PageSize: 1})
		if err != nil || respA.GetNextPageToken() == "" {
			t.Fatalf("A's first page: %v, token %q", err, respA.GetNextPageToken())
		}
		tampered := []byte(respA.GetNextPageToken())
		tampered[len(tampered)/2] ^= 'A' ^ 'B'
		tests := []struct {
			name, token string
		}{
			{"another organization's", respB.GetNextPageToken()},
			{"the caller's personal tenant's", f.tokens.Encode(alice, "users", pagetoken.Cursor{ID: alice})},
			{"ListProjects'", f.tokens.Encode(orgA, "projects", pagetoken.Cursor{Time: seedTime, ID: "prj_1"})},
			{"tampered", string(tampered)},
			{"garbage", "%%%"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.svc.ListUsers(as(alice, orgA), &gatehousev1.ListUsersRequest{PageToken: tt.token})
				wantError(t, err, codes.InvalidArgument, "page_token")
			})
		}
		// The same token, used by a machine of the same tenant, is fine: the
		// token is bound to the tenant, not the caller.
		got, err := f.svc.ListUsers(asMachine(orgA), &gatehousev1.ListUsersRequest{PageToken: respA.GetNextPageToken()})
		if err != nil {
			t.Fatalf("A's token used by A's machine: %v", err)
		}
		if len(got.GetUsers()) != 1 || got.GetUsers()[0].GetId() != frank {
			t.Errorf("second page = %v, want [%s]", got.GetUsers(), frank)
		}
	})
}

// liveRows is a LiveUsers whose rows the test swaps, as internal/provision
// does when it reads a user again or a webhook changes it.
type liveRows struct {
	mu   sync.Mutex
	rows map[string]*ent.User
	// afterLookup, if set, runs after each LiveUser, outside mu.
	afterLookup func(id string)
}

func (l *liveRows) LiveUser(id string) (*ent.User, bool) {
	l.mu.Lock()
	u, ok := l.rows[id]
	after := l.afterLookup
	l.mu.Unlock()
	if after != nil {
		after(id)
	}
	return u, ok
}

func (l *liveRows) set(u *ent.User) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows[u.ID] = u
}

func TestGetMeFromLiveRows(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		f := setup(t, s)
		live := &liveRows{rows: map[string]*ent.User{}}
		svc := userapi.New(s.Client, f.tokens, live)
		email := func(t *testing.T) string {
			t.Helper()
			got, err := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
			if err != nil {
				t.Fatalf("GetMe: %v", err)
			}
			return got.GetUser().GetEmail()
		}

		// Not live: read from the database, every time.
		if got, want := email(t), wantUser(alice).Email; got != want {
			t.Fatalf("not live: email %q, want %q (the database's)", got, want)
		}
		row, err := s.Client.User.Get(viewer.NewSystemContext(t.Context()), alice)
		if err != nil {
			t.Fatal(err)
		}
		// Live: the live row, not the database's, and its message is
		// built once.
		first := *row
		first.Email = "first@example.com"
		live.set(&first)
		if got := email(t); got != "first@example.com" {
			t.Fatalf("live: email %q, want the live row's", got)
		}
		a, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
		b, _ := svc.GetMe(as(alice, orgA), &gatehousev1.GetMeRequest{})
		if a.GetUser() != b.GetUser() {
			t.Error("the same live row was built into a message twice")
		}
		// A new row (read again, or changed by a webhook) is a new message
		// at once, even with the same content.
		second := first
		second.Email = "second@example.com"
		live.set(&second)
		if got := email(t); got != "second@example.com" {
			t.Fatalf("changed: email %q, want the new row's", got)
		}
		ofSecond, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
		same := second
		live.set(&same)
		c, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
		if c.GetUser() == ofSecond.GetUser() {
			t.Error("a new row with the same content was answered with the old row's message")
		}
		// A change to the user, from a webhook here or on another replica:
		// the message goes, even while the row is still live.
		svc.Invalidate(invalidation.User(alice))
		d, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
		if d.GetUser() == c.GetUser() {
			t.Error("Invalidate kept the user's message")
		}
		svc.Invalidate(invalidation.User(bob)) // another user's: kept
		if e, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{}); e.GetUser() != d.GetUser() {
			t.Error("invalidating another user dropped this one's message")
		}
		svc.InvalidateAll()
		if e, _ := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{}); e.GetUser() == d.GetUser() {
			t.Error("InvalidateAll kept the user's message")
		}
		// Gone from the live rows: the database again.
		delete(live.rows, alice)
		if got, want := email(t), wantUser(alice).Email; got != want {
			t.Fatalf("no longer live: email %q, want %q", got, want)
		}
	})
}

// TestGetMeKeepsNoRowInvalidatedMeanwhile: a user's row invalidated
// (deleted, say) between GetMe's look-up of it and the keeping of its
// message — the provisioner drops the row, then Invalidate runs — is not
// kept afterwards, or the deleted user's details would stay in memory.
func TestGetMeKeepsNoRowInvalidatedMeanwhile(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	f := setup(t, s)
	row, err := s.Client.User.Get(viewer.NewSystemContext(t.Context()), alice)
	if err != nil {
		t.Fatal(err)
	}
	live := &liveRows{rows: map[string]*ent.User{alice: row}}
	svc := userapi.New(s.Client, f.tokens, live)
	live.afterLookup = func(id string) { // the first look-up is GetMe's
		live.afterLookup = nil
		delete(live.rows, id)
		svc.Invalidate(invalidation.User(id))
	}
	first, err := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	live.set(row) // the same row live again: a kept message would be reused
	again, err := svc.GetMe(as(alice, alice), &gatehousev1.GetMeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetUser() == first.GetUser() {
		t.Error("the message of a row invalidated during the call was kept")
	}
}

// TestGetMeSharedMessagesMarshalConcurrently is for -race: GetMe answers
// concurrent calls with one User message and one permissions slice, which
// gRPC marshals for each at the same time (the HTTP listener's transcoder
// then reads those bytes, not the message); protojson stands in for a
// second reader.
func TestGetMeSharedMessagesMarshalConcurrently(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	f := setup(t, s)
	row, err := s.Client.User.Get(viewer.NewSystemContext(t.Context()), alice)
	if err != nil {
		t.Fatal(err)
	}
	svc := userapi.New(s.Client, f.tokens, &liveRows{rows: map[string]*ent.User{alice: row}})
	ctx := as(alice, orgA, "org:projects:read", "org:projects:create")
	want, err := svc.GetMe(ctx, &gatehousev1.GetMeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantBytes, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				got, err := svc.GetMe(ctx, &gatehousev1.GetMeRequest{})
				if err != nil {
					t.Error(err)
					return
				}
				b, err := proto.Marshal(got)
				if err != nil || !bytes.Equal(b, wantBytes) {
					t.Errorf("marshalled %x, %v; want %x", b, err, wantBytes)
					return
				}
				if _, err := protojson.Marshal(got); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
