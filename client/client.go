// Package client is the Go client of a strata cluster (or of a single
// broker): a Producer that batches, lingers, pipelines and retries, a
// Consumer that reads assigned partitions or joins a consumer group
// (heartbeats in the background, joins again when the group forgets it,
// commits per an explicitly chosen delivery mode), and a ShareConsumer
// of a share group (queue semantics: receive under a lease, settle each
// record by its receipt; Run handles records with leases extended in the
// background; Redrive moves dead letters back).
//
// Routing (route.go, router.go): Dial takes one or more seed brokers; the
// client learns the cluster from the Metadata RPC of whichever broker
// answers, keeps one connection per broker it talks to, and sends each
// partition's writes to its owner, each group's calls to its coordinator,
// reads to the owner (else any broker) and admin calls to any live
// broker. NOT_OWNER answers are followed to the owner they name; a broker
// that cannot be reached is replaced once the metadata names another
// owner. A broker without the Metadata RPC is a single broker that gets
// every call.
//
// Invariants and caveats:
//   - A Producer keeps at most MaxInFlight requests in flight, at most
//     BatchSize records and BatchBytes of payload per request (a larger
//     record goes alone) and at most one batch being filled
//     per partition; Send blocks (honouring its context) while the
//     record's partition has a full batch that cannot go out yet, so
//     memory is bounded. A request holds one partition's records and goes
//     to that partition's owner.
//   - Retries resend a whole request after a transient failure (gRPC
//     UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED), at most
//     WithRetries times with capped, fully jittered backoff; a retry after
//     the broker could not be reached first waits until the metadata names
//     a new owner or the broker answers again (at most the client's
//     failover timeout per request, in all). A NOT_OWNER answer stored nothing: the request is
//     resent to the owner it names (at most 10 redirects per request). The
//     producer is idempotent by default: it numbers each partition's
//     records, so a retry after a lost response is stored once, on
//     whichever broker owns the partition by then, and batches land in
//     order. With WithIdempotence(false), a retry can store a record twice
//     and a retried batch can land after a later one.
//   - The idempotent producer sends no batch without a producer id, and a
//     batch gets its sequence numbers when it is sent. While a batch of a
//     partition waits for its retry or redirect, no later batch of that
//     partition is sent, and resends go out in sequence order. At most 8
//     batches of a partition are outstanding, counted from its oldest
//     unresolved one (the broker recognizes a retry among a producer's last
//     8 batches of a partition). After a batch fails for good (a gap in its
//     partition's sequence), nothing more is sent until every batch sent
//     under the old producer id is resolved; then the producer takes a new
//     id.
//   - A produce is acknowledged per WithAcks: durable (the default) once
//     the records are in the object store; see docs/durability.md.
//   - A group Consumer never commits an offset for a record it has not
//     returned from Poll. AtLeastOnce commits a Poll's records at the next
//     Poll (or Commit/Close); AtMostOnce commits them before Poll returns
//     and returns only the records whose commit succeeded. Seek moves a
//     group consumer's position back only, so that a caller can hand back
//     records it Polled but did not handle.
//   - A Consumer and a PartitionStream ask for stored blocks unless told
//     not to (stored.go, docs/fetch.md): every block's CRC32C, decoding and
//     index entry are checked before any of its records is returned; a
//     block that fails is a *CorruptBlockError and the position does not
//     move past it. Records come out in offset order whatever the number
//     of decoding goroutines (at most GOMAXPROCS per response, and a
//     PartitionStream holds at most twice its workers' blocks ahead).
//   - A ShareConsumer receives from every broker owning a partition of
//     its topic and settles each receipt at its partition's owner
//     (share.go). Run never acks a message whose handler did not return
//     nil, extends each lease every half visibility while its handler
//     runs, and settles every message it received before it returns
//     (what Run is stopping from is released, not nacked). It holds at
//     most its workers plus WithPrefetch messages between receive and
//     handler, and releases one that waited half its lease there (counted
//     from the receive's answer), so a prefetch never lets a lease run
//     out unhandled; settlements are coalesced in the background, so a
//     worker never waits for its message's settle call. Redrive is
//     at-least-once: it commits the dead-letter topic's offsets only after
//     the records are produced.
//   - A group Consumer learns a rebalance from its heartbeat or at once
//     from a fetch or commit refused for a stale generation; it never
//     repeats a refused fetch without having learned something new, and
//     Poll waits (up to the max wait) rather than spin. When the group's
//     coordinator no longer knows the member (its session expired, the
//     broker restarted, or the group moved to another coordinator), the
//     consumer joins again (jittered backoff between failed joins) and
//     resumes from the group's committed offsets. A group member's calls
//     and fetches go to the coordinator, the broker that knows the member.
//
// Concurrency: Client, Producer, Consumer, PartitionStream and
// ShareConsumer are safe for concurrent use; each owns its goroutines (a
// Producer's per-request goroutines end when their requests resolve; a
// Consumer's heartbeat goroutine ends in Close, its block decoders before
// Poll returns; a PartitionStream's reader and decoders end in its Close,
// which waits for them (the Client's Close ends them too); a
// ShareConsumer's end before the
// call that started them returns; the Client's background metadata
// refreshes end in Close, which waits for them).
package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// Record is what producers send and consumers receive.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp int64 // ms since the epoch; 0 on Send: the broker's clock
	Key       []byte
	Value     []byte
	Headers   map[string][]byte

	// Queue settings of a record sent (docs/queues.md), written as its
	// strata-* headers; on a received record they are read back from them.
	// Delay: no share group hands the record out before this long after
	// the broker received it (0 to 366 days; the broker's clock decides).
	// DeliverAt: ... nor before this time (set one of the two). Priority:
	// 0 (the default, lowest) to 9. MsgID: a deduplication id
	// (docs/dedup.md): a second record with the same id within the
	// topic's window is acknowledged but not stored.
	Delay     time.Duration
	DeliverAt time.Time
	Priority  int
	MsgID     string
}

// Header names of the queue settings (see Record).
const (
	HeaderDelay     = "strata-delay-ms"
	HeaderDeliverAt = "strata-deliver-at"
	HeaderPriority  = "strata-priority"
	HeaderMsgID     = "strata-msg-id"
)

// Option configures a Client.
type Option func(*clientConfig)

type clientConfig struct {
	dial     []grpc.DialOption
	perRPC   []grpc.DialOption // per-call credentials (tls.go): they leave the transport's default alone
	tls      bool              // WithTLS set the transport credentials
	failover time.Duration
}

// WithDialOptions adds gRPC dial options (TLS, interceptors, ...), used
// for the connection to every broker. Without transport credentials here
// or WithTLS, connections are plaintext.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *clientConfig) { c.dial = append(c.dial, opts...) }
}

// WithFailoverTimeout bounds how long a call (or the retries of a produce
// request, in all) waits for a broker that cannot be reached to be
// replaced: the client refreshes its metadata, with backoff and full
// jitter, until it names another owner or the broker answers again.
// Default 30s, about ten times the cluster's failure detection.
func WithFailoverTimeout(d time.Duration) Option {
	return func(c *clientConfig) { c.failover = max(d, 0) }
}

// Client is a connection to a strata cluster (or to one broker): one gRPC
// connection per broker it talks to, dialed when first used, and the
// metadata that routes each call (route.go).
type Client struct {
	cfg   clientConfig
	seeds []string
	api   stratapb.StrataClient // routes every call (router)
	// closed ends with Close: the background work of the client (metadata
	// refreshes) and of its consumers (heartbeats, rejoins) stops with it.
	closed context.Context
	close  context.CancelFunc
	bg     sync.WaitGroup // background metadata refreshes

	mu    sync.Mutex // guards the fields below
	conns map[string]*grpc.ClientConn
	shut  bool
	md    metadata
}

// maxAnswerBytes is the largest answer the client accepts by default.
const maxAnswerBytes = 64 << 20

// Dial returns a client of the cluster whose brokers include addrs: one
// HOST:PORT or a comma-separated list of them (seeds; any one that
// answers is enough, the client learns the others from it). Dial does no
// I/O: it fails only on a malformed address or option, and the first call
// connects.
func Dial(addrs string, opts ...Option) (*Client, error) {
	cfg := clientConfig{failover: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	base := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		// Reconnect to a restarted broker within seconds, not gRPC's
		// default of up to two minutes.
		Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	}),
		// Answers up to maxAnswerBytes: a fetch may ask for up to the
		// broker's cap (16 MiB) and gets at least one record whatever its
		// max bytes; gRPC's default of 4 MiB refused larger answers
		// (RESOURCE_EXHAUSTED after the broker had read them). A share
		// receive does not retry such a refusal (transient), which would
		// lease the records again each time. WithDialOptions come later
		// and win.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAnswerBytes)),
	}
	if !cfg.tls {
		// Plaintext unless WithTLS; transport credentials given through
		// WithDialOptions come later and win.
		base = append(base, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	cfg.dial = append(append(base, cfg.dial...), cfg.perRPC...)
	var seeds []string
	for _, a := range strings.Split(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(seeds, a) {
			seeds = append(seeds, a)
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("client: no broker address in %q: give HOST:PORT, or a comma-separated list of them", addrs)
	}
	closed, closeFn := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, seeds: seeds, closed: closed, close: closeFn, conns: map[string]*grpc.ClientConn{},
		md: metadata{topics: map[string][]string{}, groups: map[string]string{}, down: map[string]time.Time{}}}
	c.api = router{c}
	for _, a := range seeds {
		if _, err := c.conn(a); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// API is the gRPC API of the cluster, for admin calls: each call goes to
// the broker that should answer it (a partition's produce and fetch to its
// owner, a group's calls to its coordinator, the rest to any live broker),
// following NOT_OWNER redirects and failing over when a broker cannot be
// reached (router).
func (c *Client) API() stratapb.StrataClient { return c.api }

// Close closes every connection and stops the background work (metadata
// refreshes; heartbeats and rejoins of the consumers made from this
// client); a consumer left unclosed then behaves as a dead member (no
// leave: its session expires). It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.shut = true // no new connection, no new background refresh
	c.mu.Unlock()
	c.close()
	c.bg.Wait()
	c.mu.Lock()
	conns := c.conns
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// ErrClientClosed is what a call made after Close returns.
var ErrClientClosed = status.Error(codes.Canceled, "client: closed")

// conn returns the connection to the broker at addr, dialing it (without
// I/O) the first time.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return nil, ErrClientClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.cfg.dial...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// stub is the API of the broker at addr.
func (c *Client) stub(addr string) (stratapb.StrataClient, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	return stratapb.NewStrataClient(cc), nil
}

// CreateTopic creates a topic with default retention and compression.
func (c *Client) CreateTopic(ctx context.Context, name string, partitions int32) error {
	_, err := c.api.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: name, Partitions: partitions}})
	return err
}

func toProto(r *Record) *stratapb.Record {
	out := &stratapb.Record{}
	fillProto(out, r)
	return out
}

// fillProto sets the zero record out to r's wire form.
func fillProto(out *stratapb.Record, r *Record) {
	out.Key, out.Value, out.TimestampMs = r.Key, r.Value, r.Timestamp
	for k, v := range r.Headers {
		out.Headers = append(out.Headers, &stratapb.Header{Key: k, Value: v})
	}
	add := func(k, v string) { out.Headers = append(out.Headers, &stratapb.Header{Key: k, Value: []byte(v)}) }
	if r.Delay != 0 {
		add(HeaderDelay, strconv.FormatInt(r.Delay.Milliseconds(), 10))
	}
	if !r.DeliverAt.IsZero() {
		add(HeaderDeliverAt, strconv.FormatInt(r.DeliverAt.UnixMilli(), 10))
	}
	if r.Priority != 0 {
		add(HeaderPriority, strconv.Itoa(r.Priority))
	}
	if r.MsgID != "" {
		add(HeaderMsgID, r.MsgID)
	}
}

func fromProto(topic string, r *stratapb.Record) Record {
	out := Record{Topic: topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.TimestampMs, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		out.Headers = make(map[string][]byte, len(r.Headers))
		for _, h := range r.Headers {
			setHeader(&out, h.Key, h.Value)
		}
	}
	return out
}
