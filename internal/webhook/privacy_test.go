package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// columnsHolding lists, as "table.column", every column of every table in
// st's database that holds s anywhere in a value (text, or bytes such as a
// stored payload).
func columnsHolding(t *testing.T, st *store.Store, s string) []string {
	t.Helper()
	type column struct{ table, name, typ string }
	var cols []column
	var q string
	if st.Dialect == "postgres" {
		q = `SELECT table_name, column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() ORDER BY 1, 2`
	} else {
		q = `SELECT m.name, c.name, c.type FROM sqlite_master m, pragma_table_info(m.name) c
			WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2`
	}
	rows, err := st.DB.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.table, &c.name, &c.typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(cols) < 10 {
		t.Fatalf("found only %d columns: %v", len(cols), cols)
	}
	var holding []string
	for _, c := range cols {
		var where string
		var arg any = s
		switch {
		case st.Dialect != "postgres":
			where = fmt.Sprintf(`instr(CAST(%q AS BLOB), CAST(? AS BLOB)) > 0`, c.name)
		case c.typ == "bytea":
			where, arg = fmt.Sprintf(`position($1::bytea IN %q) > 0`, c.name), []byte(s)
		default:
			where = fmt.Sprintf(`strpos(%q::text, $1) > 0`, c.name)
		}
		var n int
		if err := st.DB.QueryRow(fmt.Sprintf(`SELECT count(*) FROM %q WHERE %s`, c.table, where), arg).Scan(&n); err != nil {
			t.Fatalf("search %s.%s: %v", c.table, c.name, err)
		}
		if n > 0 {
			holding = append(holding, c.table+"."+c.name)
		}
	}
	return holding
}

// TestUserDeletedErasesPersonalData: after user.deleted no table holds the
// user's email address or name — not the users row, and not the raw events
// kept for audit (the user's own, the memberships' public_user_data), nor
// events about the user that arrive after the deletion. The events stay
// recorded by svix-id, so a redelivery is still a duplicate; another user's
// data stays.
func TestUserDeletedErasesPersonalData(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		const (
			leaving = "user_2oDeparting00000000000001"
			staying = "user_2oRemaining00000000000001"
		)
		who := clerkemu.Sample{UserID: leaving, Email: "adelaide.q@example.net", FirstName: "Adelaide", LastName: "Quillfeather"}
		personal := []string{who.Email, who.FirstName, who.LastName, "ada@example.com" /* user.updated's second address */}
		deliver := func(typ string, s clerkemu.Sample, ms int64, msgID string) {
			t.Helper()
			s.UpdatedAt = at(ms)
			if got := e.deliver(msgID, sample(t, typ, s)); got.Status != 200 {
				t.Fatalf("%s: %+v", typ, got)
			}
		}
		firstID := clerkemu.NewMessageID()
		deliver(TypeUserCreated, who, 100, firstID)
		deliver(TypeUserUpdated, who, 200, "")
		deliver(TypeOrganizationCreated, clerkemu.Sample{}, 100, "")
		deliver(TypeOrganizationMembershipCreated, who, 300, "")
		deliver(TypeUserCreated, clerkemu.Sample{UserID: staying, Email: "stays@example.net"}, 100, "")
		for _, body := range []string{
			`{"type":"email.created","object":"event","data":{"object":"email","to_email_address":"adelaide.q@example.net","user_id":"` + leaving + `"}}`,
			`{"type":"session.created","object":"event","data":{"id":"sess_2oX","user_id":"` + leaving + `"},"event_attributes":{"http_request":{"user_agent":"Adelaide's browser"}}}`,
		} {
			if got := e.deliver("", []byte(body)); got != (answer{200, "ignored"}) {
				t.Fatalf("unhandled event: %+v", got)
			}
		}
		if got := columnsHolding(t, s, who.Email); len(got) == 0 {
			t.Fatal("the email is nowhere before the deletion: the search finds nothing")
		}

		deliver(TypeUserDeleted, clerkemu.Sample{UserID: leaving}, 0, "")
		// Late events about the deleted user.
		deliver(TypeUserUpdated, who, 900, "")
		deliver(TypeOrganizationMembershipUpdated, who, 900, "")
		deliver(TypeOrganizationMembershipDeleted, who, 950, "")
		deliver(TypeOrganizationMembershipCreated, clerkemu.Sample{UserID: leaving, MembershipID: "orgmem_2oLate", Email: who.Email, FirstName: who.FirstName, LastName: who.LastName}, 960, "")
		deliver(TypeOrganizationMembershipDeleted, clerkemu.Sample{UserID: leaving, MembershipID: "orgmem_2oLater", Email: who.Email, FirstName: who.FirstName, LastName: who.LastName}, 970, "")

		for _, p := range personal {
			if got := columnsHolding(t, s, p); len(got) > 0 {
				t.Errorf("%q is still in %v after user.deleted", p, got)
			}
		}
		if got := columnsHolding(t, s, "stays@example.net"); !slices.Contains(got, "users.email") {
			t.Errorf("another user's email is in %v, want it kept in users.email", got)
		}
		if got := e.deliver(firstID, sample(t, TypeUserCreated, who)); got != (answer{200, "duplicate"}) {
			t.Errorf("redelivery of the first event after the erasure: %+v, want a duplicate", got)
		}
	})
}

// TestUserDeletedErasesEventsStoredWithoutAUserID: events stored before the
// webhook_events.user_id column existed (user_id "") are erased by the
// user.deleted of the user they are about, found by their payload; other
// users' old events stay — one whose organization the deleted user created,
// and one of a user whose id differs from theirs only in case.
func TestUserDeletedErasesEventsStoredWithoutAUserID(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		const (
			leaving = "user_2oDeparting00000000000002"
			twin    = "user_2oDEPARTING00000000000002"
			staying = "user_2oRemaining00000000000002"
		)
		// old stores an event as Gatehouse did before user_id existed.
		old := func(typ string, smp clerkemu.Sample, createdBy string) string {
			t.Helper()
			body := sample(t, typ, smp)
			if createdBy != "" {
				var ev map[string]any
				if err := json.Unmarshal(body, &ev); err != nil {
					t.Fatal(err)
				}
				ev["data"].(map[string]any)["organization"].(map[string]any)["created_by"] = createdBy
				var err error
				if body, err = json.Marshal(ev); err != nil {
					t.Fatal(err)
				}
			}
			id := clerkemu.NewMessageID()
			s.Client.WebhookEvent.Create().SetID(id).SetType(typ).SetResult(string(ResultApplied)).
				SetPayload(body).SetReceivedAt(time.Now()).ExecX(sysctx())
			return id
		}
		const leavingEmail = "old.departing@example.net"
		erased := []string{
			old(TypeUserUpdated, clerkemu.Sample{UserID: leaving, Email: leavingEmail, UpdatedAt: at(100)}, ""),
			old(TypeOrganizationMembershipCreated, clerkemu.Sample{UserID: leaving, MembershipID: "orgmem_2oOld1", Email: leavingEmail, UpdatedAt: at(100)}, ""),
		}
		kept := []string{
			old(TypeOrganizationMembershipCreated, clerkemu.Sample{UserID: staying, MembershipID: "orgmem_2oOld2", Email: "old.remaining@example.net", UpdatedAt: at(100)}, leaving),
			old(TypeUserUpdated, clerkemu.Sample{UserID: twin, Email: "old.twin@example.net", UpdatedAt: at(100)}, ""),
		}
		if got := columnsHolding(t, s, leavingEmail); !slices.Equal(got, []string{"webhook_events.payload"}) {
			t.Fatalf("before the deletion the email is in %v, want webhook_events.payload", got)
		}

		if got := e.deliver("", sample(t, TypeUserDeleted, clerkemu.Sample{UserID: leaving})); got != (answer{200, "applied"}) {
			t.Fatalf("user.deleted: %+v", got)
		}
		if got := columnsHolding(t, s, leavingEmail); len(got) > 0 {
			t.Errorf("the deleted user's email is still in %v", got)
		}
		for _, id := range erased {
			if ev := s.Client.WebhookEvent.GetX(sysctx(), id); ev.Payload != nil || ev.ErasedAt == nil {
				t.Errorf("old event %s about the deleted user: payload %d bytes, erased at %v; want erased", id, len(ev.Payload), ev.ErasedAt)
			}
		}
		for _, id := range kept {
			if ev := s.Client.WebhookEvent.GetX(sysctx(), id); ev.Payload == nil || ev.ErasedAt != nil {
				t.Errorf("old event %s about another user: erased at %v; want kept", id, ev.ErasedAt)
			}
		}
	})
}

// TestErasureRacingEventsAboutTheUser: events about a user applied while
// their user.deleted is (on Postgres, concurrently) leave no copy of the
// user's email, whichever commits first.
func TestErasureRacingEventsAboutTheUser(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		e := newEndpoint(t, s, newSecret())
		rounds := 25
		if s.Dialect != "postgres" {
			rounds = 3
		}
		for i := range rounds {
			who := clerkemu.Sample{
				UserID: fmt.Sprintf("user_2oRacer%d", i), Email: fmt.Sprintf("racer%d@example.net", i),
				MembershipID: fmt.Sprintf("orgmem_2oRacer%d", i), UpdatedAt: at(100),
			}
			if got := e.deliver("", sample(t, TypeUserCreated, who)); got.Status != 200 {
				t.Fatalf("user.created: %+v", got)
			}
			who.UpdatedAt = at(200)
			late := who
			late.MembershipID = fmt.Sprintf("orgmem_2oRacerLate%d", i)
			bodies := [][]byte{
				sample(t, TypeUserDeleted, who),
				sample(t, TypeUserUpdated, who),
				sample(t, TypeOrganizationMembershipCreated, who),
				sample(t, TypeOrganizationMembershipDeleted, late),
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, body := range bodies {
				wg.Go(func() {
					<-start
					for try := 0; ; try++ { // as Svix would retry a 5xx
						got := e.deliver("", body)
						if got.Status == 200 {
							return
						}
						if got.Status < 500 || try == 5 {
							t.Errorf("delivery: %+v", got)
							return
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if got := columnsHolding(t, s, who.Email); len(got) > 0 {
				t.Errorf("round %d: %s is still in %v", i, who.Email, got)
			}
		}
	})
}
