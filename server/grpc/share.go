package grpcserver

// Share groups: the handlers convert and check what the core cannot see
// (the request's shape and the wire's units), and leave the rest (names,
// partitions, group settings, receipts) to the core, whose messages pass
// through word for word.
//
// Choices:
//   - A settle's reason is refused over MaxReasonBytes, never cut: the
//     broker stores what the client sent or nothing. (The Go client cuts
//     a handler's error text itself before it sends it.)
//   - Fields that do not apply to a settle kind (a delay on an ack, a
//     reason on a release) are refused rather than ignored, so a client
//     that believes they do something learns that they do not.
//   - A receive holds its max_bytes of the fetch-response budget
//     (Limits.FetchBufferBytes) while it waits and builds its answer: its
//     answer is bounded by it like a fetch response. Records the core
//     leased past max_bytes are released at once (back without penalty:
//     the delivery is not counted), as are the records of a receive whose
//     caller is gone by the time the core answers.
//   - A receive's long poll ends before the call's deadline (a tenth of
//     the time left, at most a second, is kept for the answer to travel),
//     so a client with a short deadline gets an empty answer, not
//     DEADLINE_EXCEEDED.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
)

// Bounds of the share-group requests, checked before the core sees them.
const (
	MaxReasonBytes = 1024
	minVisibility  = time.Second
	maxVisibility  = 12 * time.Hour
	maxNackDelay   = 366 * 24 * time.Hour
	// releaseTimeout bounds the release of records a receive leased and
	// cannot answer with.
	releaseTimeout = 5 * time.Second
)

func shareConfigToProto(c *core.ShareGroupConfig) *stratapb.ShareGroupConfig {
	return &stratapb.ShareGroupConfig{
		Topic: c.Topic, Group: c.Group, VisibilityMs: c.VisibilityMs, MaxDeliveries: c.MaxDeliveries,
		BackoffMinMs: c.BackoffMinMs, BackoffMaxMs: c.BackoffMaxMs, BackoffMultiplier: c.BackoffMultiplier,
		DeadLetterTopic: c.DeadLetterTopic, OrderedByKey: c.OrderedByKey, PriorityAgingMs: c.PriorityAgingMs,
		Seed: c.Seed, StartFromEarliest: c.StartFromEarliest, StartOffsets: c.StartOffsets,
	}
}

// shareConfigFromProto is a client's config; the fields the broker sets
// (seed, start offsets) are not taken from it.
func shareConfigFromProto(c *stratapb.ShareGroupConfig) core.ShareGroupConfig {
	return core.ShareGroupConfig{
		Topic: c.Topic, Group: c.Group, VisibilityMs: c.VisibilityMs, MaxDeliveries: c.MaxDeliveries,
		BackoffMinMs: c.BackoffMinMs, BackoffMaxMs: c.BackoffMaxMs, BackoffMultiplier: c.BackoffMultiplier,
		DeadLetterTopic: c.DeadLetterTopic, OrderedByKey: c.OrderedByKey, PriorityAgingMs: c.PriorityAgingMs,
		StartFromEarliest: c.StartFromEarliest,
	}
}

// CreateShareGroup implements the API.
func (s *Server) CreateShareGroup(ctx context.Context, req *stratapb.CreateShareGroupRequest) (*stratapb.CreateShareGroupResponse, error) {
	if req.GetConfig() == nil {
		return nil, status.Error(codes.InvalidArgument, "config is required: name the topic and the group (other fields may stay 0 for their defaults); nothing was created")
	}
	cfg, err := s.core.CreateShareGroup(ctx, shareConfigFromProto(req.Config))
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.CreateShareGroupResponse{Config: shareConfigToProto(cfg)}, nil
}

// AlterShareGroup implements the API.
func (s *Server) AlterShareGroup(ctx context.Context, req *stratapb.AlterShareGroupRequest) (*stratapb.AlterShareGroupResponse, error) {
	if req.GetConfig() == nil {
		return nil, status.Error(codes.InvalidArgument, "config is required: name the topic and the group and give every setting (a field left 0 takes its default); nothing was changed")
	}
	cfg, err := s.core.AlterShareGroup(ctx, shareConfigFromProto(req.Config))
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.AlterShareGroupResponse{Config: shareConfigToProto(cfg)}, nil
}

// DeleteShareGroup implements the API.
func (s *Server) DeleteShareGroup(ctx context.Context, req *stratapb.DeleteShareGroupRequest) (*stratapb.DeleteShareGroupResponse, error) {
	if err := s.core.DeleteShareGroup(ctx, req.GetTopic(), req.GetGroup()); err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.DeleteShareGroupResponse{}, nil
}

// ListShareGroups implements the API.
func (s *Server) ListShareGroups(ctx context.Context, req *stratapb.ListShareGroupsRequest) (*stratapb.ListShareGroupsResponse, error) {
	cfgs, err := s.core.ListShareGroups(ctx, req.GetTopic())
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.ListShareGroupsResponse{}
	for _, c := range cfgs {
		out.Groups = append(out.Groups, shareConfigToProto(c))
	}
	return out, nil
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// DescribeShareGroup implements the API.
func (s *Server) DescribeShareGroup(ctx context.Context, req *stratapb.DescribeShareGroupRequest) (*stratapb.DescribeShareGroupResponse, error) {
	d, err := s.core.DescribeShareGroup(ctx, req.GetTopic(), req.GetGroup())
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.DescribeShareGroupResponse{
		Config: shareConfigToProto(&d.Config),
		Totals: &stratapb.ShareCounts{
			Available: d.Available, InFlight: d.InFlight, Backoff: d.Backoff, Delayed: d.Delayed,
			KeyBlocked: d.KeyBlocked, DeadLetterPending: d.DeadLetterPending, Acked: d.Acked, DeadLettered: d.DeadLettered,
		},
		OldestUnackedAgeMs: d.OldestUnackedAge.Milliseconds(),
	}
	for _, p := range d.Partitions {
		out.Partitions = append(out.Partitions, &stratapb.SharePartitionInfo{
			Partition: p.Partition, Cursor: p.Cursor, Floor: p.Floor,
			Counts: &stratapb.ShareCounts{
				Available: p.Available, InFlight: p.InFlight, Backoff: p.Backoff, Delayed: p.Delayed,
				KeyBlocked: p.KeyBlocked, DeadLetterPending: p.DeadLetterPending, Acked: p.Acked, DeadLettered: p.DeadLettered,
			},
			OldestUnackedMs: unixMs(p.OldestUnacked), Owner: p.Owner, Live: p.Live,
		})
	}
	return out, nil
}

// checkReceive refuses a receive request out of range, saying what to
// send instead.
func checkReceive(req *stratapb.ReceiveRequest) error {
	switch v := req.VisibilityMs; {
	case req.MaxRecords < 1 || req.MaxRecords > core.MaxReceiveRecords:
		return status.Errorf(codes.InvalidArgument, "max_records %d is out of range: ask for 1 to %d records per receive; nothing was received", req.MaxRecords, core.MaxReceiveRecords)
	case req.WaitMs < 0 || time.Duration(req.WaitMs)*time.Millisecond > core.MaxReceiveWait:
		return status.Errorf(codes.InvalidArgument, "wait_ms %d is out of range: wait 0 (answer at once) to %d ms; nothing was received", req.WaitMs, core.MaxReceiveWait.Milliseconds())
	case v != 0 && (v < minVisibility.Milliseconds() || v > maxVisibility.Milliseconds()):
		return status.Errorf(codes.InvalidArgument, "visibility_ms %d is out of range: lease for %d ms (1 s) to %d ms (12 h), or 0 for the group's visibility timeout; nothing was received", v, minVisibility.Milliseconds(), maxVisibility.Milliseconds())
	case req.MaxBytes < 0:
		return status.Errorf(codes.InvalidArgument, "max_bytes %d is negative: bound the answer's bytes (0 for 1 MiB); nothing was received", req.MaxBytes)
	}
	seen := make(map[int32]bool, len(req.Partitions))
	for _, p := range req.Partitions {
		switch {
		case p < 0:
			return status.Errorf(codes.InvalidArgument, "partition %d is negative: name partitions from 0, or none for every partition this broker owns; nothing was received", p)
		case seen[p]:
			return status.Errorf(codes.InvalidArgument, "partition %d is named twice: name each partition once; nothing was received", p)
		}
		seen[p] = true
	}
	return nil
}

// longPoll is how long a receive may wait: what it asked for, ended
// before ctx's deadline with time kept for the answer to reach the
// client.
func longPoll(ctx context.Context, asked time.Duration) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return asked
	}
	left := time.Until(dl)
	return max(0, min(asked, left-min(left/10, time.Second)))
}

// Receive implements the API.
func (s *Server) Receive(ctx context.Context, req *stratapb.ReceiveRequest) (*stratapb.ReceiveResponse, error) {
	if err := checkReceive(req); err != nil {
		return nil, err
	}
	maxBytes := s.cfg.Limits.clampFetchBytes(req.MaxBytes)
	budget := s.lim.fetch.stream(ctx, s.cfg.Limits.FetchStreamBytes)
	defer budget.finish(ctx)
	l, err := budget.acquire(ctx, int64(maxBytes))
	if err != nil {
		return nil, statusOf(err)
	}
	defer l.release()
	ds, err := s.core.Receive(ctx, &core.ReceiveRequest{
		Topic: req.Topic, Group: req.Group, Partitions: req.Partitions, MaxRecords: int(req.MaxRecords),
		Wait:       longPoll(ctx, time.Duration(req.WaitMs)*time.Millisecond),
		Visibility: time.Duration(req.VisibilityMs) * time.Millisecond,
	})
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.ReceiveResponse{}
	size := 0
	var over []string // receipts leased past max_bytes
	for i := range ds {
		d := &ds[i]
		pd := &stratapb.Delivery{Partition: d.Partition, Record: toProto(&d.Record, d.Partition), Receipt: d.Receipt,
			DeliveryCount: d.DeliveryCount, LeaseUntilMs: unixMs(d.LeaseUntil)}
		n := proto.Size(pd) + core.RecordOverheadBytes // as a fetch counts
		if len(out.Deliveries) > 0 && size+n > maxBytes {
			over = append(over, d.Receipt)
			continue
		}
		size += n
		out.Deliveries = append(out.Deliveries, pd)
	}
	if ctx.Err() != nil {
		// The caller is gone: nobody will settle these.
		for _, d := range out.Deliveries {
			over = append(over, d.Receipt)
		}
		out.Deliveries = nil
	}
	s.release(ctx, req.Topic, req.Group, over)
	if ctx.Err() != nil {
		return nil, statusOf(ctx.Err())
	}
	return out, nil
}

// release gives back receipts a receive leased and does not answer with:
// released, they are available at once, their delivery not counted. A
// release that fails leaves the lease to run out (the record comes back
// after its visibility timeout, the delivery counted).
func (s *Server) release(ctx context.Context, topic, group string, receipts []string) {
	if len(receipts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	s.core.Settle(ctx, &core.SettleRequest{Topic: topic, Group: group, Kind: core.SettleRelease, Receipts: receipts})
}

// settleNames names each settle kind in messages.
var settleNames = map[core.SettleKind]string{
	core.SettleAck: "ack", core.SettleNack: "nack", core.SettleRelease: "release", core.SettleReject: "reject", core.SettleExtend: "extend",
}

// checkSettle refuses a settle request out of range, saying what to send
// instead; nothing is settled then.
func checkSettle(kind core.SettleKind, req *stratapb.SettleRequest) error {
	name := settleNames[kind]
	d := req.DelayMs
	switch {
	case len(req.Receipts) == 0:
		return status.Errorf(codes.InvalidArgument, "%s names no receipt: send 1 to %d receipts per request", name, core.MaxSettleReceipts)
	case len(req.Receipts) > core.MaxSettleReceipts:
		return status.Errorf(codes.InvalidArgument, "%s names %d receipts, over the limit of %d per request; nothing was settled: split it into smaller requests", name, len(req.Receipts), core.MaxSettleReceipts)
	case len(req.Reason) > MaxReasonBytes:
		return status.Errorf(codes.InvalidArgument, "the reason is %d bytes, over the limit of %d; nothing was settled: send a shorter reason (keep details elsewhere and refer to them)", len(req.Reason), MaxReasonBytes)
	case req.Reason != "" && kind != core.SettleNack && kind != core.SettleReject:
		return status.Errorf(codes.InvalidArgument, "%s takes no reason (only nack and reject keep one); nothing was settled: send an empty reason", name)
	case kind == core.SettleNack && (d < 0 || d > maxNackDelay.Milliseconds()):
		return status.Errorf(codes.InvalidArgument, "nack delay_ms %d is out of range: delay 0 (the group's backoff) to %d ms (366 days); nothing was settled", d, maxNackDelay.Milliseconds())
	case kind == core.SettleExtend && (d < minVisibility.Milliseconds() || d > maxVisibility.Milliseconds()):
		return status.Errorf(codes.InvalidArgument, "extend delay_ms %d is out of range: the new lease length from now is %d ms (1 s) to %d ms (12 h); nothing was settled", d, minVisibility.Milliseconds(), maxVisibility.Milliseconds())
	case d != 0 && kind != core.SettleNack && kind != core.SettleExtend:
		return status.Errorf(codes.InvalidArgument, "%s takes no delay_ms (only nack and extend do); nothing was settled: send 0", name)
	}
	return nil
}

// settle runs a settle of kind and answers each receipt's outcome.
func (s *Server) settle(ctx context.Context, kind core.SettleKind, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	if err := checkSettle(kind, req); err != nil {
		return nil, err
	}
	res, err := s.core.Settle(ctx, &core.SettleRequest{Topic: req.Topic, Group: req.Group, Kind: kind, Receipts: req.Receipts,
		Delay: time.Duration(req.DelayMs) * time.Millisecond, Reason: req.Reason})
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.SettleResponse{Outcomes: make([]*stratapb.SettleOutcome, len(res))}
	for i, r := range res {
		out.Outcomes[i] = outcomeOf(&r)
	}
	return out, nil
}

// outcomeOf is a receipt's outcome on the wire: its error's kind as a
// gRPC code name, its message word for word, and for NOT_OWNER the owner.
func outcomeOf(r *core.SettleResult) *stratapb.SettleOutcome {
	o := &stratapb.SettleOutcome{Receipt: r.Receipt, Ok: r.Err == nil, LeaseUntilMs: unixMs(r.LeaseUntil)}
	if r.Err == nil {
		return o
	}
	o.Code, o.Message = CodeName(codeOf(r.Err)), r.Err.Error()
	var ce *core.Error
	if errors.As(r.Err, &ce) && ce.Kind == core.ErrNotOwner {
		o.Reason = NotOwnerReason
		if ce.Owner != nil {
			o.OwnerId, o.OwnerAddress = ce.Owner.ID, ce.Owner.Addr
		}
	}
	return o
}

// Ack implements the API.
func (s *Server) Ack(ctx context.Context, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	return s.settle(ctx, core.SettleAck, req)
}

// Nack implements the API.
func (s *Server) Nack(ctx context.Context, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	return s.settle(ctx, core.SettleNack, req)
}

// Release implements the API.
func (s *Server) Release(ctx context.Context, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	return s.settle(ctx, core.SettleRelease, req)
}

// Reject implements the API.
func (s *Server) Reject(ctx context.Context, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	return s.settle(ctx, core.SettleReject, req)
}

// Extend implements the API.
func (s *Server) Extend(ctx context.Context, req *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
	return s.settle(ctx, core.SettleExtend, req)
}

// codeNames are the canonical gRPC code names (as the gRPC spec and
// google.rpc.Code spell them), which SettleOutcome.code carries.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// CodeName is the canonical name of a gRPC code (FAILED_PRECONDITION).
func CodeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}
