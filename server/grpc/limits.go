package grpcserver

// What one client request, and all requests together, may cost the broker.
//
// gRPC decodes a whole message before a handler runs, and a decoded
// message costs far more than its wire bytes when it carries many small
// parts: an empty record is 2 bytes on the wire and ~250 bytes of heap once
// decoded and copied into a batch. So the limits are counted in cost
// units, which charge every record core.RecordOverheadBytes and every header
// core.HeaderOverheadBytes on top of its key and value, and they are enforced
// in three places:
//
//   - the transport: grpc.MaxRecvMsgSize (Limits.MaxMessageBytes) and
//     static flow-control windows (ServerOptions);
//   - the server codec (serverCodec): a produce request's wire bytes are
//     scanned with protowire, without allocating, and a request over a
//     limit, or one the broker-wide produce budget cannot take, is refused
//     before it is decoded;
//   - the handlers: Produce holds its share of the produce budget until it
//     answers; Fetch takes its share of the fetch budget before it reads
//     and builds a response, and the share follows the encoded response
//     into the transport until the last byte is written to the socket (or
//     the stream ends).
//
// A server built without ServerOptions still enforces every per-request
// limit and both budgets in the handlers; only the refusal before decoding
// and the accounting of bytes queued in the transport are lost.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
)

// Limits bounds what clients can make the broker hold in memory. Every
// size is in cost units (see core.RecordOverheadBytes).
type Limits struct {
	// MaxMessageBytes is the largest gRPC message the server accepts
	// (grpc.MaxRecvMsgSize); larger ones are refused by the transport
	// with RESOURCE_EXHAUSTED before anything is decoded. Default 16 MiB:
	// room for a full-size batch, small enough that one message decodes in
	// bounded memory.
	MaxMessageBytes int
	// MaxRecordsPerRequest bounds the records of one produce request.
	// Default 100,000.
	MaxRecordsPerRequest int
	// MaxHeadersPerRecord bounds the headers of one record. Default 1,000.
	MaxHeadersPerRecord int
	// MaxProduceBytes bounds the cost of one produce request. Default
	// 32 MiB: a 16 MiB message of payload plus its per-record overhead.
	MaxProduceBytes int64
	// ProduceBufferBytes bounds the cost of all produce requests the
	// broker holds at once (decoded, being appended, or waiting for their
	// ack). A request that does not fit is refused with
	// RESOURCE_EXHAUSTED (nothing of it is written) and the client
	// retries after a backoff. Default 256 MiB.
	ProduceBufferBytes int64

	// MaxFetchBytes caps a fetch request's max_bytes; larger values are
	// clamped silently (a response is a batch, not a promise of size).
	// Default 16 MiB.
	MaxFetchBytes int32
	// FetchStreamBytes bounds the response bytes one fetch stream has
	// built or queued in the transport and not yet written to its socket:
	// a stream builds its next response only while what it has
	// outstanding plus the new one fits (one response always may). So a
	// reader that never reads costs at most about this much. Default
	// 4 MiB.
	FetchStreamBytes int64
	// FetchBufferBytes bounds the same across all fetch streams. A stream
	// that cannot get its share waits (blocked, not polling) until other
	// streams' bytes reach their sockets or those streams end. Default
	// 256 MiB.
	FetchBufferBytes int64

	// StreamWindowBytes and ConnWindowBytes are the HTTP/2 flow-control
	// windows the server grants its clients (grpc.InitialWindowSize and
	// grpc.InitialConnWindowSize): how much a client may send on a stream,
	// and on a connection, before the broker reads it. Setting them fixes
	// the windows (no BDP growth). Defaults 1 MiB and 8 MiB.
	StreamWindowBytes int32
	ConnWindowBytes   int32
	// MaxStreamsPerConn bounds concurrent calls on one connection
	// (grpc.MaxConcurrentStreams). Default 1,000.
	MaxStreamsPerConn uint32
}

// DefaultLimits returns the defaults described on Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:      16 << 20,
		MaxRecordsPerRequest: 100_000,
		MaxHeadersPerRecord:  1000,
		MaxProduceBytes:      32 << 20,
		ProduceBufferBytes:   256 << 20,
		MaxFetchBytes:        16 << 20,
		FetchStreamBytes:     4 << 20,
		FetchBufferBytes:     256 << 20,
		StreamWindowBytes:    1 << 20,
		ConnWindowBytes:      8 << 20,
		MaxStreamsPerConn:    1000,
	}
}

// Validate reports the first invalid field.
func (l *Limits) Validate() error {
	switch {
	case l.MaxMessageBytes <= 0 || l.MaxRecordsPerRequest <= 0 || l.MaxHeadersPerRecord < 0 || l.MaxProduceBytes <= 0 || l.ProduceBufferBytes <= 0:
		return errors.New("grpcserver: Limits: MaxMessageBytes, MaxRecordsPerRequest, MaxProduceBytes and ProduceBufferBytes must be positive, MaxHeadersPerRecord not negative")
	case l.MaxFetchBytes <= 0 || l.FetchStreamBytes <= 0 || l.FetchBufferBytes <= 0 || l.MaxStreamsPerConn == 0:
		return errors.New("grpcserver: Limits: MaxFetchBytes, FetchStreamBytes, FetchBufferBytes and MaxStreamsPerConn must be positive")
	case l.StreamWindowBytes < 64<<10 || l.ConnWindowBytes < 64<<10:
		return errors.New("grpcserver: Limits: StreamWindowBytes and ConnWindowBytes must be at least 64 KiB (the HTTP/2 minimum gRPC accepts)")
	case l.ProduceBufferBytes < l.MaxProduceBytes:
		return fmt.Errorf("grpcserver: Limits: ProduceBufferBytes %d is below MaxProduceBytes %d: a full-size request could never be admitted", l.ProduceBufferBytes, l.MaxProduceBytes)
	}
	return nil
}

// Costs.

func recordCost(r *stratapb.Record) int64 {
	n := int64(core.RecordOverheadBytes + len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(core.HeaderOverheadBytes + len(h.Key) + len(h.Value))
	}
	return n
}

// produceShape is what the limits look at in a produce request.
type produceShape struct {
	records      int
	cost         int64 // recordCost summed
	maxHeaders   int   // the most headers on one record
	maxHeadersAt int   // the first record with that many
}

func shapeOf(req *stratapb.ProduceRequest) produceShape {
	var s produceShape
	for i, r := range req.Records {
		if len(r.Headers) > s.maxHeaders {
			s.maxHeaders, s.maxHeadersAt = len(r.Headers), i
		}
		s.cost += recordCost(r)
	}
	s.records = len(req.Records)
	return s
}

// Field numbers of api/proto/strata/v1/strata.proto that scanProduce reads.
const (
	produceRecordsField = 3 // ProduceRequest.records
	recordKeyField      = 1 // Record.key
	recordValueField    = 2 // Record.value
	recordHeadersField  = 3 // Record.headers
	headerKeyField      = 1 // Header.key
	headerValueField    = 2 // Header.value
)

// scanProduce computes the shape of an encoded ProduceRequest from its
// wire bytes without allocating. ok is false when b is not valid wire
// format as far as the scan looks; proto.Unmarshal then reports why. For
// every b that proto.Unmarshal accepts, scanProduce returns ok and the
// shape of the decoded request (FuzzScanProduce): a field that appears
// twice counts once, as decoding keeps the last, and a field with an
// unexpected wire type is skipped, as decoding keeps it as unknown.
func scanProduce(b []byte) (s produceShape, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, false
		}
		b = b[n:]
		if num == produceRecordsField && typ == protowire.BytesType {
			rec, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, false
			}
			b = b[n:]
			cost, headers, ok := scanRecord(rec)
			if !ok {
				return s, false
			}
			if headers > s.maxHeaders {
				s.maxHeaders, s.maxHeadersAt = headers, s.records
			}
			s.cost += cost
			s.records++
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return s, false
		}
		b = b[n:]
	}
	return s, true
}

func scanRecord(b []byte) (cost int64, headers int, ok bool) {
	var key, value int
	var hcost int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == recordKeyField || num == recordValueField || num == recordHeadersField) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, 0, false
			}
			b = b[n:]
			switch num {
			case recordKeyField:
				key = len(v)
			case recordValueField:
				value = len(v)
			default:
				hk, hv, ok := scanHeader(v)
				if !ok {
					return 0, 0, false
				}
				headers++
				hcost += int64(core.HeaderOverheadBytes + hk + hv)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, 0, false
		}
		b = b[n:]
	}
	return int64(core.RecordOverheadBytes+key+value) + hcost, headers, true
}

func scanHeader(b []byte) (key, value int, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == headerKeyField || num == headerValueField) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, 0, false
			}
			b = b[n:]
			if num == headerKeyField {
				key = len(v)
			} else {
				value = len(v)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, 0, false
		}
		b = b[n:]
	}
	return key, value, true
}

// checkShape refuses a produce request over a per-request limit, with
// INVALID_ARGUMENT; nothing of it is written.
func (l *Limits) checkShape(s produceShape) error {
	switch {
	case s.records > l.MaxRecordsPerRequest:
		return status.Errorf(codes.InvalidArgument, "the request has %d records, over the limit of %d per request; nothing was written: split it into smaller requests", s.records, l.MaxRecordsPerRequest)
	case s.maxHeaders > l.MaxHeadersPerRecord:
		return status.Errorf(codes.InvalidArgument, "record %d has %d headers, over the limit of %d per record; nothing was written: send fewer headers (or move the data into the value)", s.maxHeadersAt, s.maxHeaders, l.MaxHeadersPerRecord)
	case s.cost > l.MaxProduceBytes:
		return status.Errorf(codes.InvalidArgument, "the request costs %d bytes (keys, values and headers plus %d bytes per record and %d per header), over the limit of %d per request; nothing was written: split it into smaller requests", s.cost, core.RecordOverheadBytes, core.HeaderOverheadBytes, l.MaxProduceBytes)
	}
	return nil
}

// clampFetchBytes turns a request's max_bytes into the bytes a response
// may hold: 0 means 1 MiB, anything over MaxFetchBytes is clamped.
func (l *Limits) clampFetchBytes(req int32) int {
	switch {
	case req <= 0:
		return min(1<<20, int(l.MaxFetchBytes))
	case req > l.MaxFetchBytes:
		return int(l.MaxFetchBytes)
	}
	return int(req)
}

// A budget is a byte count shared by many holders. Waiters block on a
// channel closed at every release; nobody polls.
type budget struct {
	name  string
	limit int64

	mu      sync.Mutex    // guards the fields below and every lease and stream of this budget
	used    int64         // bytes held by leases
	freed   chan struct{} // closed and replaced when bytes are released
	waiting int           // streams blocked in acquire
	sending int           // streams inside SendMsg with their response encoded (handed to the transport)
	changed chan struct{} // closed and replaced on any change above (for watchers, never for waiters)
}

func newBudget(name string, limit int64) *budget {
	return &budget{name: name, limit: limit, freed: make(chan struct{}), changed: make(chan struct{})}
}

// changedLocked wakes watchers. Called with mu held.
func (b *budget) changedLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// releasedLocked wakes waiters. Called with mu held.
func (b *budget) releasedLocked() {
	close(b.freed)
	b.freed = make(chan struct{})
	b.changedLocked()
}

// budgetState is a snapshot of a budget, with a channel closed at its next
// change.
type budgetState struct {
	used, limit      int64
	waiting, sending int
	changed          <-chan struct{}
}

func (b *budget) state() budgetState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return budgetState{used: b.used, limit: b.limit, waiting: b.waiting, sending: b.sending, changed: b.changed}
}

// tryAcquire takes n bytes at once or fails with RESOURCE_EXHAUSTED.
func (b *budget) tryAcquire(n int64) (*lease, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit && b.used > 0 {
		return nil, status.Errorf(codes.ResourceExhausted, "the broker holds %d bytes of %s in memory and this request needs %d more, over its limit of %d; nothing was written: retry after a backoff", b.used, b.name, n, b.limit)
	}
	b.used += n
	b.changedLocked()
	return &lease{b: b, n: n}, nil
}

// A lease holds n bytes of a budget (and of its stream, for a fetch).
type lease struct {
	b *budget
	s *fetchStream // nil for a produce lease
	n int64        // guarded by b.mu
}

// Size is the bytes the lease holds (core.FetchLease).
func (l *lease) Size() int64 {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	return l.n
}

// resize makes the lease hold n bytes, without waiting: the encoded size
// of a response replaces the estimate it was built under.
func (l *lease) resize(n int64) {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	d := n - l.n
	l.n = n
	if l.s != nil && l.s.dropped {
		return
	}
	l.b.used += d
	if l.s != nil {
		l.s.out += d
	}
	if d < 0 {
		l.b.releasedLocked()
	} else {
		l.b.changedLocked()
	}
}

// Release gives the bytes back (core.FetchLease). It is idempotent.
func (l *lease) Release() { l.release() }

// release gives the bytes back. It is idempotent; a nil lease is a no-op.
func (l *lease) release() {
	if l == nil {
		return
	}
	l.resize(0)
}

// A fetchStream is one Fetch call's share of the fetch budget.
type fetchStream struct {
	b     *budget
	limit int64
	stop  func() bool // stops the AfterFunc that drops the stream

	// guarded by b.mu
	out     int64 // bytes of this stream's leases
	dropped bool  // the stream's context ended: its leases are no longer counted
}

// stream starts a Fetch call's share. When ctx ends, whatever the stream
// still has outstanding stops counting: the transport drops a dead
// stream's queued bytes (not always through the codec's release).
func (b *budget) stream(ctx context.Context, limit int64) *fetchStream {
	s := &fetchStream{b: b, limit: limit}
	s.stop = context.AfterFunc(ctx, s.drop)
	return s
}

func (s *fetchStream) drop() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.dropped {
		return
	}
	s.dropped = true
	s.b.used -= s.out
	s.out = 0
	s.b.releasedLocked()
}

// acquire waits until the stream may build a response of n bytes: what it
// has outstanding plus n fits its limit (or it has nothing outstanding),
// and the budget has n bytes free. n is capped at the budget's limit.
func (s *fetchStream) acquire(ctx context.Context, n int64) (*lease, error) {
	b := s.b
	n = min(n, b.limit)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if s.dropped || ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if (s.out == 0 || s.out+n <= s.limit) && b.used+n <= b.limit {
			s.out += n
			b.used += n
			b.changedLocked()
			return &lease{b: b, s: s, n: n}, nil
		}
		freed := b.freed
		b.waiting++
		b.changedLocked()
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiting--
		b.changedLocked()
	}
}

// finish waits until everything the stream sent has been written to its
// socket, or its context ends; then the stream stops counting. A Fetch
// handler calls it before it returns, so a reader that stops reading
// keeps its bytes counted for as long as the transport holds them.
func (s *fetchStream) finish(ctx context.Context) {
	b := s.b
	b.mu.Lock()
	for s.out > 0 && !s.dropped && ctx.Err() == nil {
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	s.stop()
	s.drop()
}

// leasedResponse is a FetchResponse with the lease it was built under.
// serverCodec hands the lease to the encoded bytes; any other codec
// marshals the embedded response.
type leasedResponse struct {
	*stratapb.FetchResponse
	lease       *lease
	transferred bool // set by serverCodec.Marshal: the buffer releases the lease
}

// sendLeased sends out, charged to l. With serverCodec the lease follows
// the encoded bytes until the transport has written them, and out is
// garbage once encoded (the caller must not use it after); otherwise the
// lease ends when SendMsg returns.
func (s *fetchStream) sendLeased(stream grpc.ServerStream, out *stratapb.FetchResponse, l *lease) error {
	m := &leasedResponse{FetchResponse: out, lease: l}
	err := stream.SendMsg(m)
	if !m.transferred {
		l.release()
		return err
	}
	s.b.mu.Lock()
	s.b.sending-- // counted by serverCodec.Marshal
	s.b.changedLocked()
	s.b.mu.Unlock()
	return err
}

// limiter holds the broker's budgets and the codec's admissions.
type limiter struct {
	cfg     Limits
	produce *budget
	fetch   *budget
	// admitted maps a ProduceRequest decoded by serverCodec to what the
	// codec decided: a lease to hold, or a refusal. Produce takes it out.
	// gRPC calls the handler right after a successful decode (the server
	// has no interceptors), so every entry is taken.
	admitted sync.Map // *stratapb.ProduceRequest -> *admission
}

type admission struct {
	lease *lease
	err   error
}

func newLimiter(cfg Limits) *limiter {
	return &limiter{
		cfg:     cfg,
		produce: newBudget("produce requests", cfg.ProduceBufferBytes),
		fetch:   newBudget("fetch responses", cfg.FetchBufferBytes),
	}
}

// admitProduce returns the lease req holds while Produce runs, or the
// error that refuses it. It takes the codec's decision when there is one,
// and otherwise checks the decoded request itself.
func (l *limiter) admitProduce(req *stratapb.ProduceRequest) (*lease, error) {
	if v, ok := l.admitted.LoadAndDelete(req); ok {
		a := v.(*admission)
		return a.lease, a.err
	}
	s := shapeOf(req)
	if err := l.cfg.checkShape(s); err != nil {
		return nil, err
	}
	return l.produce.tryAcquire(s.cost)
}

// serverCodec is the broker's gRPC codec: protobuf, plus the produce
// pre-scan and the fetch-response accounting.
type serverCodec struct {
	proto encoding.CodecV2
	lim   *limiter
}

var _ encoding.CodecV2 = (*serverCodec)(nil)

func (c *serverCodec) Name() string { return "proto" }

func (c *serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*stratapb.ProduceRequest)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	s, ok := scanProduce(b)
	if !ok {
		return proto.Unmarshal(b, req) // fails, and says why
	}
	if err := c.lim.cfg.checkShape(s); err != nil {
		c.lim.admitted.Store(req, &admission{err: err})
		return nil // decoded nothing; Produce answers with err
	}
	l, err := c.lim.produce.tryAcquire(s.cost)
	if err != nil {
		c.lim.admitted.Store(req, &admission{err: err})
		return nil
	}
	if err := proto.Unmarshal(b, req); err != nil {
		l.release()
		return err
	}
	c.lim.admitted.Store(req, &admission{lease: l})
	return nil
}

func (c *serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	lr, ok := v.(*leasedResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	size := proto.Size(lr.FetchResponse)
	if mem.IsBelowBufferPoolingThreshold(size) {
		return c.proto.Marshal(lr.FetchResponse)
	}
	pool := mem.DefaultBufferPool()
	if len(lr.Blocks) > 0 {
		// Stored blocks go into the transport without a copy; the lease
		// ends with the last piece (stored.go).
		data, n, err := marshalStored(lr.FetchResponse, pool, lr.lease.release)
		if err != nil {
			return nil, err
		}
		lr.lease.resize(int64(n))
		lr.handedOver()
		return data, nil
	}
	buf := pool.Get(size)
	if _, err := (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend((*buf)[:0], lr.FetchResponse); err != nil {
		pool.Put(buf)
		return nil, err
	}
	lr.lease.resize(int64(cap(*buf)))
	lr.handedOver()
	return mem.BufferSlice{mem.NewBuffer(buf, &leasePool{BufferPool: pool, lease: lr.lease})}, nil
}

// handedOver records that the encoded response, and with it the lease,
// now belongs to the transport.
func (lr *leasedResponse) handedOver() {
	lr.lease.b.mu.Lock()
	lr.lease.b.sending++
	lr.lease.b.changedLocked()
	lr.lease.b.mu.Unlock()
	lr.transferred = true
	// Drop the message tree: a send blocked on a reader that does not
	// read then holds the encoded bytes (which the lease counts) and not
	// the several times larger decoded records.
	lr.FetchResponse = nil
}

// leasePool releases a response's lease when the transport frees its
// buffer: the bytes have been written to the socket, or dropped with the
// stream.
type leasePool struct {
	mem.BufferPool
	lease *lease
}

func (p *leasePool) Put(b *[]byte) {
	p.BufferPool.Put(b)
	p.lease.release()
}

// ServerOptions returns the gRPC server options the broker's limits need:
// the message size cap, fixed flow-control windows, the stream cap, and
// the codec that refuses oversized produce requests before decoding them
// and follows fetch responses into the transport.
func (s *Server) ServerOptions() []grpc.ServerOption {
	l := s.cfg.Limits
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxMessageBytes),
		grpc.InitialWindowSize(l.StreamWindowBytes),
		grpc.InitialConnWindowSize(l.ConnWindowBytes),
		grpc.MaxConcurrentStreams(l.MaxStreamsPerConn),
		grpc.ForceServerCodecV2(&serverCodec{proto: encoding.GetCodecV2("proto"), lim: s.lim}),
	}
}
