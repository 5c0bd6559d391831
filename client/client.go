// Package client is the Go client of a strata broker: a Producer that
// batches, lingers, pipelines and retries, and a Consumer that reads
// assigned partitions or joins a consumer group (heartbeats in the
// background, commits per an explicitly chosen delivery mode).
//
// Invariants and caveats:
//   - A Producer keeps at most MaxInFlight requests in flight and at most
//     BatchSize records per request; Send blocks (honouring its context)
//     when MaxInFlight requests are outstanding, so memory is bounded.
//   - Retries resend a whole request after a transient failure (gRPC
//     UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED). The
//     producer is idempotent by default: it numbers each partition's
//     records, so a retry after a lost response is stored once and batches
//     land in order. With WithIdempotence(false), a retry can store a record
//     twice and a retried batch can land after a later one.
//   - A produce is acknowledged per WithAcks: durable (the default) once
//     the records are in the object store; see docs/durability.md.
//   - A group Consumer never commits an offset for a record it has not
//     returned from Poll. AtLeastOnce commits a Poll's records at the next
//     Poll (or Commit/Close); AtMostOnce commits them before Poll returns.
//
// Concurrency: Client, Producer and Consumer are safe for concurrent use;
// each owns its goroutines and stops them in Close.
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
	return &Client{conn: conn, api: stratapb.NewStrataClient(conn)}, nil
}

// API is the raw gRPC client, for admin calls.
func (c *Client) API() stratapb.StrataClient { return c.api }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

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
