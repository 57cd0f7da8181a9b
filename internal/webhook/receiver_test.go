package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/ent/webhookevent"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

const (
	ada     = "user_2oAdaLovelace000000000001" // the fixtures' user
	charles = "user_2oCharlesBabbage00000001"
	engines = "org_2oAnalyticalEngines00000001" // the fixtures' organization
	adaMem  = "orgmem_2oAdaAnalytical000000001" // the fixtures' membership
)

func TestConcurrentRedeliveryHasOneEffect(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		body := sample(t, TypeUserCreated, clerkemu.Sample{})
		msgID := clerkemu.NewMessageID()

		const n = 5
		answers := make([]answer, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { answers[i] = e.deliver(msgID, body) })
		}
		wg.Wait()

		results := map[string]int{}
		for _, a := range answers {
			if a.Status != http.StatusOK {
				t.Errorf("status %d, want 200 for every delivery", a.Status)
			}
			results[a.Result]++
		}
		if diff := cmp.Diff(map[string]int{"applied": 1, "duplicate": n - 1}, results); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		want := map[string]int{"users": 1, "organizations": 0, "memberships": 0, "projects": 0, "webhook_events": 1}
		if diff := cmp.Diff(want, rowCounts(t, s.Client)); diff != "" {
			t.Errorf("rows (-want +got):\n%s", diff)
		}
		if u := getUser(t, s.Client, ada); u.Email != "ada@example.com" || u.FirstName != "Ada" {
			t.Errorf("user = %q %q, want ada@example.com Ada", u.Email, u.FirstName)
		}
	})
}

func TestOlderUpdateChangesNothing(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		for _, step := range []struct {
			typ    string
			s      clerkemu.Sample
			result string
		}{
			{TypeUserCreated, clerkemu.Sample{UpdatedAt: at(100), FirstName: "v1"}, "applied"},
			{TypeUserUpdated, clerkemu.Sample{UpdatedAt: at(300), FirstName: "v3"}, "applied"},
			{TypeUserUpdated, clerkemu.Sample{UpdatedAt: at(200), FirstName: "v2"}, "stale"},
			{TypeUserUpdated, clerkemu.Sample{UpdatedAt: at(300), FirstName: "v3 again"}, "stale"}, // equal: not newer
			{TypeUserCreated, clerkemu.Sample{UpdatedAt: at(100), FirstName: "v1"}, "stale"},       // late create
		} {
			if got := e.deliver("", sample(t, step.typ, step.s)); got != (answer{200, step.result}) {
				t.Errorf("%s %s: got %+v, want 200 %s", step.typ, step.s.FirstName, got, step.result)
			}
		}
		u := getUser(t, s.Client, ada)
		if u.FirstName != "v3" || u.ClerkUpdatedAt != at(300).UnixMilli() {
			t.Errorf("user = %q @%d, want v3 @%d", u.FirstName, u.ClerkUpdatedAt, at(300).UnixMilli())
		}
		// The primary email is the one primary_email_address_id names, which
		// user.updated lists second.
		if u.Email != "ada.lovelace@example.org" {
			t.Errorf("email = %q, want the primary ada.lovelace@example.org", u.Email)
		}
		events, err := s.Client.WebhookEvent.Query().Where(webhookevent.Result("stale")).Count(sysctx())
		if err != nil || events != 3 {
			t.Errorf("stale events recorded = %d (%v), want 3", events, err)
		}
	})
}

func TestDeletedUserStaysDeleted(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		seedUser(t, s.Client, charles)
		seedProject(t, s.Client, "prj_charles", charles, charles)

		steps := []struct {
			typ    string
			s      clerkemu.Sample
			result string
		}{
			{TypeUserCreated, clerkemu.Sample{UpdatedAt: at(100)}, "applied"},
			{TypeOrganizationCreated, clerkemu.Sample{UpdatedAt: at(100)}, "applied"},
			{TypeOrganizationMembershipCreated, clerkemu.Sample{UpdatedAt: at(100)}, "applied"},
			{"seed projects", clerkemu.Sample{}, ""},
			{TypeUserDeleted, clerkemu.Sample{}, "applied"},
			{TypeUserUpdated, clerkemu.Sample{UpdatedAt: at(900), FirstName: "Resurrected"}, "stale"},
			{TypeOrganizationMembershipUpdated, clerkemu.Sample{UpdatedAt: at(900), Role: "org:admin"}, "stale"},
			{TypeUserDeleted, clerkemu.Sample{}, "stale"},
		}
		for _, step := range steps {
			if step.result == "" {
				seedProject(t, s.Client, "prj_personal", ada, ada)
				seedProject(t, s.Client, "prj_org", engines, ada)
				continue
			}
			if got := e.deliver("", sample(t, step.typ, step.s)); got != (answer{200, step.result}) {
				t.Errorf("%s: got %+v, want 200 %s", step.typ, got, step.result)
			}
		}
		u := getUser(t, s.Client, ada)
		if u.DeletedAt == nil {
			t.Fatal("user resurrected: deleted_at cleared")
		}
		if u.Email != "" || u.FirstName != "" || u.LastName != "" || u.ImageURL != "" {
			t.Errorf("personal data kept: %q %q %q %q", u.Email, u.FirstName, u.LastName, u.ImageURL)
		}
		// Personal projects go; the organization's, though Ada created
		// them, and other users' stay.
		if diff := cmp.Diff([]string{"prj_charles", "prj_org"}, projectIDs(t, s.Client)); diff != "" {
			t.Errorf("projects (-want +got):\n%s", diff)
		}
		if got := dumpMirror(t, s.Client).Memberships; len(got) != 0 {
			t.Errorf("live memberships = %+v, want none", got)
		}
	})
}

func TestDeleteBeforeCreateLeavesTombstone(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		for _, step := range []struct {
			typ, result string
		}{
			{TypeUserDeleted, "applied"},
			{TypeUserCreated, "stale"},
			{TypeOrganizationDeleted, "applied"},
			{TypeOrganizationCreated, "stale"},
			{TypeOrganizationMembershipDeleted, "applied"},
			{TypeOrganizationMembershipCreated, "stale"},
		} {
			if got := e.deliver("", sample(t, step.typ, clerkemu.Sample{})); got != (answer{200, step.result}) {
				t.Errorf("%s: got %+v, want 200 %s", step.typ, got, step.result)
			}
		}
		want := mirror{
			Users: []mirrorUser{{ID: ada, Deleted: true}},
			Orgs:  []mirrorOrg{{ID: engines, Deleted: true}},
		}
		if diff := cmp.Diff(want, dumpMirror(t, s.Client)); diff != "" {
			t.Errorf("mirror (-want +got):\n%s", diff)
		}
	})
}

func TestOrganizationDeleted(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		const other = "org_2oOtherOrganization0000001"
		for _, b := range [][]byte{
			sample(t, TypeUserCreated, clerkemu.Sample{}),
			sample(t, TypeOrganizationCreated, clerkemu.Sample{}),
			sample(t, TypeOrganizationCreated, clerkemu.Sample{OrgID: other}),
			sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{}),
			sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{OrgID: other, MembershipID: "orgmem_2oAdaOther00000000001"}),
		} {
			if got := e.deliver("", b); got != (answer{200, "applied"}) {
				t.Fatalf("setup: got %+v", got)
			}
		}
		seedProject(t, s.Client, "prj_engines1", engines, ada)
		seedProject(t, s.Client, "prj_engines2", engines, ada)
		seedProject(t, s.Client, "prj_other", other, ada)
		seedProject(t, s.Client, "prj_personal", ada, ada)

		if got := e.deliver("", sample(t, TypeOrganizationDeleted, clerkemu.Sample{})); got != (answer{200, "applied"}) {
			t.Fatalf("organization.deleted: got %+v", got)
		}
		// A late membership event, and a late update of the organization,
		// change nothing.
		for _, b := range [][]byte{
			sample(t, TypeOrganizationMembershipUpdated, clerkemu.Sample{UpdatedAt: at(5000)}),
			sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{MembershipID: "orgmem_2oLateMember0000000001", UserID: charles, UpdatedAt: at(5000)}),
			sample(t, TypeOrganizationUpdated, clerkemu.Sample{UpdatedAt: at(5000)}),
		} {
			if got := e.deliver("", b); got != (answer{200, "stale"}) {
				t.Errorf("late event: got %+v, want 200 stale", got)
			}
		}
		m := dumpMirror(t, s.Client)
		if diff := cmp.Diff([]string{"prj_other", "prj_personal"}, m.Projects); diff != "" {
			t.Errorf("projects (-want +got):\n%s", diff)
		}
		if len(m.Memberships) != 1 || m.Memberships[0].TenantID != other {
			t.Errorf("live memberships = %+v, want only the one in %s", m.Memberships, other)
		}
		if len(m.Orgs) != 2 || !m.Orgs[0].Deleted && !m.Orgs[1].Deleted {
			t.Errorf("organizations = %+v, want %s tombstoned", m.Orgs, engines)
		}
	})
}

func TestMembershipBeforeUserAndOrganization(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		// The membership arrives first: the user and the organization are
		// created as stubs from its embedded data...
		if got := e.deliver("", sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{UpdatedAt: at(500), Email: "ada@stub.example"})); got != (answer{200, "applied"}) {
			t.Fatalf("membership: got %+v", got)
		}
		m := dumpMirror(t, s.Client)
		wantUser := mirrorUser{ID: ada, Email: "ada@stub.example", FirstName: "Ada", LastName: "Lovelace", ImageURL: "https://img.clerk.com/eyJ0eXBlIjoiZGVmYXVsdCJ9"}
		if diff := cmp.Diff([]mirrorUser{wantUser}, m.Users); diff != "" {
			t.Errorf("stub user (-want +got):\n%s", diff)
		}
		if len(m.Orgs) != 1 || m.Orgs[0].Name != "Analytical Engines" || m.Orgs[0].ClerkUpdatedAt != 0 {
			t.Errorf("stub organization = %+v", m.Orgs)
		}
		// ...which the user's and organization's own events overwrite, even
		// when older than the membership.
		for _, typ := range []string{TypeUserCreated, TypeOrganizationCreated} {
			if got := e.deliver("", sample(t, typ, clerkemu.Sample{UpdatedAt: at(100)})); got != (answer{200, "applied"}) {
				t.Errorf("%s: got %+v, want applied over the stub", typ, got)
			}
		}
		if u := getUser(t, s.Client, ada); u.Email != "ada@example.com" || u.ClerkUpdatedAt != at(100).UnixMilli() {
			t.Errorf("user = %q @%d, want the user.created data", u.Email, u.ClerkUpdatedAt)
		}
		// A membership for a user known only by a phone number: no email.
		if got := e.deliver("", sample(t, TypeOrganizationMembershipCreated, clerkemu.Sample{MembershipID: "orgmem_2oPhoneOnly00000000001", UserID: charles, Email: "+15555550100"})); got.Result != "applied" {
			t.Fatalf("membership: got %+v", got)
		}
		if u := getUser(t, s.Client, charles); u.Email != "" {
			t.Errorf("phone identifier stored as email %q", u.Email)
		}
	})
}

func TestMembershipOrdering(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		for _, step := range []struct {
			typ    string
			s      clerkemu.Sample
			result string
		}{
			{TypeOrganizationMembershipUpdated, clerkemu.Sample{UpdatedAt: at(300), Role: "org:member"}, "applied"},
			{TypeOrganizationMembershipCreated, clerkemu.Sample{UpdatedAt: at(100), Role: "org:admin"}, "stale"},
			{TypeOrganizationMembershipUpdated, clerkemu.Sample{UpdatedAt: at(400), Role: "org:billing"}, "applied"},
			{TypeOrganizationMembershipDeleted, clerkemu.Sample{UpdatedAt: at(350)}, "applied"}, // deletes win whatever their time
			{TypeOrganizationMembershipUpdated, clerkemu.Sample{UpdatedAt: at(900), Role: "org:admin"}, "stale"},
		} {
			if got := e.deliver("", sample(t, step.typ, step.s)); got != (answer{200, step.result}) {
				t.Errorf("%s %s: got %+v, want 200 %s", step.typ, step.s.Role, got, step.result)
			}
		}
		if got := dumpMirror(t, s.Client).Memberships; len(got) != 0 {
			t.Errorf("live memberships = %+v, want none", got)
		}
	})
}

func TestUnhandledEventIsRecordedAndIgnored(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		body := []byte(`{"data":{"id":"sess_2oSession000000000001","object":"session","status":"active","user_id":"` + ada + `"},"object":"event","timestamp":1730000000000,"type":"session.created"}`)
		msgID := clerkemu.NewMessageID()
		if got := e.deliver(msgID, body); got != (answer{200, "ignored"}) {
			t.Fatalf("got %+v, want 200 ignored", got)
		}
		ev, err := s.Client.WebhookEvent.Get(sysctx(), msgID)
		if err != nil {
			t.Fatal(err)
		}
		// Not its payload: Gatehouse does not know an unhandled type's shape,
		// so it could not erase the personal data it may hold.
		if ev.Type != "session.created" || ev.Result != "ignored" || ev.ObjectID != "sess_2oSession000000000001" || ev.Payload != nil {
			t.Errorf("recorded %s %s %s %q", ev.Type, ev.Result, ev.ObjectID, ev.Payload)
		}
		if n := rowCounts(t, s.Client); n["users"] != 0 {
			t.Errorf("rows = %v, want only the event", n)
		}
		if !strings.Contains(e.logs.String(), `"type":"session.created"`) {
			t.Errorf("no log line for the ignored event:\n%s", e.logs)
		}
	})
}

func TestRejectedDeliveriesWriteNothing(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		secret := newSecret()
		e := newEndpoint(t, s, secret)
		valid := sample(t, TypeUserCreated, clerkemu.Sample{FirstName: "SECRET-PAYLOAD-MARKER"})
		signed := func(body []byte, ts time.Time, key string) *http.Request {
			req, err := clerkemu.NewWebhookRequest(context.Background(), e.url, key, "", ts, body)
			if err != nil {
				t.Fatal(err)
			}
			return req
		}
		huge := append(bytes.Repeat([]byte(" "), 2<<20), valid...)
		for _, tc := range []struct {
			name string
			req  func() *http.Request
			want int
		}{
			{"bad signature", func() *http.Request { return signed(valid, time.Now(), newSecret()) }, 401},
			{"body altered after signing", func() *http.Request {
				req := signed(valid, time.Now(), secret)
				req2 := signed(bytes.Replace(valid, []byte("Ada"), []byte("Eve"), 1), time.Now(), secret)
				req2.Header = req.Header
				return req2
			}, 401},
			{"stale timestamp", func() *http.Request { return signed(valid, time.Now().Add(-6*time.Minute), secret) }, 401},
			{"future timestamp", func() *http.Request { return signed(valid, time.Now().Add(6*time.Minute), secret) }, 401},
			{"missing headers", func() *http.Request {
				req := signed(valid, time.Now(), secret)
				req.Header.Del("svix-signature")
				return req
			}, 401},
			{"no headers at all", func() *http.Request {
				req, _ := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(valid))
				return req
			}, 401},
			{"malformed JSON, validly signed", func() *http.Request { return signed([]byte(`{"type":"user.created","data":{`), time.Now(), secret) }, 400},
			{"malformed payload, validly signed", func() *http.Request {
				return signed([]byte(`{"type":"user.created","object":"event","data":{"id":"user_x;DROP"}}`), time.Now(), secret)
			}, 400},
			{"2 MiB body, validly signed", func() *http.Request { return signed(huge, time.Now(), secret) }, 413},
			{"GET", func() *http.Request {
				req := signed(valid, time.Now(), secret)
				req.Method = http.MethodGet
				return req
			}, 405},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := e.do(tc.req()); got != (answer{tc.want, "rejected"}) {
					t.Errorf("got %+v, want %d rejected", got, tc.want)
				}
			})
		}
		want := map[string]int{"users": 0, "organizations": 0, "memberships": 0, "projects": 0, "webhook_events": 0}
		if diff := cmp.Diff(want, rowCounts(t, s.Client)); diff != "" {
			t.Errorf("rows (-want +got):\n%s", diff)
		}
		logs := e.logs.String()
		if strings.Contains(logs, "SECRET-PAYLOAD-MARKER") || strings.Contains(logs, strings.TrimPrefix(secret, "whsec_")) {
			t.Errorf("logs carry the body or the secret:\n%s", logs)
		}
		if n := strings.Count(logs, `"msg":"webhook"`); n != 10 {
			t.Errorf("%d log lines, want one per delivery (10):\n%s", n, logs)
		}
	})
}

// TestWeakSigningSecretIsRefused: a receiver is not built on a secret that
// is not Svix's whsec_ + base64 of at least 24 bytes — none at all, "whsec_"
// alone, which svix's verifier takes as an empty HMAC key anyone can sign
// with, a short key, or a bare key — and the error does not echo the secret.
func TestWeakSigningSecretIsRefused(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))
	for _, secret := range []string{"", "whsec_", "whsec_AAAA", short, "whsec_!!!!", strings.TrimPrefix(newSecret(), "whsec_")} {
		r, err := New(Config{Client: s.Client, Dialect: s.Dialect, Secret: secret})
		if err == nil {
			// What it would let through: a delivery signed with the weak key.
			w := httptest.NewRecorder()
			req, rerr := clerkemu.NewWebhookRequest(context.Background(), "http://gatehouse/webhooks/clerk", secret, "", time.Now(), sample(t, TypeUserCreated, clerkemu.Sample{}))
			if rerr == nil {
				r.ServeHTTP(w, req)
			}
			t.Errorf("New(secret %q) succeeded; a delivery signed with it got %d", secret, w.Code)
			continue
		}
		if k := strings.TrimPrefix(secret, "whsec_"); len(k) > 4 && strings.Contains(err.Error(), k) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
	if n := rowCounts(t, s.Client)["users"]; n != 0 {
		t.Errorf("%d users written through weak secrets", n)
	}
}

// TestUnhandledEventWhateverItsData: an event type Gatehouse does not handle
// is answered 200 "ignored" whatever its data holds, so that Svix does not
// retry it for days; the handled types keep their validation.
func TestUnhandledEventWhateverItsData(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		for _, tc := range []struct {
			body string
			want answer
		}{
			{`{"type":"session.created","object":"event","data":null}`, answer{200, "ignored"}},
			{`{"type":"session.created","object":"event","data":"x"}`, answer{200, "ignored"}},
			{`{"type":"email.created","object":"event","data":[1,2]}`, answer{200, "ignored"}},
			{`{"type":"sms.created","object":"event","data":7}`, answer{200, "ignored"}},
			{`{"type":"waitlistEntry.created","object":"event"}`, answer{200, "ignored"}},
			{`{"type":"user.created","object":"event","data":null}`, answer{400, "rejected"}},
			{`{"type":"organizationMembership.deleted","object":"event","data":"x"}`, answer{400, "rejected"}},
		} {
			if got := e.deliver("", []byte(tc.body)); got != tc.want {
				t.Errorf("%s: got %+v, want %+v", tc.body, got, tc.want)
			}
		}
		if n := rowCounts(t, s.Client)["webhook_events"]; n != 5 {
			t.Errorf("%d events recorded, want the 5 ignored ones", n)
		}
	})
}

// TestClerkStringsAreCleaned: text Postgres cannot hold as is (a NUL byte)
// or that is far too long does not make an event unappliable — Svix would
// retry it for days, and the mirror would never catch up. It is applied,
// cleaned as first-sight provisioning cleans it.
func TestClerkStringsAreCleaned(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		long := strings.Repeat("ä", 3000)
		for _, step := range []struct {
			typ string
			s   clerkemu.Sample
		}{
			{TypeOrganizationMembershipCreated, clerkemu.Sample{UserID: charles, FirstName: "Char\x00les", OrgName: "Engines\x00"}},
			{TypeUserCreated, clerkemu.Sample{FirstName: "Ada\x00", LastName: long, Email: "ada\x00@example.com"}},
		} {
			if got := e.deliver("", sample(t, step.typ, step.s)); got != (answer{200, "applied"}) {
				t.Fatalf("%s: got %+v, want 200 applied", step.typ, got)
			}
		}
		u := getUser(t, s.Client, ada)
		if u.FirstName != "Ada" || u.Email != "ada@example.com" || len(u.LastName) != 2048 || !strings.HasPrefix(long, u.LastName) {
			t.Errorf("user stored as %q %q and a last name of %d bytes", u.FirstName, u.Email, len(u.LastName))
		}
		m := dumpMirror(t, s.Client)
		if m.Users[1].ID != charles || m.Users[1].FirstName != "Charles" || m.Orgs[0].Name != "Engines" {
			t.Errorf("stubs from the membership: %+v %+v", m.Users[1], m.Orgs[0])
		}
	})
}
