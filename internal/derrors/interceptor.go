package derrors

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// UnaryServerInterceptor returns an interceptor that turns a handler's error
// into its Status. It logs nothing: an error whose detail the client is not
// shown (INTERNAL and the like) comes back as a *WithheldError, whose cause
// the per-call log line records, once (internal/server).
//
// Install it inside the auth interceptor, so that it sees the principal.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, convert(ctx, err)
		}
		return resp, nil
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming RPCs.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return convert(ss.Context(), err)
		}
		return nil
	}
}

// WithheldError is a failure whose detail the client is not shown: the
// client sees Status, the server's log the cause. It is what the
// interceptors return for such an error, and what they pass on unchanged
// if a handler returns one (nested servers).
type WithheldError struct {
	status *status.Status
	cause  error
}

// Error is the status's message, all the client sees.
func (e *WithheldError) Error() string { return e.status.Message() }

// GRPCStatus is the status the client sees.
func (e *WithheldError) GRPCStatus() *status.Status { return e.status }

// Unwrap returns the cause.
func (e *WithheldError) Unwrap() error { return e.cause }

// HiddenCause returns the cause, for the log.
func (e *WithheldError) HiddenCause() error { return e.cause }

func convert(ctx context.Context, err error) error {
	if w := (*WithheldError)(nil); errors.As(err, &w) {
		return w
	}
	if _, ok := viewer.FromContext(ctx); !ok && errors.Is(err, privacy.Deny) {
		err = errors.Join(errNoViewer, err)
	}
	v := classify(err)
	if v.withheld {
		return &WithheldError{status: v.status, cause: err}
	}
	return v.status.Err()
}
