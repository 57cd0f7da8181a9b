// Package projectapi implements gatehouse.v1.ProjectService: projects owned
// by the caller's tenant.
//
// The handlers do not scope anything by tenant themselves: every query goes
// through the tenancy-enforcing ent client with the request's context, so
// another tenant's project is simply not there (NOT_FOUND). They validate
// requests, pick the owner from the caller, and translate between ent rows
// and proto messages.
//
// Handlers return domain errors (see internal/derrors); install
// derrors.UnaryServerInterceptor to turn them into gRPC statuses.
package projectapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"entgo.io/ent/dialect/sql"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/predicate"
	"github.com/gatehouse-dev/gatehouse/ent/project"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Limits on project fields, in Unicode code points.
const (
	MaxNameLen        = 100
	MaxDescriptionLen = 2000
)

// pageQuery names ListProjects' queries in page tokens.
const pageQuery = "projects"

// Service implements gatehousev1.ProjectServiceServer.
type Service struct {
	gatehousev1.UnimplementedProjectServiceServer
	client *ent.Client
	tokens *pagetoken.Codec
}

var _ gatehousev1.ProjectServiceServer = (*Service)(nil)

// New returns the ProjectService over client, which must be the
// tenancy-enforcing client of internal/store; tokens signs ListProjects'
// page tokens.
func New(client *ent.Client, tokens *pagetoken.Codec) *Service {
	return &Service{client: client, tokens: tokens}
}

// CreateProject creates an active project in the caller's tenant, owned by
// the calling user — or, when an organization calls with its own API key,
// by that key (owner_id ak_…). Invalid name or description: INVALID_ARGUMENT
// with field violations; a machine caller: PERMISSION_DENIED; a tenant whose
// organization or user was deleted: FAILED_PRECONDITION.
func (s *Service) CreateProject(ctx context.Context, req *gatehousev1.CreateProjectRequest) (*gatehousev1.CreateProjectResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	owner, err := ownerOf(p)
	if err != nil {
		return nil, err
	}
	var bad derrors.BadRequest
	name := checkName(&bad, "name", req.GetName())
	checkDescription(&bad, "description", req.GetDescription())
	if err := bad.Err(); err != nil {
		return nil, err
	}
	now := now()
	// Writes run in a transaction of their own: in it, the store checks that
	// the caller's tenant was not deleted (tenancy.ErrTenantDeleted, shown
	// as FAILED_PRECONDITION) and holds that answer until the write commits.
	var row *ent.Project
	err = tenancy.InTx(ctx, s.client, func(tx *ent.Client) (err error) {
		row, err = tx.Project.Create().
			SetOwnerID(owner).
			SetName(name).
			SetDescription(req.GetDescription()).
			SetStatus(project.StatusActive).
			SetCreatedAt(now).
			SetUpdatedAt(now).
			Save(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create project: %w", err)
	}
	return &gatehousev1.CreateProjectResponse{Project: toProto(row)}, nil
}

// ownerOf is who owns what p creates: a user, or the API key an
// organization called with. The access rule already keeps machines out; a
// project needs an owner, so say so here too.
func ownerOf(p *viewer.Principal) (string, error) {
	switch {
	case p.Kind == viewer.KindUser:
		return p.Subject, nil
	case p.Kind == viewer.KindOrganization && p.Credential == viewer.CredentialAPIKey && p.SessionID != "":
		return p.SessionID, nil
	}
	return "", fmt.Errorf("only users and organizations' API keys can create projects: %w", derrors.ErrPermissionDenied)
}

// GetProject returns a project of the caller's tenant; any other id is
// NOT_FOUND, an empty one INVALID_ARGUMENT.
func (s *Service) GetProject(ctx context.Context, req *gatehousev1.GetProjectRequest) (*gatehousev1.GetProjectResponse, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	row, err := s.client.Project.Get(ctx, req.GetId())
	if err != nil {
		return nil, notFound(err)
	}
	return &gatehousev1.GetProjectResponse{Project: toProto(row)}, nil
}

// ListProjects returns a page of the caller's tenant's projects, newest
// first. A negative page_size, or a page_token not issued for this tenant's
// ListProjects, is INVALID_ARGUMENT.
func (s *Service) ListProjects(ctx context.Context, req *gatehousev1.ListProjectsRequest) (*gatehousev1.ListProjectsResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pagetoken.Size(req.GetPageSize())
	if err != nil {
		return nil, derrors.InvalidArgument("page_size", err.Error())
	}
	q := s.client.Project.Query().
		Order(ent.Desc(project.FieldCreatedAt), ent.Desc(project.FieldID)).
		Limit(size + 1)
	if token := req.GetPageToken(); token != "" {
		cur, err := s.tokens.Decode(token, p.TenantID, pageQuery)
		if err != nil || cur.Time.IsZero() {
			return nil, derrors.InvalidArgument("page_token", "not a page token of this query and tenant")
		}
		q.Where(before(cur))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	resp := &gatehousev1.ListProjectsResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[size-1]
		resp.NextPageToken = s.tokens.Encode(p.TenantID, pageQuery, pagetoken.Cursor{Time: last.CreatedAt, ID: last.ID})
	}
	for _, row := range rows {
		resp.Projects = append(resp.Projects, toProto(row))
	}
	return resp, nil
}

// before selects the projects after cur in ListProjects' order: (created_at,
// id) below the cursor's, which the (tenant_id, created_at, id) index serves.
func before(cur pagetoken.Cursor) predicate.Project {
	return func(s *sql.Selector) {
		s.Where(sql.CompositeLT(
			[]string{s.C(project.FieldCreatedAt), s.C(project.FieldID)},
			cur.Time, cur.ID,
		))
	}
}

// UpdateProject sets the fields of project named by update_mask (name,
// description, status). An empty mask, an unknown path, or an invalid value
// is INVALID_ARGUMENT; a project outside the caller's tenant is NOT_FOUND;
// any project of a deleted tenant is FAILED_PRECONDITION.
func (s *Service) UpdateProject(ctx context.Context, req *gatehousev1.UpdateProjectRequest) (*gatehousev1.UpdateProjectResponse, error) {
	in := req.GetProject()
	var bad derrors.BadRequest
	if in == nil {
		bad.Add("project", "required")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		bad.Add("update_mask", "required: name one or more of name, description, status")
	}
	var (
		setName, setDescription, setStatus bool
		name                               string
		status                             project.Status
	)
	for _, path := range paths {
		switch path {
		case "name":
			setName = true
		case "description":
			setDescription = true
		case "status":
			setStatus = true
		default:
			bad.Add("update_mask", fmt.Sprintf("unknown path %q: want name, description or status", truncate(path, 50)))
		}
	}
	if in != nil {
		if in.GetId() == "" {
			bad.Add("project.id", "required")
		}
		if setName {
			name = checkName(&bad, "project.name", in.GetName())
		}
		if setDescription {
			checkDescription(&bad, "project.description", in.GetDescription())
		}
		if setStatus {
			status = checkStatus(&bad, "project.status", in.GetStatus())
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if !validID(in.GetId()) {
		return nil, errProjectNotFound
	}

	// One UPDATE … WHERE id = ? AND tenant_id = ?, then a read of the row:
	// no read-modify-write here.
	var row *ent.Project
	err := tenancy.InTx(ctx, s.client, func(tx *ent.Client) (err error) {
		u := tx.Project.UpdateOneID(in.GetId()).SetUpdatedAt(now())
		if setName {
			u.SetName(name)
		}
		if setDescription {
			u.SetDescription(in.GetDescription())
		}
		if setStatus {
			u.SetStatus(status)
		}
		row, err = u.Save(ctx)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return &gatehousev1.UpdateProjectResponse{Project: toProto(row)}, nil
}

// DeleteProject deletes a project of the caller's tenant; any other id is
// NOT_FOUND, an empty one INVALID_ARGUMENT.
func (s *Service) DeleteProject(ctx context.Context, req *gatehousev1.DeleteProjectRequest) (*gatehousev1.DeleteProjectResponse, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := s.client.Project.DeleteOneID(req.GetId()).Exec(ctx); err != nil {
		return nil, notFound(err)
	}
	return &gatehousev1.DeleteProjectResponse{}, nil
}

var errProjectNotFound = fmt.Errorf("project %w", derrors.ErrNotFound)

// notFound reports a missing row as the domain's NOT_FOUND (whether it does
// not exist or is another tenant's, which the store does not tell apart).
func notFound(err error) error {
	if ent.IsNotFound(err) {
		return errProjectNotFound
	}
	return err
}

// checkID rejects an empty id as INVALID_ARGUMENT and an id that cannot be a
// project's as NOT_FOUND, without a query.
func checkID(field, id string) error {
	if id == "" {
		return derrors.InvalidArgument(field, "required")
	}
	if !validID(id) {
		return errProjectNotFound
	}
	return nil
}

// validID reports whether id has the shape of tenancy.NewProjectID's ids.
func validID(id string) bool {
	rest, ok := strings.CutPrefix(id, "prj_")
	if !ok || rest == "" || len(id) > 40 {
		return false
	}
	for _, c := range []byte(rest) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// checkName returns name trimmed, recording a violation of field if it is
// not 1–MaxNameLen code points without control characters.
func checkName(bad *derrors.BadRequest, field, name string) string {
	if !utf8.ValidString(name) {
		bad.Add(field, "must be valid UTF-8")
		return ""
	}
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		bad.Add(field, "required: must not be empty or only white space")
	case n > MaxNameLen:
		bad.Add(field, fmt.Sprintf("must be at most %d characters, is %d", MaxNameLen, n))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		bad.Add(field, "must not contain control characters")
	}
	return name
}

// checkDescription records a violation of field if description is longer
// than MaxDescriptionLen code points or holds a NUL (which Postgres cannot
// store). Line breaks and tabs are fine.
func checkDescription(bad *derrors.BadRequest, field, description string) {
	switch n := utf8.RuneCountInString(description); {
	case !utf8.ValidString(description):
		bad.Add(field, "must be valid UTF-8")
	case n > MaxDescriptionLen:
		bad.Add(field, fmt.Sprintf("must be at most %d characters, is %d", MaxDescriptionLen, n))
	case strings.IndexByte(description, 0) >= 0:
		bad.Add(field, "must not contain NUL characters")
	}
}

func checkStatus(bad *derrors.BadRequest, field string, s gatehousev1.ProjectStatus) project.Status {
	switch s {
	case gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE:
		return project.StatusActive
	case gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED:
		return project.StatusArchived
	case gatehousev1.ProjectStatus_PROJECT_STATUS_UNSPECIFIED:
		bad.Add(field, "required: PROJECT_STATUS_ACTIVE or PROJECT_STATUS_ARCHIVED")
	default:
		bad.Add(field, fmt.Sprintf("unknown status %d", s))
	}
	return ""
}

func toProto(p *ent.Project) *gatehousev1.Project {
	status := gatehousev1.ProjectStatus_PROJECT_STATUS_UNSPECIFIED
	switch p.Status {
	case project.StatusActive:
		status = gatehousev1.ProjectStatus_PROJECT_STATUS_ACTIVE
	case project.StatusArchived:
		status = gatehousev1.ProjectStatus_PROJECT_STATUS_ARCHIVED
	}
	return &gatehousev1.Project{
		Id:          p.ID,
		TenantId:    p.TenantID,
		OwnerId:     p.OwnerID,
		Name:        p.Name,
		Description: p.Description,
		Status:      status,
		CreateTime:  timestamppb.New(p.CreatedAt),
		UpdateTime:  timestamppb.New(p.UpdatedAt),
	}
}

// now is the time stamped on a write: UTC, at the microsecond precision
// Postgres keeps, so that what a write returns is what a later read does,
// and so that SQLite, which stores times as text, compares them in order.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

func principal(ctx context.Context) (*viewer.Principal, error) {
	p, ok := viewer.FromContext(ctx)
	if !ok {
		return nil, errors.New("projectapi: no principal in context")
	}
	return p, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
