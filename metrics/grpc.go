package metrics

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor counts every unary call when it returns, in
// strata_grpc_requests_total by full method name ("/strata.v1.Strata/
// Produce") and status code ("OK", "NotFound", ...). Add it to any gRPC
// server (grpc.ChainUnaryInterceptor): the Strata service, Arrow Flight,
// health. Method names are those the server registered (gRPC answers an
// unknown method before any interceptor runs), so the label set is
// bounded by the services served.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		m.grpcReqs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls,
// counted when the stream's handler returns.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		m.grpcReqs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		return err
	}
}
