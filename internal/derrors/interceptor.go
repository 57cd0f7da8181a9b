package derrors

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/gatehouse-dev/gatehouse/ent/privacy"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// UnaryServerInterceptor returns an interceptor that turns a handler's error
// into its Status. An error whose detail the client is not shown (INTERNAL
// and the like) is logged here, once, with the detail; others are not, the
// per-RPC log line records their code.
//
// Install it inside the auth interceptor, so that it sees the principal.
func UnaryServerInterceptor(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, convert(ctx, logger, info.FullMethod, err)
		}
		return resp, nil
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming RPCs.
func StreamServerInterceptor(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return convert(ss.Context(), logger, info.FullMethod, err)
		}
		return nil
	}
}

func convert(ctx context.Context, logger *slog.Logger, method string, err error) error {
	if _, ok := viewer.FromContext(ctx); !ok && errors.Is(err, privacy.Deny) {
		err = errors.Join(errNoViewer, err)
	}
	v := classify(err)
	if v.withheld {
		level := slog.LevelWarn
		if v.status.Code() == codes.Internal {
			level = slog.LevelError
		}
		p, _ := viewer.FromContext(ctx)
		logger.LogAttrs(ctx, level, "rpc error",
			slog.String("method", method),
			slog.String("code", v.status.Code().String()),
			slog.String("principal", p.ID()),
			slog.String("error", err.Error()),
		)
	}
	return v.status.Err()
}
