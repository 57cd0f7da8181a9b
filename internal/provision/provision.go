// Package provision creates a user locally the first time a valid session
// names them — the sign-up race in which a session token arrives before
// Clerk's user.created webhook has mirrored the user.
//
// A Provisioner is the auth package's Provisioner: after a session token is
// verified it makes sure the users row exists and is not a tombstone. A
// missing user is fetched from Clerk's Backend API (one request per user id
// however many calls race) and inserted so that a concurrent webhook insert,
// or a tombstone, always wins. Without a Backend API (CLERK_JWT_KEY only) the
// row is created from the token's subject alone, for the webhooks to fill in.
//
// Refusals are this package's sentinel errors (ErrDeletedUser, ErrUnknownUser,
// ErrClerkUnavailable, …); the auth package chooses the status each one
// shows the caller.
package provision

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/membership"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// UserSource fetches a user from Clerk; *clerk.Client implements it. User
// returns clerk.ErrNotFound for a user Clerk does not know and
// clerk.ErrUnavailable when Clerk cannot answer now.
type UserSource interface {
	User(ctx context.Context, id string) (*clerk.User, error)
}

var _ UserSource = (*clerk.Client)(nil)

// The refusals of EnsureUser. Any other error it returns is a failure of the
// store, or of Clerk's answer, that the caller can do nothing about.
var (
	// ErrBadSubject: the principal's subject is not a Clerk user id.
	ErrBadSubject = errors.New("provision: subject is not a user id")
	// ErrUnknownUser: Clerk does not know the user.
	ErrUnknownUser = errors.New("provision: user unknown to Clerk")
	// ErrDeletedUser: the user was deleted (the row is a tombstone), and is
	// not brought back.
	ErrDeletedUser = errors.New("provision: user deleted")
	// ErrClerkUnavailable: Clerk's answer could not be had. When Clerk could
	// not answer, the error is an *UnavailableError saying when to retry;
	// when the caller's context ended first, it wraps the context's error
	// too.
	ErrClerkUnavailable = errors.New("provision: Clerk unavailable")
)

// UnavailableError is ErrClerkUnavailable when Clerk could not answer: it was
// unreachable, failed, limited the rate, or did not answer within the fetch
// timeout.
type UnavailableError struct {
	// RetryAfter is the delay to suggest before trying again
	// (Options.RetryAfter).
	RetryAfter time.Duration
	// Err is the cause.
	Err error
}

func (e *UnavailableError) Error() string {
	return ErrClerkUnavailable.Error() + ": " + e.Err.Error()
}

// Unwrap returns ErrClerkUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrClerkUnavailable, e.Err} }

const (
	defaultLiveTTL    = 5 * time.Second
	defaultRetryAfter = time.Second
	defaultMaxKnown   = 100_000
	fetchTimeout      = 10 * time.Second
)

// Options tunes a Provisioner. The zero value is ready for production.
type Options struct {
	// LiveTTL is how long a user found live is not looked up again; a
	// tombstone written meanwhile is noticed once it passes. Default 5 s.
	LiveTTL time.Duration
	// RetryAfter is the delay suggested (google.rpc.RetryInfo) when Clerk
	// is unavailable; default 1 s.
	RetryAfter time.Duration
	// MaxKnown bounds the live-user cache; default 100,000.
	MaxKnown int
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// Provisioner ensures the users a session names exist locally. It is safe
// for concurrent use.
type Provisioner struct {
	client     *ent.Client
	users      UserSource
	liveTTL    time.Duration
	retryAfter time.Duration
	maxKnown   int
	now        func() time.Time
	flight     singleflight.Group

	mu    sync.Mutex
	known map[string]knownUser
	// lookups holds the user ids whose rows are being read, so that a
	// look-up that an invalidation of its user overtook does not cache
	// the row it read, which may be the very one the change replaced. An
	// entry lives only while look-ups of its id are in flight.
	lookups map[string]*lookup
}

// lookup counts the look-ups of one user id in flight, and the
// invalidations of that user since the first of them began.
type lookup struct {
	n   int    // look-ups in flight
	gen uint64 // bumped by each invalidation of the user
}

// knownUser is a user row found live, trusted until a time.
type knownUser struct {
	row   *ent.User
	until time.Time
}

// New returns a Provisioner writing through client. users may be nil when
// there is no Backend API: new users are then created from their id alone.
func New(client *ent.Client, users UserSource, opts Options) *Provisioner {
	if opts.LiveTTL <= 0 {
		opts.LiveTTL = defaultLiveTTL
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = defaultRetryAfter
	}
	if opts.MaxKnown <= 0 {
		opts.MaxKnown = defaultMaxKnown
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Provisioner{
		client:     client,
		users:      users,
		liveTTL:    opts.LiveTTL,
		retryAfter: opts.RetryAfter,
		maxKnown:   opts.MaxKnown,
		now:        opts.Now,
		known:      make(map[string]knownUser),
		lookups:    make(map[string]*lookup),
	}
}

// EnsureUser makes sure the user p names exists and is not deleted. It does
// nothing for principals other than users.
//
// It returns ErrDeletedUser for a tombstoned user (never resurrected),
// ErrUnknownUser for one Clerk does not know, ErrBadSubject for a subject
// that is not a user id, and ErrClerkUnavailable when Clerk cannot answer
// (an *UnavailableError) or ctx ends first (wrapping ctx's error); any other
// error is a failure to hide from the caller.
func (pv *Provisioner) EnsureUser(ctx context.Context, p *viewer.Principal) error {
	if p == nil || p.Kind != viewer.KindUser {
		return nil
	}
	id := p.Subject
	if !viewer.ValidUserID(id) {
		return ErrBadSubject
	}
	if _, ok := pv.LiveUser(id); ok {
		return nil
	}
	// The work goes on without the caller's cancellation (others may share
	// it); the caller waits only as long as its context allows.
	work := context.WithoutCancel(ctx)
	ch := pv.flight.DoChan(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(work, fetchTimeout)
		defer cancel()
		return nil, pv.ensure(ctx, id)
	})
	select {
	case <-ctx.Done():
		return fmt.Errorf("provision user %s: %w: %w", id, ErrClerkUnavailable, ctx.Err())
	case res := <-ch:
		return res.Err
	}
}

// ensure runs once per user id at a time.
func (pv *Provisioner) ensure(ctx context.Context, id string) error {
	sys := viewer.NewSystemContext(ctx)
	if done, err := pv.check(sys, id); done || err != nil {
		return err
	}

	create := pv.client.User.Create().SetID(id)
	if pv.users == nil {
		now := pv.now()
		create.SetCreatedAt(now).SetUpdatedAt(now)
	} else {
		u, err := pv.users.User(ctx, id)
		switch {
		case errors.Is(err, clerk.ErrNotFound):
			return fmt.Errorf("provision user %s: %w: %w", id, ErrUnknownUser, err)
		case errors.Is(err, clerk.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
			return &UnavailableError{RetryAfter: pv.retryAfter, Err: err}
		case err != nil:
			return fmt.Errorf("provision user %s: %w", id, err)
		}
		create.
			SetEmail(u.Email).
			SetFirstName(u.FirstName).
			SetLastName(u.LastName).
			SetImageURL(u.ImageURL).
			SetCreatedAt(u.CreatedAt).
			SetUpdatedAt(u.UpdatedAt).
			SetClerkUpdatedAt(u.UpdatedAt.UnixMilli())
	}
	// A row written meanwhile — by a webhook, or a tombstone — wins. ent
	// reads the inserted id back, so a conflict that inserted nothing is
	// sql.ErrNoRows.
	err := create.OnConflictColumns(user.FieldID).DoNothing().Exec(sys)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("provision user %s: insert: %w", id, err)
	}
	// Read back: the row that won may be a tombstone.
	if done, err := pv.check(sys, id); done || err != nil {
		return err
	}
	return fmt.Errorf("provision user %s: row missing after insert", id)
}

// check looks the user up: done when the row exists (with an error if it
// is a tombstone), not done when there is no row.
func (pv *Provisioner) check(sys context.Context, id string) (done bool, err error) {
	gen := pv.beginLookup(id)
	u, err := pv.client.User.Get(sys, id)
	pv.endLookup(id, gen, u)
	switch {
	case ent.IsNotFound(err):
		return false, nil
	case err != nil:
		return true, fmt.Errorf("provision user %s: look up: %w", id, err)
	case u.DeletedAt != nil:
		return true, ErrDeletedUser
	}
	return true, nil
}

// beginLookup registers a look-up of user id and returns the generation
// that endLookup compares.
func (pv *Provisioner) beginLookup(id string) uint64 {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	l := pv.lookups[id]
	if l == nil {
		l = &lookup{}
		pv.lookups[id] = l
	}
	l.n++
	return l.gen
}

// endLookup ends a look-up of user id begun at generation gen that read u
// (nil if it read no row). A live row is remembered unless the user was
// invalidated since the look-up began; a tombstone is forgotten.
func (pv *Provisioner) endLookup(id string, gen uint64, u *ent.User) {
	now := pv.now()
	pv.mu.Lock()
	defer pv.mu.Unlock()
	l := pv.lookups[id]
	overtaken := l.gen != gen
	if l.n--; l.n == 0 {
		delete(pv.lookups, id)
	}
	switch {
	case u == nil:
	case u.DeletedAt != nil:
		pv.forget(id)
	case !overtaken:
		pv.remember(u, now)
	}
}

// LiveUser returns the row of user id if EnsureUser found it live within the
// last LiveTTL, so that GetMe need not read again the row auth has just
// vouched for. The row is shared: callers must not modify it. A change made
// through a webhook shows at once on this replica and, through Postgres
// notifications (internal/invalidation), within a second on the others
// (see Invalidate); within LiveTTL if notifications are lost.
func (pv *Provisioner) LiveUser(id string) (*ent.User, bool) {
	now := pv.now()
	pv.mu.Lock()
	k, ok := pv.known[id]
	pv.mu.Unlock()
	if !ok || !now.Before(k.until) {
		return nil, false
	}
	return k.row, true
}

var _ invalidation.Cache = (*Provisioner)(nil)

// Invalidate forgets the user key names (invalidation.User): the next call
// looks the user up again, and a look-up in flight does not cache what it
// read. It is called when a user event is applied, here or on another
// replica. Other keys are ignored.
func (pv *Provisioner) Invalidate(key invalidation.Key) {
	if id, ok := key.UserID(); ok {
		pv.mu.Lock()
		defer pv.mu.Unlock()
		pv.forget(id)
	}
}

// InvalidateAll forgets every user, and no look-up in flight caches what it
// read: notifications of changes may have been lost.
func (pv *Provisioner) InvalidateAll() {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	clear(pv.known)
	for _, l := range pv.lookups {
		l.gen++
	}
}

// forget drops user id, and keeps the look-ups of id in flight from caching
// it. pv.mu must be held.
func (pv *Provisioner) forget(id string) {
	delete(pv.known, id)
	if l := pv.lookups[id]; l != nil {
		l.gen++
	}
}

// remember caches u as live until now+LiveTTL, making room if the cache is
// full. pv.mu must be held.
func (pv *Provisioner) remember(u *ent.User, now time.Time) {
	if len(pv.known) >= pv.maxKnown {
		for k, ku := range pv.known {
			if !now.Before(ku.until) {
				delete(pv.known, k)
			}
		}
		for k := range pv.known { // still full: drop arbitrary entries
			if len(pv.known) < pv.maxKnown-pv.maxKnown/8 {
				break
			}
			delete(pv.known, k)
		}
	}
	pv.known[u.ID] = knownUser{row: u, until: now.Add(pv.liveTTL)}
}

// MembershipRole returns userID's role in orgID from the live membership the
// webhooks mirrored, or "" when there is none. It lets auth give a session
// token that names an organization but no role the role Clerk last reported.
func (pv *Provisioner) MembershipRole(ctx context.Context, orgID, userID string) (string, error) {
	m, err := pv.client.Membership.Query().
		Where(membership.TenantID(orgID), membership.UserID(userID), membership.DeletedAtIsNil()).
		Order(ent.Desc(membership.FieldClerkUpdatedAt)).
		First(viewer.NewSystemContext(ctx))
	switch {
	case ent.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("look up the role of %s in %s: %w", userID, orgID, err)
	}
	return m.Role, nil
}
