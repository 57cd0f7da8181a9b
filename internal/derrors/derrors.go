// Package derrors defines Gatehouse's domain errors and the one table that
// turns any error into the gRPC status a client sees.
//
// Handlers and the packages below them return plain Go errors: one of the
// sentinels here (wrapped with the operation, as in
// fmt.Errorf("project %s: %w", id, derrors.ErrNotFound)), a *BadRequest
// listing field violations, or whatever the store returned. Status chooses the
// code at the edge; UnaryServerInterceptor and StreamServerInterceptor apply
// it to every RPC, and hand the per-call log line (internal/server) the
// detail of each error whose text the client is not shown (*WithheldError).
//
// What clients see:
//
//   - a sentinel error: its code, and its full message — so wrap sentinels
//     only with text that is safe to show (never SQL, tokens or secrets);
//   - a *BadRequest: INVALID_ARGUMENT with google.rpc.BadRequest details;
//   - a status error (from status.Error, or a downstream gRPC call): as is;
//   - tenancy.ErrTenantDeleted (a write into a tenant Clerk has deleted):
//     FAILED_PRECONDITION, and its full message;
//   - a database outage (store.IsUnavailable) or ErrUnavailable:
//     UNAVAILABLE with google.rpc.RetryInfo;
//   - everything else: a generic message for its code, the detail logged.
package derrors

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/tenancy"
)

// The domain's kinds of failure. Each maps to the gRPC code of the same name.
var (
	// ErrNotFound: the thing does not exist, or belongs to another tenant
	// (the two are never told apart).
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request is malformed, whatever the state of
	// the system. Prefer *BadRequest, which names the fields.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrPermissionDenied: the caller is known but may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: the caller's credentials are missing or invalid.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: a dependency is down; the call may be retried.
	ErrUnavailable = errors.New("unavailable")
)

// errNoViewer marks a store denial of a context that carried no viewer: the
// server was wired wrongly, the caller did nothing wrong.
var errNoViewer = errors.New("derrors: the store denied a context without a viewer")

// FieldViolation is one problem with one request field. Field is the field's
// name as in the proto ("name", "page_token", "project.name" for nested).
type FieldViolation struct {
	Field       string
	Description string
}

// BadRequest is an ErrInvalidArgument that says which fields are wrong.
// errors.Is(err, ErrInvalidArgument) holds for it.
type BadRequest struct {
	Violations []FieldViolation
}

// InvalidArgument returns a *BadRequest with one violation.
func InvalidArgument(field, description string) error {
	return &BadRequest{Violations: []FieldViolation{{field, description}}}
}

// Add records a violation.
func (e *BadRequest) Add(field, description string) {
	e.Violations = append(e.Violations, FieldViolation{field, description})
}

// Err returns e, or nil if it holds no violation, so that a handler can
// collect every problem with a request and then return them together.
func (e *BadRequest) Err() error {
	if e == nil || len(e.Violations) == 0 {
		return nil
	}
	return e
}

// Error lists the violations.
func (e *BadRequest) Error() string {
	var b strings.Builder
	b.WriteString("invalid argument")
	for i, v := range e.Violations {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// Is reports whether target is ErrInvalidArgument.
func (e *BadRequest) Is(target error) bool { return target == ErrInvalidArgument }

// Status returns the status a client should see for err: the code chosen by
// the table below, and a message that never carries SQL, stack or driver
// text. A nil err is OK.
func Status(err error) *status.Status {
	return classify(err).status
}

// verdict is what the table decides about an error: the status to send, and
// whether its detail was withheld from the client (and so must be logged).
type verdict struct {
	status   *status.Status
	withheld bool
}

func generic(c codes.Code, msg string) verdict {
	return verdict{status: status.New(c, msg), withheld: true}
}

// classify is the one table from errors to statuses. Order matters: the
// first matching row wins.
func classify(err error) verdict {
	var (
		br     *BadRequest
		se     interface{ GRPCStatus() *status.Status }
		sqlErr interface{ SQLState() string }
	)
	switch {
	case err == nil:
		return verdict{status: status.New(codes.OK, "")}

	case errors.As(err, &br):
		return verdict{status: badRequestStatus(br)}
	case errors.As(err, &se):
		// A status error, as is. (status.FromError does the same unwrapping,
		// but would also turn every other error into UNKNOWN with its text.)
		if st := se.GRPCStatus(); st != nil {
			return verdict{status: st}
		}
		return generic(codes.Internal, "internal error")

	case errors.Is(err, context.Canceled):
		return verdict{status: status.New(codes.Canceled, context.Canceled.Error())}
	case errors.Is(err, context.DeadlineExceeded):
		return verdict{status: status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error())}

	case errors.Is(err, ErrNotFound):
		return verdict{status: status.New(codes.NotFound, err.Error())}
	case errors.Is(err, ErrInvalidArgument):
		return verdict{status: status.New(codes.InvalidArgument, err.Error())}
	case errors.Is(err, ErrPermissionDenied):
		return verdict{status: status.New(codes.PermissionDenied, err.Error())}
	case errors.Is(err, ErrUnauthenticated):
		return verdict{status: status.New(codes.Unauthenticated, err.Error())}
	case errors.Is(err, ErrUnavailable):
		return verdict{status: withRetryInfo(status.New(codes.Unavailable, err.Error()))}
	case errors.Is(err, tenancy.ErrTenantDeleted):
		// A write into a tenant Clerk has deleted: retrying will not help.
		return verdict{status: status.New(codes.FailedPrecondition, err.Error())}

	case ent.IsNotFound(err):
		// A row filtered out by the tenant policy is indistinguishable from
		// one that does not exist, by design.
		return verdict{status: status.New(codes.NotFound, "not found")}
	case errors.Is(err, errNoViewer):
		return generic(codes.Internal, "internal error")
	case errors.Is(err, privacy.Deny):
		// The store refused a cross-tenant write or a write of mirrored data.
		// Handlers never attempt one for a well-formed request, so say no
		// more than that.
		return generic(codes.PermissionDenied, "permission denied")

	case store.IsUnavailable(err):
		return unavailable()
	case errors.As(err, &sqlErr):
		switch sqlErr.SQLState() {
		case "40001", "40P01": // serialization failure, deadlock
			return generic(codes.Aborted, "concurrent update; retry")
		case "57014": // query canceled: the caller went away
			return verdict{status: status.New(codes.Canceled, "canceled")}
		}
		return generic(codes.Internal, "internal error")
	}
	return generic(codes.Internal, "internal error")
}

// unavailable is the verdict on a database outage (store.IsUnavailable):
// UNAVAILABLE with RetryInfo, so that clients retry — the generated clients'
// service config retries UNAVAILABLE with backoff — and the cause logged.
func unavailable() verdict {
	v := generic(codes.Unavailable, "database unavailable")
	v.status = withRetryInfo(v.status)
	return v
}

// withRetryInfo adds google.rpc.RetryInfo suggesting store.RetryAfter.
func withRetryInfo(st *status.Status) *status.Status {
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(store.RetryAfter)}); err == nil {
		return withInfo
	}
	return st
}

func badRequestStatus(br *BadRequest) *status.Status {
	st := status.New(codes.InvalidArgument, br.Error())
	details := &errdetails.BadRequest{}
	for _, v := range br.Violations {
		details.FieldViolations = append(details.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
		})
	}
	if withDetails, err := st.WithDetails(details); err == nil {
		return withDetails
	}
	return st
}
