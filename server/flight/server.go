package flightserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/core"
)

// Config configures a Server.
type Config struct {
	// BatchBytes: DoGet cuts a record batch once its rows reach about
	// this many bytes (columnar.Builder.Bytes: keys, values, headers and
	// the fixed-width columns), so a batch is at most BatchBytes plus one
	// record. Default 2 MiB: with the largest record of the broker's
	// default 1 MiB limit a batch stays below the 4 MiB that gRPC clients
	// (the Go Flight client among them) receive by default.
	BatchBytes int
	// ReadBytes is the MaxBytes of each core.Fetch read of a DoGet (one
	// fetch that follows the partition, so every read after the first is
	// sequential and gets the read path's read-ahead). Default 2 MiB: two
	// 1 MiB segment blocks, so the first read of a cold range starts the
	// read-ahead too. A read is views of the decoded blocks, not a copy
	// (core.FetchRequest.Batches), so its size costs no copying.
	ReadBytes int
	// MemoryBytes bounds the memory of all DoGet streams together: each
	// holds StreamBytes (one read, the batch being built, its IPC
	// encoding and the gRPC message) while it runs; a DoGet beyond the
	// bound waits for a running one to end (or its own deadline).
	// Default 256 MiB (32 streams at the defaults).
	MemoryBytes int64
	// Visible, when set, says whether the caller (of ctx) may see topic:
	// ListFlights lists only those (serve sets it to the auth Guard's
	// describe check; Rules guards the other methods). Nil: every topic.
	Visible func(ctx context.Context, topic string) bool
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{BatchBytes: 2 << 20, ReadBytes: 2 << 20, MemoryBytes: 256 << 20}
}

// StreamBytes is what one DoGet stream holds of MemoryBytes: one read
// result, plus the batch being built, its IPC body and its gRPC message.
func (c *Config) StreamBytes() int64 { return int64(c.ReadBytes) + 3*int64(c.BatchBytes) }

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.BatchBytes <= 0 || c.ReadBytes <= 0 || c.MemoryBytes <= 0:
		return errors.New("flightserver: BatchBytes, ReadBytes and MemoryBytes must be positive")
	case c.BatchBytes > 1<<30 || c.ReadBytes > 1<<30:
		return fmt.Errorf("flightserver: BatchBytes %d and ReadBytes %d must be at most 1 GiB", c.BatchBytes, c.ReadBytes)
	case c.MemoryBytes < c.StreamBytes():
		return fmt.Errorf("flightserver: MemoryBytes %d is below what one DoGet stream holds (ReadBytes + 3 x BatchBytes = %d): no stream could run", c.MemoryBytes, c.StreamBytes())
	}
	return nil
}

// Server is the Arrow Flight service over a core.Broker.
type Server struct {
	flight.BaseFlightServer
	core  *core.Broker
	cfg   Config
	mem   *semaphore.Weighted // MemoryBytes, StreamBytes per DoGet
	alloc memory.Allocator    // of DoGet's builders and IPC writers: recycles batches' buffers
}

var _ flight.FlightServer = (*Server)(nil)

// New returns a Flight front end of b. The Server does not own b: stop
// the gRPC server first, then close the broker.
func New(b *core.Broker, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{core: b, cfg: cfg, mem: semaphore.NewWeighted(cfg.MemoryBytes), alloc: &poolAllocator{}}, nil
}

// ServerOptions are the gRPC server options the Flight service expects:
// requests (descriptors, tickets) are small, so a message past 1 MiB is
// refused before it is decoded.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20)}
}

// Register registers the Flight service on srv.
func (s *Server) Register(srv *grpc.Server) { flight.RegisterFlightServiceServer(srv, s) }

// layoutFor is the row layout of topic's record batches, the one place
// that decides it: the core's (the default layout for opaque values, the
// typed columns of a "json" topic's value schema, inferred from its first
// records when none was declared).
func (s *Server) layoutFor(ctx context.Context, topic string) (*columnar.Layout, error) {
	return s.core.ValueLayout(ctx, topic)
}

// codeOfKind maps the core's error kinds to gRPC status codes.
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
	{core.ErrNotOwner, codes.FailedPrecondition},
	{core.ErrConflict, codes.Aborted},
	{core.ErrUnavailable, codes.Unavailable},
	{core.ErrResourceExhausted, codes.ResourceExhausted},
	{core.ErrDeadlineExceeded, codes.DeadlineExceeded},
	{core.ErrCanceled, codes.Canceled},
	{core.ErrInternal, codes.Internal},
}

// statusOf maps an error to a gRPC status error: a status passes through,
// a request this package refused is INVALID_ARGUMENT, a core error keeps
// its message under its kind's code.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, errBadRequest) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		for _, e := range codeOfKind {
			if ce.Kind == e.kind {
				return status.Error(e.code, ce.Msg)
			}
		}
		return status.Error(codes.Internal, ce.Msg)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// inContext prefixes a status error's message with where it happened.
func inContext(err error, format string, args ...any) error {
	st := status.Convert(statusOf(err))
	return status.Error(st.Code(), fmt.Sprintf(format, args...)+": "+st.Message())
}

// topicFor loads the command's topic and checks the partitions it names.
func (s *Server) topicFor(ctx context.Context, c *Command) (id string, cfg *core.TopicConfig, err error) {
	id, cfg, err = s.core.TopicID(ctx, c.Topic)
	if err != nil {
		return "", nil, err
	}
	last := cfg.Partitions - 1
	check := func(what string, p int32) error {
		if p > last {
			return status.Errorf(codes.InvalidArgument, "%s partition %d is out of range: topic %q has partitions 0-%d", what, p, c.Topic, last)
		}
		return nil
	}
	for _, p := range c.Partitions {
		if err := check("command names", p); err != nil {
			return "", nil, err
		}
	}
	for p := range c.FromOffset {
		if err := check("from_offset names", p); err != nil {
			return "", nil, err
		}
	}
	for p := range c.ToOffset {
		if err := check("to_offset names", p); err != nil {
			return "", nil, err
		}
	}
	return id, cfg, nil
}

// ListFlights lists one FlightInfo per topic (the broker's own "__"
// topics are not listed, nor a "json" topic whose schema is still to be
// inferred from records it does not have yet): the whole topic, as
// GetFlightInfo answers its PATH descriptor. The criteria must be empty.
func (s *Server) ListFlights(c *flight.Criteria, stream flight.FlightService_ListFlightsServer) error {
	ctx := stream.Context()
	if len(c.GetExpression()) > 0 {
		return status.Error(codes.InvalidArgument, "ListFlights takes no criteria: send an empty expression to list every topic")
	}
	topics, err := s.core.ListTopics(ctx)
	if err != nil {
		return statusOf(err)
	}
	for _, t := range topics {
		if s.cfg.Visible != nil && !s.cfg.Visible(ctx, t.Name) {
			continue
		}
		info, err := s.flightInfo(ctx, &Command{V: Version, Topic: t.Name}, PathDescriptor(t.Name))
		switch status.Code(err) {
		case codes.NotFound: // deleted since the listing
			continue
		case codes.FailedPrecondition: // a "json" topic with no records to infer its schema from yet
			continue
		}
		if err != nil {
			return err
		}
		if err := stream.Send(info); err != nil {
			return err
		}
	}
	return nil
}

// GetFlightInfo resolves a descriptor to one endpoint per partition, each
// with a ticket of offsets [from, to): time ranges are resolved to offsets
// here, and a range ending at the high watermark ends at the one read now.
func (s *Server) GetFlightInfo(ctx context.Context, d *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	c, err := decodeDescriptor(d)
	if err != nil {
		return nil, statusOf(err)
	}
	return s.flightInfo(ctx, c, d)
}

// GetSchema answers the schema of the descriptor's record batches.
func (s *Server) GetSchema(ctx context.Context, d *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	c, err := decodeDescriptor(d)
	if err != nil {
		return nil, statusOf(err)
	}
	if _, _, err := s.topicFor(ctx, c); err != nil {
		return nil, statusOf(err)
	}
	layout, err := s.layoutFor(ctx, c.Topic)
	if err != nil {
		return nil, statusOf(err)
	}
	return &flight.SchemaResult{Schema: flight.SerializeSchema(layout.Schema(), s.alloc)}, nil
}

// EndpointInfo is the JSON app_metadata of an endpoint: what its ticket
// reads, and the partition's bounds when GetFlightInfo answered.
type EndpointInfo struct {
	Partition      int32 `json:"partition"`
	From           int64 `json:"from"`
	To             int64 `json:"to"`
	LogStartOffset int64 `json:"log_start_offset"`
	HighWatermark  int64 `json:"high_watermark"`
}

func (s *Server) flightInfo(ctx context.Context, c *Command, d *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	id, cfg, err := s.topicFor(ctx, c)
	if err != nil {
		return nil, statusOf(err)
	}
	layout, err := s.layoutFor(ctx, c.Topic)
	if err != nil {
		return nil, statusOf(err)
	}
	info := &flight.FlightInfo{
		Schema:           flight.SerializeSchema(layout.Schema(), s.alloc),
		FlightDescriptor: d,
		TotalBytes:       -1, // unknown before the records are read
	}
	for _, p := range c.partitionsOf(cfg.Partitions) {
		r, err := s.resolve(ctx, c, p)
		if err != nil {
			return nil, statusOf(err)
		}
		t := ticket{V: Version, Topic: c.Topic, TopicID: id, Partition: p, From: r.From, To: r.To}
		meta, _ := json.Marshal(r)
		info.Endpoint = append(info.Endpoint, &flight.FlightEndpoint{Ticket: &flight.Ticket{Ticket: t.encode()}, AppMetadata: meta})
		info.TotalRecords += r.To - r.From
	}
	// The bounds were read from the topic of identity id; if it was
	// re-created meanwhile, they may be the new topic's.
	if id2, _, err := s.core.TopicID(ctx, c.Topic); err != nil {
		return nil, statusOf(err)
	} else if id2 != id {
		return nil, status.Errorf(codes.Aborted, "topic %q was deleted and re-created while its ranges were resolved; nothing was read: retry", c.Topic)
	}
	return info, nil
}

// resolve turns the command's range of partition p into offsets.
func (s *Server) resolve(ctx context.Context, c *Command, p int32) (*EndpointInfo, error) {
	at := func(pos core.Position) (int64, error) { return s.core.ListOffsets(ctx, c.Topic, p, pos) }
	logStart, err := at(core.Position{Kind: core.StartEarliest})
	if err != nil {
		return nil, err
	}
	hw, err := at(core.Position{Kind: core.StartLatest})
	if err != nil {
		return nil, err
	}
	r := &EndpointInfo{Partition: p, From: logStart, To: hw, LogStartOffset: logStart, HighWatermark: hw}
	where := fmt.Sprintf("partition %d of topic %q", p, c.Topic)
	if off, ok := c.FromOffset[p]; ok {
		switch {
		case off < logStart:
			return nil, status.Errorf(codes.OutOfRange, "from_offset %d of %s is below its log start %d (older records were deleted by retention): start at %d or later", off, where, logStart, logStart)
		case off > hw:
			return nil, status.Errorf(codes.OutOfRange, "from_offset %d of %s is past its high watermark %d: start at %d at most", off, where, hw, hw)
		}
		r.From = off
	} else if c.FromTime != nil {
		off, err := at(core.Position{Kind: core.StartTime, TimestampMs: int64(*c.FromTime)})
		if err != nil {
			return nil, err
		}
		r.From = min(max(off, logStart), hw)
	}
	if off, ok := c.ToOffset[p]; ok {
		switch {
		case off > hw:
			return nil, status.Errorf(codes.OutOfRange, "to_offset %d of %s is past its high watermark %d: end at %d at most, or leave to_offset out to read up to now", off, where, hw, hw)
		case off < logStart:
			return nil, status.Errorf(codes.OutOfRange, "to_offset %d of %s is below its log start %d (older records were deleted by retention): nothing of the range is left", off, where, logStart)
		case off < r.From:
			return nil, status.Errorf(codes.InvalidArgument, "to_offset %d of %s is below where the range starts (%d): the range is [from, to)", off, where, r.From)
		}
		r.To = off
	} else if c.ToTime != nil {
		off, err := at(core.Position{Kind: core.StartTime, TimestampMs: int64(*c.ToTime)})
		if err != nil {
			return nil, err
		}
		r.To = min(max(off, r.From), hw)
	}
	return r, nil
}

// Report is the JSON app_metadata of the last record batch of a DoGet
// stream: what the stream carried. A stream that ends without it ended
// early (its status says why).
type Report struct {
	V                   int     `json:"v"`
	Partition           int32   `json:"partition"`
	From                int64   `json:"from"`
	To                  int64   `json:"to"`
	Rows                int64   `json:"rows"`
	Invalid             int64   `json:"invalid"`               // rows whose value did not fit the topic's value schema
	FirstInvalidOffsets []int64 `json:"first_invalid_offsets"` // the offsets of the first of them (columnar.MaxReportedOffsets at most)
}

// ParseReport decodes a Report from a batch's app_metadata; ok is false
// when the metadata is not one.
func ParseReport(meta []byte) (r Report, ok bool) {
	if len(meta) == 0 || json.Unmarshal(meta, &r) != nil || r.V != Version {
		return Report{}, false
	}
	return r, true
}

// errRangeDone ends a DoGet's fetch once the range is read.
var errRangeDone = errors.New("flightserver: range read")

// DoGet streams a ticket's range as Arrow record batches, cut by
// BatchBytes, straight from the read path's decoded records; the last
// batch (zero rows for an empty range) carries the Report.
func (s *Server) DoGet(tkt *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	ctx := stream.Context()
	t, err := decodeTicket(tkt.GetTicket())
	if err != nil {
		return statusOf(err)
	}
	cost := s.cfg.StreamBytes()
	if err := s.mem.Acquire(ctx, cost); err != nil {
		return inContext(err, "waiting for memory for the stream (at most %d bytes of DoGet streams run at once, %d each); nothing was read", s.cfg.MemoryBytes, cost)
	}
	defer s.mem.Release(cost)
	where := fmt.Sprintf("partition %d of topic %q, offsets [%d, %d)", t.Partition, t.Topic, t.From, t.To)
	sameTopic := func() error {
		id, cfg, err := s.core.TopicID(ctx, t.Topic)
		switch {
		case err != nil:
			return inContext(err, "ticket for %s", where)
		case id != t.TopicID:
			return status.Errorf(codes.NotFound, "ticket for %s is of a topic that was deleted (topic %q now is another one, created since the ticket was issued): call GetFlightInfo again for tickets of the current topic", where, t.Topic)
		case t.Partition >= cfg.Partitions:
			return status.Errorf(codes.InvalidArgument, "ticket partition %d is out of range: topic %q has partitions 0-%d", t.Partition, t.Topic, cfg.Partitions-1)
		}
		return nil
	}
	if err := sameTopic(); err != nil {
		return err
	}
	// A range past the high watermark would wait for records that do not
	// exist yet (tickets from GetFlightInfo never are).
	hw, err := s.core.ListOffsets(ctx, t.Topic, t.Partition, core.Position{Kind: core.StartLatest})
	if err != nil {
		return inContext(err, "ticket for %s", where)
	}
	if t.To > hw {
		return status.Errorf(codes.OutOfRange, "ticket for %s ends past the partition's high watermark %d: this server did not issue it; call GetFlightInfo for tickets", where, hw)
	}
	layout, err := s.layoutFor(ctx, t.Topic)
	if err != nil {
		return statusOf(err)
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(layout.Schema()), ipc.WithAllocator(s.alloc))
	defer w.Close()
	b := layout.NewBuilder(s.alloc, t.Partition)
	defer b.Release()
	cut := func() error {
		rec := b.NewRecord()
		defer rec.Release()
		return w.Write(rec)
	}
	var rows int64
	next := t.From
	first := true
	if next < t.To {
		// Batches: the read path's decoded batches themselves, no copy
		// of their records; read-only (the builder copies what it keeps).
		req := &core.FetchRequest{Topic: t.Topic, Partition: t.Partition, Start: core.Position{Kind: core.StartOffset, Offset: next},
			MaxBytes: s.cfg.ReadBytes, Follow: true, Batches: true}
		err = s.core.Fetch(ctx, req, func(r *core.FetchResult) error {
			if first {
				// The fetch loaded the topic by name: check that it is
				// still the ticket's.
				if err := sameTopic(); err != nil {
					return err
				}
				first = false
			}
			for bi := range r.Batches {
				recs := r.Batches[bi].Records
				// Offsets rise: the rows of the range end before the
				// first record at or past To.
				end := sort.Search(len(recs), func(i int) bool { return recs[i].Offset >= t.To })
				for recs = recs[:end]; len(recs) > 0; {
					n := b.AppendRecords(recs, s.cfg.BatchBytes)
					if n > 0 {
						rows += int64(n)
						next = recs[n-1].Offset + 1
						recs = recs[n:]
					}
					if next >= t.To {
						return errRangeDone // the last rows go out with the report
					}
					if b.Bytes() >= s.cfg.BatchBytes {
						if err := cut(); err != nil {
							return err
						}
					}
				}
				if end < len(r.Batches[bi].Records) {
					return errRangeDone
				}
			}
			return nil
		})
		if _, ok := status.FromError(err); ok && err != nil {
			return err
		}
		if !errors.Is(err, errRangeDone) {
			return inContext(err, "reading %s (%d rows sent, up to offset %d)", where, rows, next)
		}
	}
	rep := b.Report()
	meta, _ := json.Marshal(Report{V: Version, Partition: t.Partition, From: t.From, To: t.To, Rows: rows,
		Invalid: rep.Count, FirstInvalidOffsets: append([]int64{}, rep.FirstOffsets...)})
	rec := b.NewRecord()
	defer rec.Release()
	if err := w.WriteWithAppMetadata(rec, meta); err != nil {
		return statusOf(err)
	}
	return nil
}

// DoPut is refused: the Flight endpoint is read-only.
func (s *Server) DoPut(flight.FlightService_DoPutServer) error {
	return status.Error(codes.Unimplemented, "strata's Flight endpoint is read-only: produce records with the gRPC API (strata produce, the Go client)")
}

// DoExchange is refused: the Flight endpoint is read-only.
func (s *Server) DoExchange(flight.FlightService_DoExchangeServer) error {
	return status.Error(codes.Unimplemented, "strata's Flight endpoint serves GetFlightInfo, GetSchema, DoGet and ListFlights only")
}

// DoAction is refused: the server has no actions.
func (s *Server) DoAction(*flight.Action, flight.FlightService_DoActionServer) error {
	return status.Error(codes.Unimplemented, "strata's Flight endpoint has no actions: it serves GetFlightInfo, GetSchema, DoGet and ListFlights")
}
