package grpcserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/segment"
)

// Config configures a Server.
type Config struct {
	// Limits bounds what clients can make the server hold in memory
	// (limits.go). Default DefaultLimits().
	Limits Limits
	// ACLs serves the ACL RPCs (acl.go); nil: they answer
	// FAILED_PRECONDITION. Who may call them is the auth.Guard's rule.
	ACLs ACLAdmin
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config { return Config{Limits: DefaultLimits()} }

// Validate reports the first invalid field.
func (c *Config) Validate() error { return c.Limits.Validate() }

// Server implements stratapb.StrataServer over a core.Broker.
type Server struct {
	stratapb.UnimplementedStrataServer
	core *core.Broker
	cfg  Config
	lim  *limiter
}

var _ stratapb.StrataServer = (*Server)(nil)

// New returns a front end of b. The Server does not own b: whoever made b
// closes it, after stopping the gRPC server.
func New(b *core.Broker, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n := b.MaxRecordBytes(); int64(n) > cfg.Limits.MaxProduceBytes || n > cfg.Limits.MaxMessageBytes {
		return nil, fmt.Errorf("grpcserver: the broker's MaxRecordBytes %d is over Limits.MaxProduceBytes %d or Limits.MaxMessageBytes %d: such a record could never be produced", n, cfg.Limits.MaxProduceBytes, cfg.Limits.MaxMessageBytes)
	}
	return &Server{core: b, cfg: cfg, lim: newLimiter(cfg.Limits)}, nil
}

// Core returns the broker the server fronts.
func (s *Server) Core() *core.Broker { return s.core }

// codes maps the core's error kinds to gRPC status codes: the one table.
var codeOfKind = []struct {
	kind error
	code codes.Code
}{
	{core.ErrInvalidArgument, codes.InvalidArgument},
	{core.ErrTopicNotFound, codes.NotFound},
	{core.ErrGroupNotFound, codes.NotFound},
	{core.ErrMemberNotFound, codes.NotFound},
	{core.ErrTopicExists, codes.AlreadyExists},
	{core.ErrAlreadyExists, codes.AlreadyExists},
	{core.ErrOutOfRange, codes.OutOfRange},
	{core.ErrFailedPrecondition, codes.FailedPrecondition},
	{core.ErrNotOwner, codes.FailedPrecondition}, // with a NOT_OWNER ErrorInfo (notOwner)
	{core.ErrConflict, codes.Aborted},
	{core.ErrUnavailable, codes.Unavailable},
	{core.ErrResourceExhausted, codes.ResourceExhausted},
	{core.ErrDeadlineExceeded, codes.DeadlineExceeded},
	{core.ErrCanceled, codes.Canceled},
	{core.ErrInternal, codes.Internal},
}

// statusOf maps an error to a gRPC status error with the same message.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		if ce.Kind == core.ErrNotOwner && ce.Owner != nil {
			return notOwner(ce)
		}
		return status.Error(codeOf(err), ce.Msg)
	}
	return status.Error(codeOf(err), err.Error())
}

// codeOf is the gRPC code of an error of the core (codeOfKind), of a
// context, or else INTERNAL.
func codeOf(err error) codes.Code {
	var ce *core.Error
	if errors.As(err, &ce) {
		for _, e := range codeOfKind {
			if ce.Kind == e.kind {
				return e.code
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// Error details of a NOT_OWNER answer: FAILED_PRECONDITION with an
// ErrorInfo whose metadata names the owner (stratapb's Metadata RPC
// documents it for clients).
const (
	NotOwnerReason = "NOT_OWNER"
	ErrorDomain    = "strata.v1"
)

// notOwner is the status of a request sent to a broker that does not own
// what it names.
func notOwner(ce *core.Error) error {
	st := status.New(codes.FailedPrecondition, ce.Msg)
	ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: NotOwnerReason, Domain: ErrorDomain,
		Metadata: map[string]string{"owner_id": ce.Owner.ID, "owner_address": ce.Owner.Addr}})
	if err != nil {
		return st.Err()
	}
	return ds.Err()
}

// Metadata answers with the cluster's brokers and the proposed owners.
func (s *Server) Metadata(ctx context.Context, req *stratapb.MetadataRequest) (*stratapb.MetadataResponse, error) {
	md, err := s.core.Metadata(ctx, req.Topics, req.Groups)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.MetadataResponse{NodeId: md.Self.ID}
	for _, n := range md.Brokers {
		out.Brokers = append(out.Brokers, &stratapb.BrokerInfo{NodeId: n.ID, Address: n.Addr, Zone: n.Zone})
	}
	for _, t := range md.Topics {
		tm := &stratapb.TopicMetadata{Name: t.Name, Partitions: int32(len(t.Owners))}
		for p, o := range t.Owners {
			tm.Owners = append(tm.Owners, &stratapb.PartitionOwner{Partition: int32(p), NodeId: o.ID, Address: o.Addr})
		}
		out.Topics = append(out.Topics, tm)
	}
	for _, g := range md.Groups {
		out.Groups = append(out.Groups, &stratapb.GroupCoordinator{Group: g.Group, NodeId: g.Owner.ID, Address: g.Owner.Addr})
	}
	return out, nil
}

func topicToProto(c *core.TopicConfig) *stratapb.TopicConfig {
	return &stratapb.TopicConfig{Name: c.Name, Partitions: c.Partitions, RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes, Compression: c.Compression, SegmentBytes: c.SegmentBytes,
		ConsumedBy: c.ConsumedBy, ValueFormat: c.ValueFormat, ValueSchema: string(c.ValueSchema), Export: c.Export}
}

// topicFromProto is the core config a client asked for.
func topicFromProto(c *stratapb.TopicConfig) core.TopicConfig {
	cfg := core.TopicConfig{Name: c.Name, Partitions: c.Partitions, RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes, Compression: c.Compression, SegmentBytes: c.SegmentBytes,
		ConsumedBy: c.ConsumedBy, ValueFormat: c.ValueFormat, Export: c.Export}
	if c.ValueSchema != "" {
		cfg.ValueSchema = json.RawMessage(c.ValueSchema)
	}
	return cfg
}

// position converts a request's start spec (earliest, latest, none set,
// timestamp or offset) to a core position: no spec is the earliest, a
// timestamp of 0 is offset 0.
func position(earliest, latest, none bool, ts, offset int64) core.Position {
	switch {
	case earliest || none:
		return core.Position{Kind: core.StartEarliest}
	case latest:
		return core.Position{Kind: core.StartLatest}
	case ts != 0:
		return core.Position{Kind: core.StartTime, TimestampMs: ts}
	}
	return core.Position{Kind: core.StartOffset, Offset: offset}
}

// CreateTopic implements the API.
func (s *Server) CreateTopic(ctx context.Context, req *stratapb.CreateTopicRequest) (*stratapb.CreateTopicResponse, error) {
	c := req.GetConfig()
	if c == nil {
		return nil, status.Error(codes.InvalidArgument, "config is required")
	}
	cfg, err := s.core.CreateTopic(ctx, topicFromProto(c))
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.CreateTopicResponse{Config: topicToProto(cfg)}, nil
}

// ListTopics implements the API.
func (s *Server) ListTopics(ctx context.Context, _ *stratapb.ListTopicsRequest) (*stratapb.ListTopicsResponse, error) {
	topics, err := s.core.ListTopics(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &stratapb.ListTopicsResponse{}
	for _, t := range topics {
		resp.Topics = append(resp.Topics, topicToProto(t))
	}
	return resp, nil
}

// DescribeTopic implements the API.
func (s *Server) DescribeTopic(ctx context.Context, req *stratapb.DescribeTopicRequest) (*stratapb.DescribeTopicResponse, error) {
	d, err := s.core.DescribeTopic(ctx, req.GetName())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &stratapb.DescribeTopicResponse{Config: topicToProto(&d.Config)}
	for _, p := range d.Partitions {
		resp.Partitions = append(resp.Partitions, &stratapb.PartitionInfo{
			Partition: p.Partition, LogStartOffset: p.LogStartOffset, HighWatermark: p.HighWatermark,
			SealedBytes: p.SealedBytes, SealedSegments: p.SealedSegments, LocalBytes: p.LocalBytes,
		})
	}
	return resp, nil
}

// ListOffsets implements the API.
func (s *Server) ListOffsets(ctx context.Context, req *stratapb.ListOffsetsRequest) (*stratapb.ListOffsetsResponse, error) {
	off, err := s.core.ListOffsets(ctx, req.GetTopic(), req.GetPartition(), position(req.GetEarliest(), req.GetLatest(), req.Spec == nil, req.GetTimestampMs(), 0))
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.ListOffsetsResponse{Offset: off}, nil
}

// DeleteTopic implements the API.
func (s *Server) DeleteTopic(ctx context.Context, req *stratapb.DeleteTopicRequest) (*stratapb.DeleteTopicResponse, error) {
	n, err := s.core.DeleteTopic(ctx, req.GetName())
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.DeleteTopicResponse{ObjectsDeleted: n}, nil
}

// Produce implements the API: the request holds its share of the produce
// budget (taken by the codec before decoding, or here) until it answers.
func (s *Server) Produce(ctx context.Context, req *stratapb.ProduceRequest) (*stratapb.ProduceResponse, error) {
	admitted, err := s.lim.admitProduce(req)
	if err != nil {
		return nil, err
	}
	defer admitted.release()
	creq := &core.ProduceRequest{
		Topic: req.Topic, Partition: req.Partition, Acks: core.Acks(req.Acks),
		Timeout:    time.Duration(req.TimeoutMs) * time.Millisecond,
		ProducerID: req.ProducerId, ProducerEpoch: req.ProducerEpoch, BaseSequence: req.BaseSequence,
		Records: make([]segment.Record, len(req.Records)),
	}
	for i, r := range req.Records {
		rec := segment.Record{Timestamp: r.TimestampMs, Key: r.Key, Value: r.Value}
		if len(r.Headers) > 0 {
			rec.Headers = make([]segment.Header, len(r.Headers))
			for j, h := range r.Headers {
				rec.Headers[j] = segment.Header{Key: h.Key, Value: h.Value}
			}
		}
		creq.Records[i] = rec
	}
	res, err := s.core.Produce(ctx, creq)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.ProduceResponse{Partitions: res.Partitions, Offsets: res.Offsets, Duplicate: res.Duplicate}, nil
}

// InitProducer implements the API.
func (s *Server) InitProducer(ctx context.Context, _ *stratapb.InitProducerRequest) (*stratapb.InitProducerResponse, error) {
	id, err := s.core.InitProducer(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.InitProducerResponse{ProducerId: id}, nil
}

// Fetch implements the API. Each response takes its share of the fetch
// budget before it is read and built; with the server's codec the share
// follows the encoded bytes into the transport until they are written.
func (s *Server) Fetch(req *stratapb.FetchRequest, stream stratapb.Strata_FetchServer) error {
	ctx := stream.Context()
	budget := s.lim.fetch.stream(ctx, s.cfg.Limits.FetchStreamBytes)
	defer budget.finish(ctx)
	creq := &core.FetchRequest{
		Topic: req.GetTopic(), Partition: req.GetPartition(),
		Start:    position(req.GetEarliest(), req.GetLatest(), req.Start == nil, req.GetTimestampMs(), req.GetOffset()),
		MaxBytes: s.cfg.Limits.clampFetchBytes(req.MaxBytes),
		MaxWait:  time.Duration(req.MaxWaitMs) * time.Millisecond,
		Follow:   req.Follow,
		Group:    req.Group, MemberID: req.MemberId, Generation: req.Generation,
		Budget: streamBudget{budget},
		Stored: req.StoredBlocks,
	}
	err := s.core.Fetch(ctx, creq, func(r *core.FetchResult) error {
		l, _ := r.Lease.(*lease)
		out := &stratapb.FetchResponse{NextOffset: r.NextOffset, HighWatermark: r.HighWatermark, LogStartOffset: r.LogStartOffset}
		if len(r.Blocks) > 0 {
			// As stored: the cache's bytes go into the message as they
			// are; marshaling is their one copy on the broker.
			out.SkipBefore = r.SkipBefore
			out.Blocks = make([]*stratapb.StoredBlock, len(r.Blocks))
			pbs := make([]stratapb.StoredBlock, len(r.Blocks))
			for i := range r.Blocks {
				b := &r.Blocks[i]
				pbs[i] = stratapb.StoredBlock{Data: b.Data, FirstOffset: b.FirstOffset, LastOffset: b.LastOffset, Records: b.Records, Codec: uint32(b.Codec)}
				out.Blocks[i] = &pbs[i]
			}
		}
		for i := range r.Records {
			out.Records = append(out.Records, toProto(&r.Records[i], req.Partition))
		}
		if l == nil {
			return stream.Send(out)
		}
		return budget.sendLeased(stream, out, l) // out is garbage once encoded
	})
	return statusOf(err)
}

// streamBudget is a fetch stream's share of the budget, as the core asks
// for it.
type streamBudget struct{ s *fetchStream }

func (b streamBudget) Acquire(ctx context.Context, n int64) (core.FetchLease, error) {
	l, err := b.s.acquire(ctx, n)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func toProto(r *segment.Record, p int32) *stratapb.Record {
	out := &stratapb.Record{Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp, Offset: r.Offset, Partition: p}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, &stratapb.Header{Key: h.Key, Value: h.Value})
	}
	return out
}

// GetStats implements the API.
func (s *Server) GetStats(ctx context.Context, _ *stratapb.GetStatsRequest) (*stratapb.BrokerStats, error) {
	st := s.core.Stats()
	c, w := st.Cache, st.WAL
	return &stratapb.BrokerStats{
		Incarnation: st.Incarnation,
		CacheHits:   c.Hits, CacheDiskHits: c.DiskHits, CacheMisses: c.Misses,
		ObjectGets: c.Gets, ObjectGetBytes: c.BytesFetched, Prefetches: c.Prefetches,
		CacheMemoryBytes: c.MemoryBytes, CacheDiskBytes: c.DiskBytes,
		WalObjects: w.Objects, WalBytes: w.Bytes, WalPutAttempts: w.Attempts, WalPutFailures: w.Failures,
		WalBufferedBytes: w.Buffered,
	}, nil
}

func assignmentToProto(a *core.Assignment) *stratapb.GroupAssignment {
	return &stratapb.GroupAssignment{MemberId: a.MemberID, Generation: a.Generation, Partitions: a.Partitions}
}

// JoinGroup implements the API.
func (s *Server) JoinGroup(ctx context.Context, req *stratapb.JoinGroupRequest) (*stratapb.GroupAssignment, error) {
	a, err := s.core.JoinGroup(ctx, req.Group, req.Topic, time.Duration(req.SessionTimeoutMs)*time.Millisecond)
	if err != nil {
		return nil, statusOf(err)
	}
	return assignmentToProto(a), nil
}

// Heartbeat implements the API.
func (s *Server) Heartbeat(ctx context.Context, req *stratapb.HeartbeatRequest) (*stratapb.GroupAssignment, error) {
	a, err := s.core.Heartbeat(req.Group, req.MemberId)
	if err != nil {
		return nil, statusOf(err)
	}
	return assignmentToProto(a), nil
}

// LeaveGroup implements the API.
func (s *Server) LeaveGroup(ctx context.Context, req *stratapb.LeaveGroupRequest) (*stratapb.LeaveGroupResponse, error) {
	if err := s.core.LeaveGroup(req.Group, req.MemberId); err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.LeaveGroupResponse{}, nil
}

// CommitOffsets implements the API.
func (s *Server) CommitOffsets(ctx context.Context, req *stratapb.CommitOffsetsRequest) (*stratapb.CommitOffsetsResponse, error) {
	if err := s.core.CommitOffsets(ctx, req.Group, req.MemberId, req.Generation, req.Offsets); err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.CommitOffsetsResponse{}, nil
}

// FetchCommitted implements the API.
func (s *Server) FetchCommitted(ctx context.Context, req *stratapb.FetchCommittedRequest) (*stratapb.FetchCommittedResponse, error) {
	topic, offsets, err := s.core.FetchCommitted(ctx, req.Group)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.FetchCommittedResponse{Topic: topic, Offsets: offsets}, nil
}

// ListGroups implements the API.
func (s *Server) ListGroups(ctx context.Context, _ *stratapb.ListGroupsRequest) (*stratapb.ListGroupsResponse, error) {
	names, err := s.core.ListGroups(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.ListGroupsResponse{Groups: names}, nil
}

// DescribeGroup implements the API.
func (s *Server) DescribeGroup(ctx context.Context, req *stratapb.DescribeGroupRequest) (*stratapb.DescribeGroupResponse, error) {
	d, err := s.core.DescribeGroup(ctx, req.Group)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &stratapb.DescribeGroupResponse{Group: d.Group, Topic: d.Topic, Generation: d.Generation}
	for _, m := range d.Members {
		out.Members = append(out.Members, &stratapb.GroupMember{MemberId: m.MemberID, Partitions: m.Partitions})
	}
	for _, l := range d.Lag {
		out.Lag = append(out.Lag, &stratapb.PartitionLag{Partition: l.Partition, Committed: l.Committed, HighWatermark: l.HighWatermark, LagRecords: l.LagRecords, LagSeconds: l.LagSeconds})
	}
	return out, nil
}

// ResetOffsets implements the API.
func (s *Server) ResetOffsets(ctx context.Context, req *stratapb.ResetOffsetsRequest) (*stratapb.ResetOffsetsResponse, error) {
	var to core.Position
	switch t := req.To.(type) {
	case nil, *stratapb.ResetOffsetsRequest_Earliest:
		to = core.Position{Kind: core.StartEarliest}
	case *stratapb.ResetOffsetsRequest_Latest:
		to = core.Position{Kind: core.StartLatest}
	case *stratapb.ResetOffsetsRequest_TimestampMs:
		to = core.Position{Kind: core.StartTime, TimestampMs: t.TimestampMs}
	case *stratapb.ResetOffsetsRequest_Offset:
		to = core.Position{Kind: core.StartOffset, Offset: t.Offset}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown reset target %T: use earliest, latest, a timestamp or an offset", t)
	}
	offsets, err := s.core.ResetOffsets(ctx, req.Group, req.Topic, to)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.ResetOffsetsResponse{Offsets: offsets}, nil
}
