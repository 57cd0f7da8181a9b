package derrors_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/go-cmp/cmp"
	"github.com/lib/pq"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	_ "github.com/gatehouse-dev/gatehouse/ent/runtime" // privacy policies
	"github.com/gatehouse-dev/gatehouse/internal/derrors"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"nil", nil, codes.OK, ""},
		{"not found sentinel keeps its safe text", fmt.Errorf("project %s: %w", "prj_1", derrors.ErrNotFound), codes.NotFound, "project prj_1: not found"},
		{"invalid argument sentinel", fmt.Errorf("page_token: %w", derrors.ErrInvalidArgument), codes.InvalidArgument, "page_token: invalid argument"},
		{"permission denied sentinel", derrors.ErrPermissionDenied, codes.PermissionDenied, "permission denied"},
		{"unauthenticated sentinel", fmt.Errorf("token expired: %w", derrors.ErrUnauthenticated), codes.Unauthenticated, "token expired: unauthenticated"},
		{"unavailable sentinel", fmt.Errorf("clerk: %w", derrors.ErrUnavailable), codes.Unavailable, "clerk: unavailable"},
		{"deleted tenant", fmt.Errorf("create project: organization org_x: %w", tenancy.ErrTenantDeleted), codes.FailedPrecondition, "create project: organization org_x: the tenant was deleted and takes no new data"},
		{"status passes through", status.Error(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted, "slow down"},
		{"wrapped status passes through", fmt.Errorf("verify: %w", status.Error(codes.Unauthenticated, "token expired")), codes.Unauthenticated, "token expired"},
		{"canceled", fmt.Errorf("list projects: %w", context.Canceled), codes.Canceled, "context canceled"},
		{"deadline", fmt.Errorf("list projects: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "context deadline exceeded"},
		{"ent not found", fmt.Errorf("get project: %w", &ent.NotFoundError{}), codes.NotFound, "not found"},
		{"privacy denial says nothing more", fmt.Errorf("create project: %w", privacy.Denyf("tenancy: create in another tenant")), codes.PermissionDenied, "permission denied"},
		{"postgres connection failure", fmt.Errorf("query: %w", &pq.Error{Code: "08006", Message: "connection failure"}), codes.Unavailable, "database unavailable"},
		{"postgres too many connections", &pq.Error{Code: "53300"}, codes.Unavailable, "database unavailable"},
		{"postgres shutting down", &pq.Error{Code: "57P01"}, codes.Unavailable, "database unavailable"},
		{"postgres serialization failure", &pq.Error{Code: "40001"}, codes.Aborted, "concurrent update; retry"},
		{"postgres query canceled", &pq.Error{Code: "57014"}, codes.Canceled, "canceled"},
		{"postgres syntax error is internal", &pq.Error{Code: "42601", Message: `syntax error at or near "FROM secrets"`}, codes.Internal, "internal error"},
		{"constraint error is internal", &ent.ConstraintError{}, codes.Internal, "internal error"},
		{"bad connection", fmt.Errorf("exec: %w", driver.ErrBadConn), codes.Unavailable, "database unavailable"},
		{"connection done", sql.ErrConnDone, codes.Unavailable, "database unavailable"},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, codes.Unavailable, "database unavailable"},
		{"dial refused, as lib/pq wraps it", fmt.Errorf("connecting to 127.0.0.1:5432: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), codes.Unavailable, "database unavailable"},
		{"postgres admin shutdown, as lib/pq reports a FATAL error", fmt.Errorf("commit: %w", driver.ErrBadConn), codes.Unavailable, "database unavailable"},
		{"unknown error hides its text", errors.New("pq: relation \"projects\" does not exist at SELECT * FROM projects"), codes.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := derrors.Status(tt.err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("Status(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// TestUnavailableCarriesRetryInfo: a database outage tells the client when
// to retry, as the auth path does, so that every UNAVAILABLE a client sees
// from Gatehouse can be retried the same way.
func TestUnavailableCarriesRetryInfo(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("list projects: %w", &pq.Error{Code: "57P01"}),
		fmt.Errorf("create project: %w", driver.ErrBadConn),
		fmt.Errorf("clerk: %w", derrors.ErrUnavailable),
	} {
		st := derrors.Status(err)
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if st.Code() != codes.Unavailable || retry == nil || retry.RetryDelay.AsDuration() <= 0 {
			t.Errorf("Status(%v) = %v with details %v, want UNAVAILABLE with RetryInfo", err, st.Code(), st.Details())
		}
	}
}

func TestStatusBadRequestDetails(t *testing.T) {
	var br derrors.BadRequest
	if br.Err() != nil {
		t.Fatalf("empty BadRequest.Err() = %v, want nil", br.Err())
	}
	br.Add("name", "must not be empty")
	br.Add("description", "must be at most 2000 characters")
	err := fmt.Errorf("create project: %w", br.Err())
	if !errors.Is(err, derrors.ErrInvalidArgument) {
		t.Errorf("errors.Is(%v, ErrInvalidArgument) = false", err)
	}

	st := derrors.Status(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument", st.Code())
	}
	if want := "invalid argument: name: must not be empty; description: must be at most 2000 characters"; st.Message() != want {
		t.Errorf("message = %q, want %q", st.Message(), want)
	}
	want := []any{&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "name", Description: "must not be empty"},
		{Field: "description", Description: "must be at most 2000 characters"},
	}}}
	if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
}

// TestStatusOfUnreachablePostgres follows a real connection failure through
// lib/pq and ent.
func TestStatusOfUnreachablePostgres(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	db, err := sql.Open("postgres", "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client := ent.NewClient(ent.Driver(entsql.OpenDB("postgres", db)))
	_, err = client.User.Query().All(viewer.NewSystemContext(context.Background()))
	if err == nil {
		t.Fatal("query of an unreachable database succeeded")
	}
	if st := derrors.Status(err); st.Code() != codes.Unavailable || strings.Contains(st.Message(), addr) {
		t.Errorf("Status(%v) = %v %q, want Unavailable without the address", err, st.Code(), st.Message())
	}
}

// hiddenCause is the cause err withholds from the client, as the per-call
// log line finds it; "" if it withholds none.
func hiddenCause(t *testing.T, err error) string {
	t.Helper()
	var w *derrors.WithheldError
	if !errors.As(err, &w) {
		return ""
	}
	if w.HiddenCause() == nil {
		t.Fatal("a WithheldError without a cause")
	}
	return w.HiddenCause().Error()
}

func TestUnaryServerInterceptor(t *testing.T) {
	const method = "/gatehouse.v1.ProjectService/GetProject"
	user := viewer.NewContext(context.Background(), &viewer.Principal{Kind: viewer.KindUser, Subject: "user_1", TenantID: "org_1"})
	tests := []struct {
		name      string
		ctx       context.Context
		err       error
		wantCode  codes.Code
		wantMsg   string
		wantCause string // withheld from the client, for the log
	}{
		{
			name: "success", ctx: user, err: nil, wantCode: codes.OK,
		},
		{
			name: "domain error: nothing withheld", ctx: user,
			err:      fmt.Errorf("project: %w", derrors.ErrNotFound),
			wantCode: codes.NotFound, wantMsg: "project: not found",
		},
		{
			name: "unknown error: its detail withheld", ctx: user,
			err:      errors.New(`pq: column "secret" does not exist`),
			wantCode: codes.Internal, wantMsg: "internal error",
			wantCause: `pq: column "secret" does not exist`,
		},
		{
			name: "denial with a viewer", ctx: user,
			err:      privacy.Denyf("tenancy: create in another tenant"),
			wantCode: codes.PermissionDenied, wantMsg: "permission denied",
			wantCause: "tenancy: create in another tenant: ent/privacy: deny rule",
		},
		{
			name: "denial without a viewer is a server bug", ctx: context.Background(),
			err:      privacy.Denyf("tenancy: no viewer in context"),
			wantCode: codes.Internal, wantMsg: "internal error",
			wantCause: "derrors: the store denied a context without a viewer\ntenancy: no viewer in context: ent/privacy: deny rule",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			intercept := derrors.UnaryServerInterceptor()
			resp, err := intercept(tt.ctx, "req", &grpc.UnaryServerInfo{FullMethod: method},
				func(ctx context.Context, req any) (any, error) {
					if tt.err != nil {
						return "partial", tt.err
					}
					return "resp", nil
				})
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("error %v is not a status", err)
			}
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantCause != "" && err.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want only the status message %q", err.Error(), tt.wantMsg)
			}
			if wantResp := map[bool]any{true: "resp", false: nil}[tt.err == nil]; resp != wantResp {
				t.Errorf("resp = %v, want %v", resp, wantResp)
			}
			if got := hiddenCause(t, err); got != tt.wantCause {
				t.Errorf("withheld cause %q, want %q", got, tt.wantCause)
			}
		})
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	intercept := derrors.StreamServerInterceptor()
	info := &grpc.StreamServerInfo{FullMethod: "/x.v1.S/Watch"}

	err := intercept(nil, fakeStream{ctx: context.Background()}, info, func(any, grpc.ServerStream) error {
		return fmt.Errorf("watch: %w", errors.New("SELECT failed"))
	})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("stream error = %v %q, want Internal %q", st.Code(), st.Message(), "internal error")
	}
	if got := hiddenCause(t, err); got != "watch: SELECT failed" {
		t.Errorf("withheld cause %q, want the handler's error", got)
	}
	err = intercept(nil, fakeStream{ctx: context.Background()}, info, func(any, grpc.ServerStream) error { return nil })
	if err != nil {
		t.Errorf("successful stream returned %v", err)
	}
}

// TestConvertedErrorsKeepTheirCause: an error that already went through an
// interceptor (nested servers) passes through a second one unchanged, its
// cause still there for the log.
func TestConvertedErrorsKeepTheirCause(t *testing.T) {
	intercept := derrors.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/x.v1.S/M"}
	inner := func(ctx context.Context, req any) (any, error) {
		return intercept(ctx, req, info, func(context.Context, any) (any, error) {
			return nil, errors.New("boom")
		})
	}
	_, err := intercept(context.Background(), nil, info, inner)
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("status = %v %q, want Internal %q", st.Code(), st.Message(), "internal error")
	}
	if got := hiddenCause(t, err); got != "boom" {
		t.Errorf("withheld cause %q, want boom", got)
	}
}
