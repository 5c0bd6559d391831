// Package client is the Go client of a strata broker: a Producer that
// batches, lingers, pipelines and retries, and a Consumer that reads
// assigned partitions or joins a consumer group (heartbeats in the
// background, joins again when the broker forgets it, commits per an
// explicitly chosen delivery mode).
//
// Invariants and caveats:
//   - A Producer keeps at most MaxInFlight requests in flight, at most
//     BatchSize records per request and at most one batch being filled
//     per partition; Send blocks (honouring its context) while the
//     record's partition has a full batch that cannot go out yet, so
//     memory is bounded.
//   - Retries resend a whole request after a transient failure (gRPC
//     UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED). The
//     producer is idempotent by default: it numbers each partition's
//     records, so a retry after a lost response is stored once and batches
//     land in order. With WithIdempotence(false), a retry can store a record
//     twice and a retried batch can land after a later one.
//   - The idempotent producer sends no batch without a producer id, and a
//     batch gets its sequence numbers when it is sent. While a batch of a
//     partition waits for its retry, no later batch of that partition is
//     sent, and retries go out in sequence order. At most 8 batches of a
//     partition are outstanding, counted from its oldest unresolved one
//     (the broker recognizes a retry among a producer's last 8 batches of a
//     partition). After a batch fails for good (a gap in its partition's
//     sequence), nothing more is sent until every batch sent under the old
//     producer id is resolved; then the producer takes a new id.
//   - A produce is acknowledged per WithAcks: durable (the default) once
//     the records are in the object store; see docs/durability.md.
//   - A group Consumer never commits an offset for a record it has not
//     returned from Poll. AtLeastOnce commits a Poll's records at the next
//     Poll (or Commit/Close); AtMostOnce commits them before Poll returns
//     and returns only the records whose commit succeeded. Seek moves a
//     group consumer's position back only, so that a caller can hand back
//     records it Polled but did not handle.
//   - A group Consumer learns a rebalance from its heartbeat or at once
//     from a fetch or commit refused for a stale generation; it never
//     repeats a refused fetch without having learned something new, and
//     Poll waits (up to the max wait) rather than spin. When the broker no
//     longer knows the member (its session expired, or the broker
//     restarted), the consumer joins again (jittered backoff between failed
//     joins) and resumes from the group's committed offsets.
//
// Concurrency: Client, Producer and Consumer are safe for concurrent use;
// each owns its goroutines (a Producer's per-request goroutines end when
// their requests resolve; a Consumer's heartbeat goroutine ends in Close).
package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
}

// Option configures a Client.
type Option func(*clientConfig)

type clientConfig struct {
	dial []grpc.DialOption
}

// WithDialOptions adds gRPC dial options (TLS, interceptors, ...). Without
// any, the connection is plaintext.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *clientConfig) { c.dial = append(c.dial, opts...) }
}

// Client is a connection to one broker.
type Client struct {
	conn *grpc.ClientConn
	api  stratapb.StrataClient
	// closed ends with Close: the background work of the client's
	// consumers (heartbeats, rejoins) stops with it.
	closed context.Context
	close  context.CancelFunc
}

// Dial connects to a broker at addr (HOST:PORT).
func Dial(addr string, opts ...Option) (*Client, error) {
	cfg := clientConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.dial) == 0 {
		cfg.dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, cfg.dial...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	closed, closeFn := context.WithCancel(context.Background())
	return &Client{conn: conn, api: stratapb.NewStrataClient(conn), closed: closed, close: closeFn}, nil
}

// API is the raw gRPC client, for admin calls.
func (c *Client) API() stratapb.StrataClient { return c.api }

// Close closes the connection and stops the background work (heartbeats,
// rejoins) of the consumers made from this client; a consumer left
// unclosed then behaves as a dead member (no leave: its session expires).
func (c *Client) Close() error {
	c.close()
	return c.conn.Close()
}

// CreateTopic creates a topic with default retention and compression.
func (c *Client) CreateTopic(ctx context.Context, name string, partitions int32) error {
	_, err := c.api.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: name, Partitions: partitions}})
	return err
}

func toProto(r *Record) *stratapb.Record {
	out := &stratapb.Record{Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp}
	for k, v := range r.Headers {
		out.Headers = append(out.Headers, &stratapb.Header{Key: k, Value: v})
	}
	return out
}

func fromProto(topic string, r *stratapb.Record) Record {
	out := Record{Topic: topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.TimestampMs, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		out.Headers = make(map[string][]byte, len(r.Headers))
		for _, h := range r.Headers {
			out.Headers[h.Key] = h.Value
		}
	}
	return out
}
