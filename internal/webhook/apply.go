package webhook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/membership"
	"github.com/gatehouse-dev/gatehouse/ent/organization"
	"github.com/gatehouse-dev/gatehouse/ent/predicate"
	"github.com/gatehouse-dev/gatehouse/ent/project"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	"github.com/gatehouse-dev/gatehouse/ent/webhookevent"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Result is what became of a delivery. It is recorded on the WebhookEvent
// row (applied, stale, ignored) and is the "result" label of
// gatehouse_webhook_events_total.
type Result string

const (
	// ResultApplied: the event changed the mirror.
	ResultApplied Result = "applied"
	// ResultDuplicate: the svix-id was already recorded; nothing changed.
	ResultDuplicate Result = "duplicate"
	// ResultStale: the event is no newer than what is stored, or its object
	// is deleted (tombstoned); nothing changed.
	ResultStale Result = "stale"
	// ResultIgnored: Gatehouse does not handle the event type.
	ResultIgnored Result = "ignored"
	// ResultRejected: 4xx — not verified, malformed, too large, or not a POST.
	ResultRejected Result = "rejected"
	// ResultFailed: 5xx — the database failed; nothing was written.
	ResultFailed Result = "failed"
)

// maxAttempts bounds how often one delivery's transaction is run after a
// race it lost (see retryable) before answering 503 and leaving the retry
// to Svix. One rerun settles a lost race: the winner has committed by then.
const maxAttempts = 3

// apply applies ev exactly once per msgID: its effect and the WebhookEvent
// row commit together or not at all. A transaction that lost a race with a
// concurrent one (retryable) is run again, up to maxAttempts.
func (r *Receiver) apply(ctx context.Context, msgID string, ev *Event, body []byte) (Result, error) {
	ctx = withRowLocks(viewer.NewSystemContext(ctx), r.rowLocks)
	for attempt := 1; ; attempt++ {
		res, err := r.applyOnce(ctx, msgID, ev, body)
		if err == nil && res == ResultApplied && r.invalidations != nil {
			r.invalidations.Committed(changedKeys(ev)...)
		}
		if err == nil || attempt == maxAttempts || !retryable(err) || ctx.Err() != nil {
			return res, err
		}
	}
}

func (r *Receiver) applyOnce(ctx context.Context, msgID string, ev *Event, body []byte) (res Result, err error) {
	ctx = store.WithNotify(ctx)
	tx, err := r.client.Tx(ctx)
	if err != nil {
		return ResultFailed, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback() //nolint:errcheck // the first error is the one to report
		}
	}()
	now := r.now().UTC()
	// The svix-id goes in first. A delivery of the same svix-id that
	// committed before makes this insert conflict, and one still in flight
	// makes it wait for that commit (on Postgres; SQLite runs one
	// transaction at a time): either way this delivery is a duplicate and
	// stops here. The row records the result; "applied", the common one, is
	// written now and corrected below in the rare other cases.
	//
	// The payload is kept only for the handled types: Gatehouse does not
	// know the others' shape, so it could not tell whose personal data they
	// hold, nor erase it when that user is deleted.
	create := tx.WebhookEvent.Create().
		SetID(msgID).
		SetType(ev.Type).
		SetObjectID(ev.ObjectID).
		SetUserID(ev.UserID).
		SetResult(string(ResultApplied)).
		SetReceivedAt(now)
	if ev.Handled {
		create.SetPayload(body)
	}
	err = create.OnConflictColumns(webhookevent.FieldID).DoNothing().Exec(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ResultDuplicate, nil
	case err != nil:
		return ResultFailed, fmt.Errorf("record svix-id: %w", err)
	}
	res, userDeleted, err := applyEvent(ctx, tx, ev, now)
	if err != nil {
		return ResultFailed, fmt.Errorf("apply %s %s: %w", ev.Type, ev.ObjectID, err)
	}
	if res != ResultApplied || userDeleted {
		update := tx.WebhookEvent.UpdateOneID(msgID).SetResult(string(res))
		if userDeleted {
			// An event about a user deleted before it arrived: keep no copy
			// of what it says of them (see eraseUserData).
			update.ClearPayload().SetErasedAt(now)
		}
		if err := update.Exec(ctx); err != nil {
			return ResultFailed, fmt.Errorf("record result of %s: %w", msgID, err)
		}
	}
	if res == ResultApplied && r.invalidations != nil {
		// Sent in the transaction: other replicas hear of the change when,
		// and only if, it commits.
		if err := r.invalidations.Publish(ctx, changedKeys(ev)...); err != nil {
			return ResultFailed, fmt.Errorf("notify %s %s: %w", ev.Type, ev.ObjectID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return ResultFailed, fmt.Errorf("commit %s %s: %w", ev.Type, ev.ObjectID, err)
	}
	committed = true
	return res, nil
}

// changedKeys names the cached rows an applied event changed, for the
// caches that hold them (internal/invalidation). Only users' rows are cached
// (the provisioner's live users, and GetMe's messages built from them), so
// only user.* events change any:
// organization and membership events, which never change a user's row
// (they at most insert a stub, which no cache can hold), send nothing.
func changedKeys(ev *Event) []invalidation.Key {
	if strings.HasPrefix(ev.Type, "user.") {
		return []invalidation.Key{invalidation.User(ev.ObjectID)}
	}
	return nil
}

// retryable reports whether err is a race lost to a concurrent transaction
// on Postgres, after which the whole transaction may simply be run again:
// a deadlock, a serialization failure, or a unique violation.
//
// The unique violation is how two first events for one membership collide.
// The memberships table has two unique keys on its id: ent's primary key
// (id) and the tenant-leading (tenant_id, id) that is the ON CONFLICT target.
// Postgres treats only the target as the arbiter; when both inserts pass
// its check before either has written, the second one meets the first's
// row in the primary key, waits for it to commit and then fails with
// 23505 instead of doing nothing. Run again, the insert sees the committed
// row and the applier goes on from it. (Users, organizations and the
// svix-id record have one unique key each, their conflict target, so they
// cannot collide this way; the retry covers them all the same.)
func retryable(err error) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "40001", "40P01", "23505":
			return true
		}
	}
	return false
}

// applyEvent applies ev in tx. userDeleted reports that the user whose
// personal data ev holds (ev.UserID) was found deleted, so that the event's
// own payload is not kept: user.deleted erases the payloads already stored,
// and this covers the events about the user that arrive after it.
func applyEvent(ctx context.Context, tx *ent.Tx, ev *Event, now time.Time) (res Result, userDeleted bool, err error) {
	switch ev.Type {
	case TypeUserCreated, TypeUserUpdated:
		return applyUser(ctx, tx, ev.user, accessFor(ev.Type))
	case TypeUserDeleted:
		res, err := deleteUser(ctx, tx, ev.user.ID, now)
		return res, false, err
	case TypeOrganizationCreated, TypeOrganizationUpdated:
		res, err := applyOrganization(ctx, tx, ev.org, accessFor(ev.Type))
		return res, false, err
	case TypeOrganizationDeleted:
		res, err := deleteOrganization(ctx, tx, ev.org.ID, now)
		return res, false, err
	case TypeOrganizationMembershipCreated, TypeOrganizationMembershipUpdated:
		return applyMembership(ctx, tx, ev.membership, accessFor(ev.Type), now)
	case TypeOrganizationMembershipDeleted:
		return deleteMembership(ctx, tx, ev.membership, now)
	}
	return ResultIgnored, false, nil
}

// accessFor says how the appliers of an event type reach their row: a
// created object is usually new, so its insert is tried first.
func accessFor(eventType string) access {
	switch eventType {
	case TypeUserCreated, TypeOrganizationCreated, TypeOrganizationMembershipCreated:
		return insertFirst
	}
	return forUpdate
}

// newer reports whether an event with Clerk updated_at event supersedes a
// row holding stored. A row known only from a token or a membership
// (stored 0) yields to any real event.
func newer(event, stored int64) bool {
	return stored == 0 || event > stored
}

func clerkTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// access is how an applier reaches the row it decides on.
type access int

const (
	// forUpdate selects the row FOR UPDATE, inserting it when absent.
	forUpdate access = iota
	// forShare selects the row FOR SHARE, inserting it when absent: for the
	// organization and user a membership points to.
	forShare
	// insertFirst tries the insert first and selects FOR UPDATE only if it
	// conflicted: for *.created events, whose row is usually new, this saves
	// a round trip; for the others it would cost one.
	insertFirst
)

// found is what an applier decides on: the row lock reached.
type found struct {
	// inserted: the applier's own insert made the row.
	inserted bool
	// deleted: the row was there already, as a tombstone.
	deleted bool
	// clerkUpdatedAt is the Clerk updated_at the row was there with.
	clerkUpdatedAt int64
}

// live reports whether the row was there already, and not a tombstone.
func (f found) live() bool { return !f.inserted && !f.deleted }

// deleteResult is what a *.deleted event did to the row: nothing (stale) if
// it already was a tombstone.
func (f found) deleteResult() Result {
	if f.deleted {
		return ResultStale
	}
	return ResultApplied
}

// lock reaches a row as a says (tenancy.LockOrInsert). query selects it
// and locks it; insert is an INSERT … ON CONFLICT DO NOTHING.
func lock(ctx context.Context, a access, query func(context.Context) (found, error), insert func(context.Context) error) (found, error) {
	f, inserted, err := tenancy.LockOrInsert(ctx, a == insertFirst, query, insert)
	f.inserted = inserted
	return f, err
}

// Row locks (SELECT … FOR UPDATE / FOR SHARE) are taken on Postgres only.
// SQLite has none and needs none: the store opens its transactions with BEGIN
// IMMEDIATE on a single connection, so they run one at a time. The receiver
// marks the context of each apply with whether to lock.
type rowLocksKey struct{}

func withRowLocks(ctx context.Context, on bool) context.Context {
	return context.WithValue(ctx, rowLocksKey{}, on)
}

func rowLocks(ctx context.Context) bool {
	on, _ := ctx.Value(rowLocksKey{}).(bool)
	return on
}

type lockable[Q any] interface {
	ForUpdate(...entsql.LockOption) Q
	ForShare(...entsql.LockOption) Q
}

func withLock[Q lockable[Q]](ctx context.Context, q Q, a access) Q {
	switch {
	case !rowLocks(ctx):
		return q
	case a == forShare:
		return q.ForShare()
	default:
		return q.ForUpdate()
	}
}

func lockUser(ctx context.Context, tx *ent.Tx, id string, a access, insert func(context.Context) error) (found, error) {
	return lock(ctx, a, func(ctx context.Context) (found, error) {
		u, err := withLock(ctx, tx.User.Query().Where(user.ID(id)), a).Only(ctx)
		if err != nil {
			return found{}, err
		}
		return found{deleted: u.DeletedAt != nil, clerkUpdatedAt: u.ClerkUpdatedAt}, nil
	}, insert)
}

func lockOrganization(ctx context.Context, tx *ent.Tx, id string, a access, insert func(context.Context) error) (found, error) {
	return lock(ctx, a, func(ctx context.Context) (found, error) {
		o, err := withLock(ctx, tx.Organization.Query().Where(organization.ID(id)), a).Only(ctx)
		if err != nil {
			return found{}, err
		}
		return found{deleted: o.DeletedAt != nil, clerkUpdatedAt: o.ClerkUpdatedAt}, nil
	}, insert)
}

// applyUser applies user.created or user.updated; userDeleted reports a
// tombstone.
func applyUser(ctx context.Context, tx *ent.Tx, u *clerkUser, a access) (res Result, userDeleted bool, err error) {
	f, err := lockUser(ctx, tx, u.ID, a, func(ctx context.Context) error {
		create := tx.User.Create().SetID(u.ID)
		setUser(create.Mutation(), u)
		return create.OnConflictColumns(user.FieldID).DoNothing().Exec(ctx)
	})
	switch {
	case err != nil:
		return "", false, err
	case f.inserted:
		return ResultApplied, false, nil
	case f.deleted:
		return ResultStale, true, nil
	case !newer(u.UpdatedAt, f.clerkUpdatedAt):
		return ResultStale, false, nil
	}
	update := tx.User.UpdateOneID(u.ID)
	setUser(update.Mutation(), u)
	if err := update.Exec(ctx); err != nil {
		return "", false, err
	}
	return ResultApplied, false, nil
}

// setUser sets what a user.created or user.updated event says of the user:
// the same columns whether the row is inserted or updated.
func setUser(m *ent.UserMutation, u *clerkUser) {
	m.SetEmail(u.primaryEmail())
	m.SetFirstName(u.FirstName)
	m.SetLastName(u.LastName)
	m.SetImageURL(u.ImageURL)
	m.SetCreatedAt(clerkTime(u.CreatedAt))
	m.SetUpdatedAt(clerkTime(u.UpdatedAt))
	m.SetClerkUpdatedAt(u.UpdatedAt)
}

// deleteUser tombstones the user (creating the tombstone if the user was
// never seen), clears their personal data, deletes their personal tenant's
// projects, ends their memberships and erases their personal data from the
// stored events (eraseUserData). Projects they own in organizations stay:
// they belong to the organization.
func deleteUser(ctx context.Context, tx *ent.Tx, id string, now time.Time) (Result, error) {
	f, err := lockUser(ctx, tx, id, forUpdate, func(ctx context.Context) error {
		return tx.User.Create().
			SetID(id).
			SetCreatedAt(now).
			SetUpdatedAt(now).
			SetDeletedAt(now).
			OnConflictColumns(user.FieldID).
			DoNothing().
			Exec(ctx)
	})
	if err != nil {
		return "", err
	}
	if f.live() {
		err := tx.User.UpdateOneID(id).
			SetEmail("").
			SetFirstName("").
			SetLastName("").
			SetImageURL("").
			SetUpdatedAt(now).
			SetDeletedAt(now).
			Exec(ctx)
		if err != nil {
			return "", err
		}
	}
	// The clean-up runs again on a repeated delete: it is cheap, and it
	// catches anything written in the personal tenant since.
	if _, err := tx.Project.Delete().Where(project.TenantID(id)).Exec(ctx); err != nil {
		return "", fmt.Errorf("delete personal projects: %w", err)
	}
	if err := endMemberships(ctx, tx, membership.UserID(id), now); err != nil {
		return "", err
	}
	if err := eraseUserData(ctx, tx, id, now); err != nil {
		return "", err
	}
	return f.deleteResult(), nil
}

// eraseUserData drops the payload of every stored event that holds the
// user's personal data — their own user.* events, this user.deleted
// included, and the memberships' public_user_data — keeping each row's
// svix-id, type, object id and result, so that dedupe and the audit trail
// of what arrived go on working.
//
// The payloads are dropped, not redacted field by field: a Clerk user
// object carries personal data in many places (addresses, phone numbers,
// names, usernames, external and web3 accounts, free-form metadata, the
// request's IP address and user agent), and a list of fields to redact
// would miss whatever Clerk adds next.
//
// The events are found by their user_id, and those stored before that
// column existed by their payload (legacyEventsOf).
//
// Its update runs last in deleteUser, in a statement of its own: under
// READ COMMITTED it sees every event row committed while deleteUser waited
// on its locks. An event about the user still in flight then waits for the
// user row that deleteUser holds, finds the tombstone, and keeps no payload
// either (applyEvent's userDeleted).
func eraseUserData(ctx context.Context, tx *ent.Tx, id string, now time.Time) error {
	legacy, err := legacyEventsOf(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("erase stored events of %s: %w", id, err)
	}
	_, err = tx.WebhookEvent.Update().
		Where(
			webhookevent.Or(webhookevent.UserID(id), webhookevent.IDIn(legacy...)),
			webhookevent.PayloadNotNil(),
		).
		ClearPayload().
		SetErasedAt(now).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("erase stored events of %s: %w", id, err)
	}
	return nil
}

// userDataTypes are the event types whose payload holds the personal data
// of a user (Event.UserID).
var userDataTypes = []string{
	TypeUserCreated, TypeUserUpdated, TypeUserDeleted,
	TypeOrganizationMembershipCreated, TypeOrganizationMembershipUpdated, TypeOrganizationMembershipDeleted,
}

// legacyEventsOf returns the svix-ids of the events about user id stored
// before the user_id column existed: their user_id is "", so eraseUserData
// cannot find them by it. The database narrows them down to those whose
// payload holds the quoted id; DecodeEvent then decides, as it did for the
// events stored since, whom each is about (a membership's payload also
// names the user who created its organization). A payload that no longer
// decodes, and holds the id, is erased all the same. Such rows are gone
// once the retention has passed since the column came.
func legacyEventsOf(ctx context.Context, tx *ent.Tx, id string) ([]string, error) {
	rows, err := tx.WebhookEvent.Query().
		Where(
			webhookevent.UserID(""),
			webhookevent.TypeIn(userDataTypes...),
			webhookevent.PayloadNotNil(),
			payloadHolds([]byte(`"`+id+`"`)),
		).
		Select(webhookevent.FieldID, webhookevent.FieldPayload).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("find events stored without a user id: %w", err)
	}
	var ids []string
	for _, r := range rows {
		if ev, err := DecodeEvent(r.Payload); err != nil || ev.UserID == id {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// payloadHolds is the predicate "the payload holds b", byte for byte. Not
// LIKE: SQLite's LIKE finds nothing in a BLOB, and LIKE's "_" matches any
// character.
func payloadHolds(b []byte) predicate.WebhookEvent {
	return func(s *entsql.Selector) {
		col := s.C(webhookevent.FieldPayload)
		s.Where(entsql.P(func(w *entsql.Builder) {
			if s.Dialect() == dialect.Postgres {
				w.WriteString("position(").Arg(b).WriteString(" IN ").WriteString(col).WriteString(") > 0")
			} else {
				w.WriteString("instr(").WriteString(col).WriteString(", ").Arg(b).WriteString(") > 0")
			}
		}))
	}
}

func applyOrganization(ctx context.Context, tx *ent.Tx, o *clerkOrganization, a access) (Result, error) {
	f, err := lockOrganization(ctx, tx, o.ID, a, func(ctx context.Context) error {
		create := tx.Organization.Create().SetID(o.ID)
		setOrganization(create.Mutation(), o)
		return create.OnConflictColumns(organization.FieldID).DoNothing().Exec(ctx)
	})
	switch {
	case err != nil:
		return "", err
	case f.inserted:
		return ResultApplied, nil
	case f.deleted, !newer(o.UpdatedAt, f.clerkUpdatedAt):
		return ResultStale, nil
	}
	update := tx.Organization.UpdateOneID(o.ID)
	setOrganization(update.Mutation(), o)
	if err := update.Exec(ctx); err != nil {
		return "", err
	}
	return ResultApplied, nil
}

// setOrganization sets what an organization.created or organization.updated
// event says of the organization, whether the row is inserted or updated.
func setOrganization(m *ent.OrganizationMutation, o *clerkOrganization) {
	m.SetName(o.Name)
	m.SetSlug(o.Slug)
	m.SetImageURL(o.ImageURL)
	m.SetCreatedAt(clerkTime(o.CreatedAt))
	m.SetUpdatedAt(clerkTime(o.UpdatedAt))
	m.SetClerkUpdatedAt(o.UpdatedAt)
}

// deleteOrganization tombstones the organization, deletes its projects and
// ends its memberships.
func deleteOrganization(ctx context.Context, tx *ent.Tx, id string, now time.Time) (Result, error) {
	f, err := lockOrganization(ctx, tx, id, forUpdate, func(ctx context.Context) error {
		return tx.Organization.Create().
			SetID(id).
			SetCreatedAt(now).
			SetUpdatedAt(now).
			SetDeletedAt(now).
			OnConflictColumns(organization.FieldID).
			DoNothing().
			Exec(ctx)
	})
	if err != nil {
		return "", err
	}
	if f.live() {
		if err := tx.Organization.UpdateOneID(id).SetUpdatedAt(now).SetDeletedAt(now).Exec(ctx); err != nil {
			return "", err
		}
	}
	if _, err := tx.Project.Delete().Where(project.TenantID(id)).Exec(ctx); err != nil {
		return "", fmt.Errorf("delete organization projects: %w", err)
	}
	if err := endMemberships(ctx, tx, membership.TenantID(id), now); err != nil {
		return "", err
	}
	return f.deleteResult(), nil
}

// endMemberships tombstones the live memberships that match which: those
// of a deleted user or of a deleted organization.
func endMemberships(ctx context.Context, tx *ent.Tx, which predicate.Membership, now time.Time) error {
	_, err := tx.Membership.Update().
		Where(which, membership.DeletedAtIsNil()).
		SetDeletedAt(now).
		SetUpdatedAt(now).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("end memberships: %w", err)
	}
	return nil
}

// lockMembershipParties makes sure the membership's organization and user
// rows exist — inserting stubs (clerk_updated_at 0) from the membership's
// embedded data if they do not, which the organization's and user's own
// events then overwrite — and locks them FOR SHARE, so that an
// organization.deleted or user.deleted cannot commit between the check and
// the membership write. It reports whether each is tombstoned.
func lockMembershipParties(ctx context.Context, tx *ent.Tx, m *clerkMembership, now time.Time) (orgDeleted, userDeleted bool, err error) {
	o := m.Organization
	org, err := lockOrganization(ctx, tx, o.ID, forShare, func(ctx context.Context) error {
		created := now
		if o.CreatedAt > 0 {
			created = clerkTime(o.CreatedAt)
		}
		return tx.Organization.Create().
			SetID(o.ID).
			SetName(o.Name).
			SetSlug(o.Slug).
			SetImageURL(o.ImageURL).
			SetCreatedAt(created).
			SetUpdatedAt(created).
			OnConflictColumns(organization.FieldID).
			DoNothing().
			Exec(ctx)
	})
	if err != nil {
		return false, false, fmt.Errorf("organization: %w", err)
	}
	usr, err := lockMember(ctx, tx, m, now)
	if err != nil {
		return false, false, err
	}
	return org.deleted, usr.deleted, nil
}

// lockMember makes sure the membership's user row exists, inserting a stub
// from public_user_data if it does not, and locks it FOR SHARE.
func lockMember(ctx context.Context, tx *ent.Tx, m *clerkMembership, now time.Time) (found, error) {
	p := m.PublicUserData
	f, err := lockUser(ctx, tx, p.UserID, forShare, func(ctx context.Context) error {
		email := ""
		if looksLikeEmail(p.Identifier) {
			email = p.Identifier
		}
		return tx.User.Create().
			SetID(p.UserID).
			SetEmail(email).
			SetFirstName(p.FirstName).
			SetLastName(p.LastName).
			SetImageURL(p.ImageURL).
			SetCreatedAt(now).
			SetUpdatedAt(now).
			OnConflictColumns(user.FieldID).
			DoNothing().
			Exec(ctx)
	})
	if err != nil {
		return found{}, fmt.Errorf("user: %w", err)
	}
	return f, nil
}

// looksLikeEmail reports whether a membership's public identifier is an
// email address (it may be a phone number or a username).
func looksLikeEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n")
}

func lockMembership(ctx context.Context, tx *ent.Tx, tenantID, id string, a access, insert func(context.Context) error) (found, error) {
	return lock(ctx, a, func(ctx context.Context) (found, error) {
		m, err := withLock(ctx, tx.Membership.Query().Where(membership.TenantID(tenantID), membership.ID(id)), a).Only(ctx)
		if err != nil {
			return found{}, err
		}
		return found{deleted: m.DeletedAt != nil, clerkUpdatedAt: m.ClerkUpdatedAt}, nil
	}, insert)
}

// applyMembership applies organizationMembership.created or .updated;
// userDeleted reports that the member is a tombstone.
func applyMembership(ctx context.Context, tx *ent.Tx, m *clerkMembership, a access, now time.Time) (res Result, userDeleted bool, err error) {
	orgDeleted, userDeleted, err := lockMembershipParties(ctx, tx, m, now)
	if err != nil {
		return "", false, err
	}
	if orgDeleted || userDeleted {
		return ResultStale, userDeleted, nil
	}
	tenantID := m.Organization.ID
	f, err := lockMembership(ctx, tx, tenantID, m.ID, a, func(ctx context.Context) error {
		return createMembership(tx, m).
			OnConflictColumns(membership.FieldTenantID, membership.FieldID).
			DoNothing().
			Exec(ctx)
	})
	switch {
	case err != nil:
		return "", false, err
	case f.inserted:
		return ResultApplied, false, nil
	case f.deleted, !newer(m.UpdatedAt, f.clerkUpdatedAt):
		return ResultStale, false, nil
	}
	update := tx.Membership.UpdateOneID(m.ID).Where(membership.TenantID(tenantID))
	setMembership(update.Mutation(), m)
	if err := update.Exec(ctx); err != nil {
		return "", false, err
	}
	return ResultApplied, false, nil
}

// createMembership is the insert of the membership row an event describes.
func createMembership(tx *ent.Tx, m *clerkMembership) *ent.MembershipCreate {
	create := tx.Membership.Create().
		SetID(m.ID).
		SetTenantID(m.Organization.ID).
		SetUserID(m.PublicUserData.UserID)
	setMembership(create.Mutation(), m)
	return create
}

// setMembership sets what a membership event says of the membership,
// whether the row is inserted or updated. Its organization and user never
// change.
func setMembership(m *ent.MembershipMutation, mem *clerkMembership) {
	m.SetRole(mem.Role)
	m.SetCreatedAt(clerkTime(mem.CreatedAt))
	m.SetUpdatedAt(clerkTime(mem.UpdatedAt))
	m.SetClerkUpdatedAt(mem.UpdatedAt)
}

// deleteMembership tombstones the membership, creating the tombstone when
// the membership was never seen, whatever the order of its events: a
// removed member stays removed. userDeleted reports that the member is a
// tombstone.
func deleteMembership(ctx context.Context, tx *ent.Tx, m *clerkMembership, now time.Time) (res Result, userDeleted bool, err error) {
	tenantID := m.Organization.ID
	f, err := lockMembership(ctx, tx, tenantID, m.ID, forUpdate, func(ctx context.Context) error {
		// The tombstone of a membership never seen is the row the event
		// describes, deleted now.
		return createMembership(tx, m).
			SetUpdatedAt(now).
			SetDeletedAt(now).
			OnConflictColumns(membership.FieldTenantID, membership.FieldID).
			DoNothing().
			Exec(ctx)
	})
	if err == nil && !f.live() {
		// A live membership means a live member (user.deleted ends the
		// memberships under the user's lock); otherwise the member may be
		// gone, and this event's public_user_data is theirs. The lock keeps
		// a user.deleted from committing before this event does (it then
		// erases it); a member never seen gets the stub a membership.created
		// would have made, to hold the lock on.
		var usr found
		usr, err = lockMember(ctx, tx, m, now)
		userDeleted = usr.deleted
	}
	switch {
	case err != nil:
		return "", false, err
	case f.inserted:
		return ResultApplied, userDeleted, nil
	case f.deleted:
		return ResultStale, userDeleted, nil
	}
	err = tx.Membership.UpdateOneID(m.ID).
		Where(membership.TenantID(tenantID)).
		SetUpdatedAt(now).
		SetClerkUpdatedAt(max(m.UpdatedAt, f.clerkUpdatedAt)).
		SetDeletedAt(now).
		Exec(ctx)
	if err != nil {
		return "", false, err
	}
	return ResultApplied, false, nil
}
