package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

const histTopic = "hist"

// histRecord is record i of the history: keys, values and headers
// present, empty and absent in turn.
func histRecord(i int) *stratapb.Record {
	r := &stratapb.Record{Key: fmt.Appendf(nil, "k-%d", i%17), Value: fmt.Appendf(nil, `{"i":%d,"pad":"%0*d"}`, i, i%300, 0)}
	switch {
	case i%7 == 0:
		r.Key = nil
	case i%11 == 0:
		r.Key = []byte{}
	}
	if i%5 == 0 {
		r.Value = nil
	}
	if i%3 == 0 {
		r.Headers = []*stratapb.Header{{Key: "trace", Value: fmt.Appendf(nil, "t-%d", i)}, {Key: "empty"}}
	}
	if i%13 == 0 {
		r.Headers = append(r.Headers, &stratapb.Header{Key: client.HeaderPriority, Value: []byte("4")})
	}
	return r
}

// histConfig is a broker config with small segments of small blocks, so a
// short history spans many of both.
func histConfig(t *testing.T, store tier.Store) core.Config {
	cfg := brokertest.Config(t, store)
	cfg.Partition.SealBytes = 64 << 10
	cfg.Partition.Segment.BlockSize = 8 << 10
	return cfg
}

// writeHistory produces records [from, to) of the history to partition 0
// of histTopic at addr.
func writeHistory(t *testing.T, api stratapb.StrataClient, from, to int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; {
		var recs []*stratapb.Record
		for j := i; j < min(i+1+i%41, to); j++ {
			recs = append(recs, histRecord(j))
		}
		if _, err := api.Produce(ctx, &stratapb.ProduceRequest{Topic: histTopic, Partition: 0, Records: recs, Acks: stratapb.Acks_ACKS_LOCAL}); err != nil {
			t.Fatal(err)
		}
		i += len(recs)
	}
}

func rawAPI(t *testing.T, addr string) stratapb.StrataClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return stratapb.NewStrataClient(conn)
}

// sealedHistory writes n records through a broker that then closes (it
// seals everything), so the history is only in the bucket.
func sealedHistory(t *testing.T, store tier.Store, n int) {
	t.Helper()
	w, addr := brokertest.Start(t, histConfig(t, store))
	api := rawAPI(t, addr)
	if _, err := api.CreateTopic(context.Background(), &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: histTopic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	writeHistory(t, api, 0, n)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// fetchCounter is a server interceptor that counts fetch requests asking
// for stored blocks and responses carrying them.
type fetchCounter struct{ storedRequests, blockResponses, mixedResponses atomic.Int64 }

func (f *fetchCounter) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &countedStream{ServerStream: ss, f: f})
}

type countedStream struct {
	grpc.ServerStream
	f *fetchCounter
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*stratapb.FetchRequest); ok && err == nil && r.StoredBlocks {
		s.f.storedRequests.Add(1)
	}
	return err
}

func (s *countedStream) SendMsg(m any) error {
	if r, ok := m.(interface {
		GetBlocks() []*stratapb.StoredBlock
		GetRecords() []*stratapb.Record
	}); ok && len(r.GetBlocks()) > 0 {
		s.f.blockResponses.Add(1)
		if len(r.GetRecords()) > 0 {
			s.f.mixedResponses.Add(1)
		}
	}
	return s.ServerStream.SendMsg(m)
}

// startCounted serves a broker with cfg, counting its fetches.
func startCounted(t *testing.T, cfg core.Config) (*core.Broker, string, *fetchCounter) {
	f := &fetchCounter{}
	b, _, addr := brokertest.StartServer(t, cfg, grpcserver.DefaultConfig(), grpc.ChainStreamInterceptor(f.intercept))
	return b, addr, f
}

// consumeFrom reads partition 0 from start to n with a consumer of the
// given stored-blocks mode.
func consumeFrom(t *testing.T, c *client.Client, start int64, n int, stored bool, opts ...client.ConsumerOption) []client.Record {
	t.Helper()
	ctx := context.Background()
	k, err := c.NewConsumer(ctx, histTopic, append([]client.ConsumerOption{client.WithPartitions(0), client.WithStoredBlocks(stored)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	if err := k.Seek(0, start); err != nil {
		t.Fatal(err)
	}
	var out []client.Record
	for polls := 0; len(out) < n-int(start); polls++ {
		if polls > 10*n {
			t.Fatalf("from %d: %d records after %d polls", start, len(out), polls)
		}
		recs, err := k.Poll(ctx)
		if err != nil {
			t.Fatalf("from %d (stored %v), after %d records: %v", start, stored, len(out), err)
		}
		out = append(out, recs...)
	}
	return out
}

// checkHistory checks records against the history from start.
func checkHist(t *testing.T, recs []client.Record, start int64) {
	t.Helper()
	for i, r := range recs {
		off := start + int64(i)
		w := histRecord(int(off))
		if r.Offset != off || r.Topic != histTopic || r.Partition != 0 || !reflect.DeepEqual(r.Key, w.Key) || !reflect.DeepEqual(r.Value, w.Value) || len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %+v, want offset %d key %q value %q headers %v", i, r, off, w.Key, w.Value, w.Headers)
		}
		for _, h := range w.Headers {
			if v, ok := r.Headers[h.Key]; !ok || !reflect.DeepEqual(v, h.Value) {
				t.Fatalf("record %d: header %q = %q, want %q", off, h.Key, v, h.Value)
			}
		}
		if off%13 == 0 && r.Priority != 4 {
			t.Fatalf("record %d: priority %d from its header, want 4", off, r.Priority)
		}
	}
}

// A broker with an empty disk replays the sealed history as stored blocks
// (keys, values, headers present, empty and absent), and the consumer
// returns exactly the records the records mode returns, from any start,
// mid-block included.
func TestStoredBlocksRoundTrip(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		const n = 2000
		sealedHistory(t, store, n)
		_, addr, f := startCounted(t, histConfig(t, store))
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, start := range []int64{0, 1, 37, 999, n - 1} {
			stored := consumeFrom(t, c, start, n, true)
			blocks := f.blockResponses.Load()
			records := consumeFrom(t, c, start, n, false)
			if f.blockResponses.Load() != blocks {
				t.Fatalf("from %d: the records mode got stored blocks", start)
			}
			checkHist(t, records, start)
			if !reflect.DeepEqual(stored, records) {
				t.Fatalf("from %d: the stored-blocks mode returns other records than the records mode", start)
			}
		}
		if f.storedRequests.Load() == 0 || f.blockResponses.Load() == 0 {
			t.Fatalf("%d stored-block requests, %d responses with blocks: the consumer did not use the mode", f.storedRequests.Load(), f.blockResponses.Load())
		}
	})
}

// A client that does not ask gets records, as before; one that asks gets
// blocks within max_bytes (stored bytes, and the encoded message), whose
// records are the same.
func TestStoredBlocksMaxBytesAndOldClients(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		const n = 2000
		sealedHistory(t, store, n)
		_, addr := brokertest.Start(t, histConfig(t, store))
		api := rawAPI(t, addr)
		ctx := context.Background()
		read := func(stored bool, maxBytes int32) (out []*stratapb.FetchResponse) {
			for next := int64(0); next < n; {
				s, err := api.Fetch(ctx, &stratapb.FetchRequest{Topic: histTopic, Start: &stratapb.FetchRequest_Offset{Offset: next}, MaxBytes: maxBytes, StoredBlocks: stored})
				if err != nil {
					t.Fatal(err)
				}
				resp, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, resp)
				next = resp.NextOffset
			}
			return out
		}
		var old []*stratapb.Record
		for _, resp := range read(false, 64<<10) {
			if len(resp.Blocks) != 0 || resp.SkipBefore != 0 {
				t.Fatal("a request without stored_blocks got blocks")
			}
			old = append(old, resp.Records...)
		}
		for _, maxBytes := range []int32{10 << 10, 40 << 10, 1 << 20} {
			blocks := 0
			var got []*stratapb.Record
			for _, resp := range read(true, maxBytes) {
				blocks += len(resp.Blocks)
				cost := 0
				for _, b := range resp.Blocks {
					cost += len(b.Data) + 64
				}
				if len(resp.Blocks)+len(resp.Records) > 1 && (cost > int(maxBytes) || proto.Size(resp) > int(maxBytes)+64) {
					t.Fatalf("max_bytes %d: %d blocks cost %d, the message is %d bytes", maxBytes, len(resp.Blocks), cost, proto.Size(resp))
				}
				for _, b := range resp.Blocks {
					batches, err := segment.DecodeBlock(b.Data, segment.Codec(b.Codec))
					if err != nil {
						t.Fatal(err)
					}
					for _, bt := range batches {
						for _, r := range bt.Records {
							if r.Offset >= resp.SkipBefore {
								got = append(got, toPB(r))
							}
						}
					}
				}
				got = append(got, resp.Records...)
			}
			if blocks == 0 || len(got) != len(old) {
				t.Fatalf("max_bytes %d: %d blocks, %d records; want blocks and %d records", maxBytes, blocks, len(got), len(old))
			}
			for i := range old {
				if !proto.Equal(got[i], old[i]) {
					t.Fatalf("max_bytes %d: record %d is %v as stored, %v as a record", maxBytes, i, got[i], old[i])
				}
			}
		}
	})
}

func toPB(r segment.Record) *stratapb.Record {
	out := &stratapb.Record{Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp, Offset: r.Offset}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, &stratapb.Header{Key: h.Key, Value: h.Value})
	}
	return out
}

// The owner of a partition whose older part is sealed (and not on its
// disk) answers one fetch with sealed blocks, then its local records; the
// consumer returns them in offset order.
func TestStoredBlocksThenLocalRecords(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		const sealed, n = 1000, 1300
		sealedHistory(t, store, sealed)
		cfg := histConfig(t, store)
		cfg.Partition.SealBytes = 64 << 20 // the new records stay local
		_, addr, f := startCounted(t, cfg)
		writeHistory(t, rawAPI(t, addr), sealed, n)
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, start := range []int64{sealed - 120, sealed - 1} {
			got := consumeFrom(t, c, start, n, true, client.WithFetchMaxBytes(1<<20))
			checkHist(t, got, start)
		}
		if f.mixedResponses.Load() == 0 {
			t.Fatal("no response carried both sealed blocks and local records")
		}
	})
}

// corruptBlock flips one byte inside the payload of block bi of the
// first segment of partition 0 of histTopic, in the bucket, and returns
// the block's offsets and stored size.
func corruptBlock(t *testing.T, store tier.Store, bi int) (first, last, size int64) {
	t.Helper()
	ctx := context.Background()
	name := storetest.TopicStorageName(t, store, histTopic)
	m, _, err := meta.NewManifestStore(store, name, 0).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := m.Segments[0].Key
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := segment.ParseTail(data, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	b := f.Blocks[bi]
	data[b.Pos+b.Len/2] ^= 0x20
	if _, err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return b.FirstOffset, b.LastOffset, b.Len
}

// A block damaged in the bucket is caught by the consumer's CRC check:
// Poll fails with an error naming the topic, partition and offsets, the
// records before the block were returned intact, and the position does
// not move past it.
func TestStoredBlocksCorruptionIsDetected(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		sealedHistory(t, store, 1000)
		first, last, size := corruptBlock(t, store, 2)
		_, addr := brokertest.Start(t, histConfig(t, store))
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		k, err := c.NewConsumer(ctx, histTopic, client.WithPartitions(0), client.WithFetchMaxBytes(int32(size)+64)) // the damaged block fits a response
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close(ctx)
		var got []client.Record
		var perr error
		for range 100 {
			recs, err := k.Poll(ctx)
			if err != nil {
				perr = err
				break
			}
			got = append(got, recs...)
		}
		var ce *client.CorruptBlockError
		if !errors.As(perr, &ce) || !errors.Is(perr, client.ErrCorruptBlock) || !errors.Is(perr, segment.ErrCorrupt) {
			t.Fatalf("Poll over a corrupt block: %v; want a *CorruptBlockError", perr)
		}
		if ce.Topic != histTopic || ce.Partition != 0 || ce.FirstOffset != first || ce.LastOffset != last {
			t.Fatalf("the error names %s/%d offsets %d-%d, the damaged block holds %d-%d", ce.Topic, ce.Partition, ce.FirstOffset, ce.LastOffset, first, last)
		}
		for _, want := range []string{"topic hist", "partition 0", fmt.Sprintf("offsets %d-%d", first, last), "crc mismatch"} {
			if !strings.Contains(perr.Error(), want) {
				t.Fatalf("error %q does not say %q", perr, want)
			}
		}
		if int64(len(got)) > first {
			t.Fatalf("%d records returned, past the damaged block at %d", len(got), first)
		}
		checkHist(t, got, 0)
		if _, err := k.Poll(ctx); !errors.As(err, &ce) || ce.FirstOffset != first {
			t.Fatalf("the next Poll: %v; want the same block's error (the position stays)", err)
		}
	})
}

// readStream reads from s until it has n records.
func readStream(t *testing.T, s *client.PartitionStream, n int) []client.Record {
	t.Helper()
	var out []client.Record
	for len(out) < n {
		recs, err := s.Next(context.Background())
		if err != nil {
			t.Fatalf("after %d records: %v", len(out), err)
		}
		out = append(out, recs...)
	}
	return out
}

// A PartitionStream follows a partition: sealed blocks decoded on several
// goroutines and local records, in offset order, then records appended
// while it follows; in both modes. Close stops its goroutines (TestMain
// checks).
func TestPartitionStreamFollows(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		const sealed, n, more = 1000, 1200, 1300
		sealedHistory(t, store, sealed)
		cfg := histConfig(t, store)
		cfg.Partition.SealBytes = 64 << 20
		_, addr, f := startCounted(t, cfg)
		api := rawAPI(t, addr)
		writeHistory(t, api, sealed, n)
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		var streams []*client.PartitionStream
		for _, stored := range []bool{true, false} {
			s, err := c.StreamPartition(ctx, histTopic, 0, client.StreamFrom(37), client.StreamMaxBytes(16<<10), client.StreamWorkers(3), client.StreamStoredBlocks(stored))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkHist(t, readStream(t, s, n-37), 37)
			streams = append(streams, s)
		}
		if f.blockResponses.Load() == 0 {
			t.Fatal("the stream got no stored blocks")
		}
		writeHistory(t, api, n, more)
		for _, s := range streams {
			checkHist(t, readStream(t, s, more-n), n)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Next(ctx); !errors.Is(err, client.ErrStreamClosed) {
				t.Fatalf("Next after Close: %v", err)
			}
		}
	})
}

// A damaged block ends a PartitionStream with the block's error, after the
// records before it.
func TestPartitionStreamStopsAtACorruptBlock(t *testing.T) {
	store := storetest.File(t)
	sealedHistory(t, store, 1000)
	first, _, _ := corruptBlock(t, store, 3)
	_, addr := brokertest.Start(t, histConfig(t, store))
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.StreamPartition(context.Background(), histTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []client.Record
	var ce *client.CorruptBlockError
	for {
		recs, err := s.Next(context.Background())
		if err != nil {
			if !errors.As(err, &ce) || ce.FirstOffset != first {
				t.Fatalf("after %d records: %v; want the damaged block's error", len(got), err)
			}
			break
		}
		got = append(got, recs...)
	}
	if int64(len(got)) != first {
		t.Fatalf("%d records before the damaged block at %d", len(got), first)
	}
	checkHist(t, got, 0)
	if _, err := s.Next(context.Background()); !errors.As(err, &ce) {
		t.Fatalf("Next after the error: %v", err)
	}
}
