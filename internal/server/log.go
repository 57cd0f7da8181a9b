package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// callRecord is filled in as a call passes the interceptors, so that the one
// log line written at the end can name the principal that auth found.
type callRecord struct {
	principal string
}

type callRecordKey struct{}

// logUnary writes one structured line per call: method, protocol (see
// httpapi.Protocol), code, duration, principal id, and the cause of a
// failure the client is not told (causeHider). It never logs metadata, so
// no token can reach the log.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		rec := &callRecord{}
		start := time.Now()
		resp, err := handler(context.WithValue(ctx, callRecordKey{}, rec), req)
		logCall(ctx, log, info.FullMethod, rec, start, err)
		return resp, err
	}
}

func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		rec := &callRecord{}
		start := time.Now()
		err := handler(srv, &contextStream{ss, context.WithValue(ss.Context(), callRecordKey{}, rec)})
		logCall(ss.Context(), log, info.FullMethod, rec, start, err)
		return err
	}
}

func logCall(ctx context.Context, log *slog.Logger, method string, rec *callRecord, start time.Time, err error) {
	st := status.Convert(err)
	level := slog.LevelInfo
	switch st.Code() {
	case codes.OK:
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("protocol", httpapi.Protocol(ctx)),
		slog.String("code", st.Code().String()),
		slog.Duration("duration", time.Since(start)),
		slog.String("principal", rec.principal),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
		// A failure whose cause the client is not shown (from auth, or a
		// handler's through derrors) has it logged here, once.
		var hidden causeHider
		if errors.As(err, &hidden) {
			if cause := hidden.HiddenCause(); cause != nil {
				attrs = append(attrs, slog.String("cause", cause.Error()))
			}
		}
	}
	log.LogAttrs(ctx, level, "rpc", attrs...)
}

// causeHider is an error whose cause the client is not shown:
// *auth.Error, *derrors.WithheldError, *panicError.
type causeHider interface {
	HiddenCause() error
}

// panicError is a handler's panic, recovered: INTERNAL for the client, the
// value and the stack for the log.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string              { return "internal error" }
func (e *panicError) GRPCStatus() *status.Status { return status.New(codes.Internal, "internal error") }
func (e *panicError) HiddenCause() error {
	return fmt.Errorf("panic: %v\n%s", e.value, e.stack)
}

// notePrincipal records the principal auth put in the context.
func notePrincipal(ctx context.Context) {
	if rec, ok := ctx.Value(callRecordKey{}).(*callRecord); ok {
		if p, ok := viewer.FromContext(ctx); ok {
			rec.principal = p.ID()
		}
	}
}

func notePrincipalUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	notePrincipal(ctx)
	return handler(ctx, req)
}

func notePrincipalStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	notePrincipal(ss.Context())
	return handler(srv, ss)
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
