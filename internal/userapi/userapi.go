// Package userapi implements gatehouse.v1.UserService: the caller, and the
// users who share the caller's tenant, as mirrored from Clerk.
//
// Which users a caller may see is decided by the store (tenancy.UserPolicy:
// the caller, and live members of the active organization, as the webhooks
// recorded them); the handlers add only that deleted users (tombstones) are
// never shown. Anyone else is NOT_FOUND.
//
// Handlers return domain errors (see internal/derrors); install
// derrors.UnaryServerInterceptor to turn them into gRPC statuses.
package userapi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/user"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// pageQuery names ListUsers' queries in page tokens.
const pageQuery = "users"

// LiveUsers hands GetMe the caller's row when the auth layer has just
// vouched for it (internal/provision keeps it for a few seconds), saving a
// database read per call. The rows are shared and never modified: a user
// read again, or changed, is a new row.
type LiveUsers interface {
	LiveUser(id string) (*ent.User, bool)
}

// Service implements gatehousev1.UserServiceServer.
type Service struct {
	gatehousev1.UnimplementedUserServiceServer
	client *ent.Client
	tokens *pagetoken.Codec
	live   LiveUsers
	built  builtUsers
}

var _ gatehousev1.UserServiceServer = (*Service)(nil)

// New returns the UserService over client, which must be the
// tenancy-enforcing client of internal/store; tokens signs ListUsers' page
// tokens; live, if not nil, serves GetMe the rows auth has just vouched for.
func New(client *ent.Client, tokens *pagetoken.Codec, live LiveUsers) *Service {
	return &Service{client: client, tokens: tokens, live: live, built: builtUsers{rows: live, m: make(map[string]builtUser)}}
}

var errUserNotFound = fmt.Errorf("user %w", derrors.ErrNotFound)

// GetMe returns the calling user and the session it acts in. The auth layer
// provisions the user on first sight, so a missing row is NOT_FOUND only if
// that did not happen; a deleted user is UNAUTHENTICATED (its session may
// outlive it briefly). The session reports the credential the call was
// made with. Machines and organizations have no user: PERMISSION_DENIED.
func (s *Service) GetMe(ctx context.Context, _ *gatehousev1.GetMeRequest) (*gatehousev1.GetMeResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if p.Kind != viewer.KindUser {
		return nil, fmt.Errorf("GetMe is for signed-in users: %w", derrors.ErrPermissionDenied)
	}
	u, live, err := s.me(ctx, p.Subject)
	switch {
	case ent.IsNotFound(err):
		return nil, errUserNotFound
	case err != nil:
		return nil, fmt.Errorf("get user %s: %w", p.Subject, err)
	case u.DeletedAt != nil:
		return nil, fmt.Errorf("the user was deleted: %w", derrors.ErrUnauthenticated)
	}
	msg := s.built.of(u, live)
	// The response shares msg, and the permissions of a cached principal
	// (already sorted and deduplicated, see viewer.Principal), with other
	// calls: a response is only ever marshalled, never modified.
	return &gatehousev1.GetMeResponse{
		User: msg,
		Session: &gatehousev1.Session{
			TenantId:         p.TenantID,
			OrganizationId:   p.OrgID,
			OrganizationRole: p.OrgRole,
			Permissions:      p.Permissions,
			Credential:       p.Credential.String(),
		},
	}, nil
}

// me returns user id's row, and whether it is a shared live row rather than
// one just read.
func (s *Service) me(ctx context.Context, id string) (*ent.User, bool, error) {
	if s.live != nil {
		if u, ok := s.live.LiveUser(id); ok {
			return u, true, nil
		}
	}
	u, err := s.client.User.Get(ctx, id)
	return u, false, err
}

var _ invalidation.Cache = (*Service)(nil)

// Invalidate drops the User message kept for the user key names
// (invalidation.User), as the provisioner drops the row: subscribed to the
// same changes, after the provisioner, a deleted user's details do not stay
// in memory. Other keys are ignored.
func (s *Service) Invalidate(key invalidation.Key) {
	if id, ok := key.UserID(); ok {
		s.built.mu.Lock()
		defer s.built.mu.Unlock()
		delete(s.built.m, id)
	}
}

// InvalidateAll drops every User message kept.
func (s *Service) InvalidateAll() {
	s.built.mu.Lock()
	defer s.built.mu.Unlock()
	clear(s.built.m)
}

// maxBuiltUsers bounds builtUsers: about 0.5 KB each.
const maxBuiltUsers = 10_000

// builtUsers keeps the User message built from each live row GetMe answered
// with, so that a signed-in user calling again and again has it built (and
// its strings and timestamps allocated) once per row rather than once per
// call. A message is only used for the same row (the same pointer): a user
// read again or changed is a new row, hence a new message. Entries go with
// the invalidations that make the provisioner drop its rows (Invalidate),
// and a row is only kept while it is still live, so a deletion racing a
// call cannot leave the deleted user's details here. When full it starts
// over, so many thousands of distinct callers cost what they would without
// it.
type builtUsers struct {
	rows LiveUsers // the live rows, nil if none are
	mu   sync.Mutex
	m    map[string]builtUser
}

type builtUser struct {
	row *ent.User
	msg *gatehousev1.User
}

// of returns the message of row u: the one built before if live, a new one
// otherwise (a row just read is not remembered: it is not shared, and
// another read will not return the same pointer). The message is shared:
// callers must not modify it.
//
// A new live row is remembered only if b.rows still has it live: an
// invalidation between the caller's LiveUser and here has already run
// Invalidate (the provisioner drops the row first, then this), and would
// otherwise be undone.
func (b *builtUsers) of(u *ent.User, live bool) *gatehousev1.User {
	if !live {
		return toProto(u)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[u.ID]; ok && e.row == u {
		return e.msg
	}
	msg := toProto(u)
	if still, ok := b.rows.LiveUser(u.ID); !ok || still != u {
		return msg
	}
	if len(b.m) >= maxBuiltUsers {
		clear(b.m)
	}
	b.m[u.ID] = builtUser{row: u, msg: msg}
	return msg
}

// GetUser returns a live user who shares the caller's tenant: the caller, or
// a member of the active organization. Anyone else, and any id that is not a
// user id, is NOT_FOUND; an empty id is INVALID_ARGUMENT.
func (s *Service) GetUser(ctx context.Context, req *gatehousev1.GetUserRequest) (*gatehousev1.GetUserResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, derrors.InvalidArgument("id", "required")
	}
	if !viewer.ValidUserID(id) { // anything else is NOT_FOUND without a query
		return nil, errUserNotFound
	}
	u, err := s.client.User.Query().Where(user.ID(id), user.DeletedAtIsNil()).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, errUserNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get user %s: %w", id, err)
	}
	return &gatehousev1.GetUserResponse{User: toProto(u)}, nil
}

// ListUsers returns a page of the live users who share the caller's tenant,
// ordered by id: the members of the active organization, or in a personal
// tenant just the caller. A negative page_size, or a page_token not issued
// for this tenant's ListUsers, is INVALID_ARGUMENT.
func (s *Service) ListUsers(ctx context.Context, req *gatehousev1.ListUsersRequest) (*gatehousev1.ListUsersResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pagetoken.Size(req.GetPageSize())
	if err != nil {
		return nil, derrors.InvalidArgument("page_size", err.Error())
	}
	q := s.client.User.Query().
		Where(user.DeletedAtIsNil()).
		Order(ent.Asc(user.FieldID)).
		Limit(size + 1)
	if token := req.GetPageToken(); token != "" {
		cur, err := s.tokens.Decode(token, p.TenantID, pageQuery)
		if err != nil || cur.ID == "" {
			return nil, derrors.InvalidArgument("page_token", "not a page token of this query and tenant")
		}
		q.Where(user.IDGT(cur.ID))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	resp := &gatehousev1.ListUsersResponse{}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = s.tokens.Encode(p.TenantID, pageQuery, pagetoken.Cursor{ID: rows[size-1].ID})
	}
	for _, u := range rows {
		resp.Users = append(resp.Users, toProto(u))
	}
	return resp, nil
}

func toProto(u *ent.User) *gatehousev1.User {
	return &gatehousev1.User{
		Id:         u.ID,
		Email:      u.Email,
		FirstName:  u.FirstName,
		LastName:   u.LastName,
		ImageUrl:   u.ImageURL,
		CreateTime: timestamppb.New(u.CreatedAt),
		UpdateTime: timestamppb.New(u.UpdatedAt),
	}
}

func principal(ctx context.Context) (*viewer.Principal, error) {
	p, ok := viewer.FromContext(ctx)
	if !ok {
		return nil, errors.New("userapi: no principal in context")
	}
	return p, nil
}
