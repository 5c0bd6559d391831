package flightserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
	"github.com/stratalog/strata/tier"
)

const baseTS = int64(1_790_000_000_000)

// testRecord is record i of the round trip: keys (some nil), values (some
// tombstones, some empty), headers (none, duplicated keys, nil values).
func testRecord(i int) segment.Record {
	r := segment.Record{Timestamp: baseTS + int64(i)}
	if i%7 != 0 {
		r.Key = fmt.Appendf(nil, "key-%d", i%13)
	}
	switch {
	case i%11 == 0:
		r.Value = nil // tombstone
	case i%17 == 0:
		r.Value = []byte{}
	default:
		r.Value = bytes.Repeat(fmt.Appendf(nil, "v%d,", i), 1+i%40)
	}
	switch i % 5 {
	case 1:
		r.Headers = []segment.Header{{Key: "h", Value: []byte("a")}, {Key: "h", Value: []byte("b")}, {Key: "h", Value: []byte("a")}}
	case 2:
		r.Headers = []segment.Header{{Key: "nil", Value: nil}, {Key: "", Value: []byte{}}}
	case 3:
		r.Headers = []segment.Header{{Key: "i", Value: fmt.Appendf(nil, "%d", i)}}
	}
	return r
}

// produce writes records [from, to) of testRecord and returns them by
// partition and offset.
func produce(t testing.TB, b *core.Broker, topic string, from, to int, got map[int32]map[int64]segment.Record) {
	t.Helper()
	ctx := context.Background()
	for lo := from; lo < to; lo += 100 {
		var recs []segment.Record
		for i := lo; i < min(lo+100, to); i++ {
			recs = append(recs, testRecord(i))
		}
		res, err := b.Produce(ctx, &core.ProduceRequest{Topic: topic, Partition: -1, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			p, off := res.Partitions[i], res.Offsets[i]
			r.Offset = off
			if got[p] == nil {
				got[p] = map[int64]segment.Record{}
			}
			got[p][off] = r
		}
	}
}

// Records produced with every shape of key, value and header, partly
// sealed (read cold) and partly in the tail, read back over Flight with
// the arrow Go client field by field, and the same ranges over the gRPC
// Fetch API give the same records.
func TestRoundTrip(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		fcfg := flightserver.DefaultConfig()
		fcfg.BatchBytes = 8 << 10 // many batches per partition
		e := start(t, testConfig(t, store), fcfg)
		if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "rt", Partitions: 3}); err != nil {
			t.Fatal(err)
		}
		want := map[int32]map[int64]segment.Record{}
		const sealed, tail = 3000, 150
		produce(t, e.b, "rt", 0, sealed, want)
		waitFor(t, time.Minute, "every partition to seal a segment", func() bool {
			d, err := e.b.DescribeTopic(ctx, "rt")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range d.Partitions {
				if p.SealedSegments == 0 {
					return false
				}
			}
			return true
		})
		produce(t, e.b, "rt", sealed, sealed+tail, want) // the tail, not sealed
		gets := e.b.Stats().Cache.Gets

		info, err := e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("rt"))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Endpoint) != 3 || info.TotalRecords != sealed+tail || info.TotalBytes != -1 {
			t.Fatalf("flight info: %d endpoints, %d records, %d bytes; want 3, %d, -1", len(info.Endpoint), info.TotalRecords, info.TotalBytes, sealed+tail)
		}
		schema, err := flight.DeserializeSchema(info.Schema, nil)
		if err != nil || schema.NumFields() != 6 || schema.Field(5).Name != "headers" {
			t.Fatalf("flight info schema: %v %v", schema, err)
		}
		for pi, ep := range info.Endpoint {
			p := int32(pi)
			s, err := doGet(ctx, e.flight, ep.Ticket)
			if err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			if s.batches < 5 {
				t.Fatalf("partition %d: %d batches of 8 KiB for %d rows; want them cut by bytes", p, s.batches, len(s.rows))
			}
			if len(s.rows) != len(want[p]) {
				t.Fatalf("partition %d: %d rows, want %d", p, len(s.rows), len(want[p]))
			}
			for i, r := range s.rows {
				w := want[p][int64(i)]
				if r.partition != p || !reflect.DeepEqual(r.rec, w) {
					t.Fatalf("partition %d row %d:\n got %d %+v\nwant %d %+v", p, i, r.partition, r.rec, p, w)
				}
			}
			rep := s.report
			if rep == nil || rep.Rows != int64(len(want[p])) || rep.From != 0 || rep.To != int64(len(want[p])) || rep.Partition != p || rep.Invalid != 0 || len(rep.FirstInvalidOffsets) != 0 {
				t.Fatalf("partition %d: report %+v, want %d rows, none invalid", p, rep, len(want[p]))
			}
			// The same range over the gRPC Fetch API.
			fetched := fetchGRPC(t, ctx, e.grpc, "rt", p, 0, int64(len(want[p])))
			for i, r := range fetched {
				if !sameRecord(r, s.rows[i].rec) {
					t.Fatalf("partition %d offset %d: gRPC fetch gives %+v, Flight %+v", p, i, r, s.rows[i].rec)
				}
			}
		}
		if e.b.Stats().Cache.Gets == gets {
			t.Fatal("no block was read from the object store: the sealed range was not read cold")
		}
	})
}

// fetchGRPC reads [from, to) of a partition over the gRPC Fetch API.
func fetchGRPC(t *testing.T, ctx context.Context, c stratapb.StrataClient, topic string, p int32, from, to int64) []segment.Record {
	t.Helper()
	out, err := readGRPCRange(ctx, c, topic, p, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readGRPCRange is fetchGRPC for any goroutine: it returns its error.
func readGRPCRange(ctx context.Context, c stratapb.StrataClient, topic string, p int32, from, to int64) ([]segment.Record, error) {
	var out []segment.Record
	for next := from; next < to; {
		s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: topic, Partition: p, Start: &stratapb.FetchRequest_Offset{Offset: next}, MaxBytes: 1 << 20})
		if err != nil {
			return out, err
		}
		resp, err := s.Recv()
		if err != nil {
			return out, err
		}
		if _, err := s.Recv(); err != io.EOF {
			return out, fmt.Errorf("fetch stream after its response: %v, want EOF", err)
		}
		for _, r := range resp.Records {
			if r.Offset >= to {
				break
			}
			rec := segment.Record{Offset: r.Offset, Timestamp: r.TimestampMs, Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, segment.Header{Key: h.Key, Value: h.Value})
			}
			out = append(out, rec)
		}
		next = resp.NextOffset
	}
	return out, nil
}

// sameRecord compares a record read over gRPC with one read over Flight:
// every field, nil keys and values included; a header value's nil and
// empty are one thing in the gRPC API (a proto3 bytes field).
func sameRecord(g, f segment.Record) bool {
	if g.Offset != f.Offset || g.Timestamp != f.Timestamp || (g.Key == nil) != (f.Key == nil) || !bytes.Equal(g.Key, f.Key) ||
		(g.Value == nil) != (f.Value == nil) || !bytes.Equal(g.Value, f.Value) || len(g.Headers) != len(f.Headers) {
		return false
	}
	for i := range g.Headers {
		if g.Headers[i].Key != f.Headers[i].Key || !bytes.Equal(g.Headers[i].Value, f.Headers[i].Value) {
			return false
		}
	}
	return true
}
