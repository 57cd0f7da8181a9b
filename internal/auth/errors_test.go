package auth

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/clerk"
	"github.com/gatehouse-dev/gatehouse/internal/provision"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// TestErrorOf pins the table from causes to what the caller sees, row by row,
// with causes shaped as the producers wrap them.
func TestErrorOf(t *testing.T) {
	unavailable := fmt.Errorf("clerk: fetch: %w: %w", clerk.ErrUnavailable, errors.New("503"))
	timedOut := fmt.Errorf("clerk: fetch: %w: %w", clerk.ErrUnavailable, context.DeadlineExceeded)
	tests := []struct {
		name       string
		err        error
		code       codes.Code
		reason     string
		retryAfter time.Duration
		cause      bool // the *Error keeps a cause for logs
	}{
		{"an *Error as it is", permissionDenied(ReasonMissingPermission), codes.PermissionDenied, ReasonMissingPermission, 0, false},
		{"a wrapped *Error", fmt.Errorf("x: %w", invalidArgument(ReasonBadTenant)), codes.InvalidArgument, ReasonBadTenant, 0, false},

		{"unknown key", fmt.Errorf("%w: %w", errKeySource, clerk.ErrUnknownKey), codes.Unauthenticated, ReasonUnknownKey, 0, true},
		{"keys: caller's deadline", fmt.Errorf("%w: %w", errKeySource, context.DeadlineExceeded), codes.DeadlineExceeded, ReasonKeysUnavailable, 0, true},
		{"keys: caller canceled", fmt.Errorf("%w: %w", errKeySource, context.Canceled), codes.Canceled, ReasonKeysUnavailable, 0, true},
		{"keys: Clerk unavailable", fmt.Errorf("%w: %w", errKeySource, unavailable), codes.Unavailable, ReasonKeysUnavailable, time.Second, true},
		{"keys: the fetch ran out of its own time", fmt.Errorf("%w: %w", errKeySource, timedOut), codes.Unavailable, ReasonKeysUnavailable, time.Second, true},
		{"keys: anything else", fmt.Errorf("%w: %w", errKeySource, errors.New("bad secret key")), codes.Internal, ReasonInternal, 0, true},

		{"credential revoked", fmt.Errorf("%w: %w", errVerify, fmt.Errorf("clerk: verify: %w", clerk.ErrTokenRevoked)), codes.Unauthenticated, ReasonRevoked, 0, true},
		{"credential expired", fmt.Errorf("%w: %w", errVerify, fmt.Errorf("clerk: verify: %w", clerk.ErrTokenExpired)), codes.Unauthenticated, ReasonExpired, 0, true},
		{"credential refused (4xx)", fmt.Errorf("%w: %w", errVerify, fmt.Errorf("clerk: verify: status 404: %w", clerk.ErrInvalidToken)), codes.Unauthenticated, ReasonRejected, 0, true},
		{"verify: Clerk unavailable", fmt.Errorf("%w: %w", errVerify, unavailable), codes.Unavailable, ReasonClerkUnavailable, time.Second, true},
		{"verify: the request timed out", fmt.Errorf("%w: %w", errVerify, timedOut), codes.Unavailable, ReasonClerkUnavailable, time.Second, true},
		{"verify: bare deadline", fmt.Errorf("%w: %w", errVerify, context.DeadlineExceeded), codes.Unavailable, ReasonClerkUnavailable, time.Second, true},
		{"verify: the secret key refused", fmt.Errorf("%w: %w", errVerify, errors.New("clerk: verify API key: the secret key was refused: status 401")), codes.Internal, ReasonInternal, 0, true},
		{"verify: anything else", fmt.Errorf("%w: %w", errVerify, errors.New("decode")), codes.Internal, ReasonInternal, 0, true},
		{"Clerk: caller's deadline", fmt.Errorf("%w: %w", errClerkWait, context.DeadlineExceeded), codes.DeadlineExceeded, ReasonClerkUnavailable, 0, true},
		{"Clerk: caller canceled", fmt.Errorf("%w: %w", errClerkWait, context.Canceled), codes.Canceled, ReasonClerkUnavailable, 0, true},

		{"provision: bad subject", provision.ErrBadSubject, codes.Unauthenticated, ReasonBadSubject, 0, true},
		{"provision: unknown user", fmt.Errorf("provision user user_a: %w: %w", provision.ErrUnknownUser, clerk.ErrNotFound), codes.Unauthenticated, ReasonUnknownUser, 0, true},
		{"provision: deleted user", provision.ErrDeletedUser, codes.Unauthenticated, ReasonDeletedUser, 0, true},
		{"provision: Clerk unavailable", &provision.UnavailableError{RetryAfter: 3 * time.Second, Err: unavailable}, codes.Unavailable, ReasonClerkUnavailable, 3 * time.Second, true},
		{"provision: the fetch timed out", &provision.UnavailableError{RetryAfter: time.Second, Err: timedOut}, codes.Unavailable, ReasonClerkUnavailable, time.Second, true},
		{"provision: caller's deadline", fmt.Errorf("provision user user_a: %w: %w", provision.ErrClerkUnavailable, context.DeadlineExceeded), codes.DeadlineExceeded, ReasonClerkUnavailable, 0, true},
		{"provision: caller canceled", fmt.Errorf("provision user user_a: %w: %w", provision.ErrClerkUnavailable, context.Canceled), codes.Canceled, ReasonClerkUnavailable, 0, true},
		{"provision: store failure", fmt.Errorf("provision user user_a: look up: %w", context.DeadlineExceeded), codes.Internal, ReasonInternal, 0, true},
		{"provision: database unavailable", fmt.Errorf("provision user user_a: look up: %w", driver.ErrBadConn), codes.Unavailable, ReasonStoreUnavailable, store.RetryAfter, true},
		{"role: database unavailable", fmt.Errorf("look up the role of user_a in org_a: %w", &pq.Error{Code: "57P01"}), codes.Unavailable, ReasonStoreUnavailable, store.RetryAfter, true},

		{"an unmarked context error", fmt.Errorf("look up: %w", context.DeadlineExceeded), codes.Internal, ReasonInternal, 0, true},
		{"anything else", errors.New("connection refused"), codes.Internal, ReasonInternal, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := errorOf(tt.err)
			if e.Code != tt.code || e.Reason != tt.reason || e.RetryAfter != tt.retryAfter {
				t.Errorf("errorOf = %v %q retry %v, want %v %q retry %v", e.Code, e.Reason, e.RetryAfter, tt.code, tt.reason, tt.retryAfter)
			}
			if got := e.Err != nil; got != tt.cause {
				t.Errorf("cause kept = %v (%v), want %v", got, e.Err, tt.cause)
			}
		})
	}
	if errorOf(nil) != nil {
		t.Errorf("errorOf(nil) != nil")
	}
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		err      *Error
		wantCode codes.Code
		wantMsg  string
		retry    bool
	}{
		{unauthenticated(ReasonExpired, errors.New("detail")), codes.Unauthenticated, "invalid token: expired", false},
		{permissionDenied(ReasonMissingPermission), codes.PermissionDenied, "permission denied: missing_permission", false},
		{invalidArgument(ReasonMissingTenant), codes.InvalidArgument, "invalid request: missing_tenant", false},
		{&Error{Code: codes.Unavailable, Reason: ReasonClerkUnavailable, RetryAfter: time.Second}, codes.Unavailable, "authentication unavailable: clerk_unavailable", true},
		{exhausted(ReasonRateLimited, 100*time.Millisecond, errors.New("caller 10.0.0.1")), codes.ResourceExhausted, "too many verifications: rate_limited", true},
	}
	for _, tt := range tests {
		t.Run(tt.wantMsg, func(t *testing.T) {
			st, ok := status.FromError(tt.err)
			if !ok {
				t.Fatal("status.FromError: not a status")
			}
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if got := len(st.Details()) == 1; got != tt.retry {
				t.Errorf("RetryInfo present = %v, want %v", got, tt.retry)
			}
		})
	}
}
