package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
)

// A batch is encoded once (ingest/write.go): the WAL copies the local
// log's frame payload out of a buffer every local log shares. This test
// writes to two partitions of one WAL in turn, reusing one producer buffer
// for every record and not waiting between writes, so each append reuses
// the frame buffer (and the caller's bytes) of the one before while the
// earlier batches still wait in the WAL. Every record must then read back
// as written from both the local log and the WAL objects: a WAL that kept
// a reference to the shared frame buffer, or to the caller's bytes,
// instead of copying them, would hold the later batches' bytes.
func TestEncodedOnceLocalAndWALAgree(t *testing.T) {
	s := storetest.File(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := newWALBroker(t, s, "a")
	var parts []*ingest.Partition
	for i := int32(0); i < 2; i++ {
		cfg := walConfig(t, s, t.TempDir(), b)
		cfg.Partition = i
		p, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	const batches, perBatch = 40, 25
	value := make([]byte, 300) // the producer's buffer, reused for every record
	want := [2][]string{}
	var ends [2]int64
	for i := 0; i < batches; i++ {
		pi := i % 2
		bt := &segment.Batch{ProducerID: segment.NoProducer}
		for j := 0; j < perBatch; j++ {
			v := value[j*12 : j*12+12]
			copy(v, fmt.Sprintf("b%03d-r%03d...", i, j))
			bt.Records = append(bt.Records, segment.Record{Timestamp: 1000, Value: v, Key: v[:4]})
			want[pi] = append(want[pi], string(v))
		}
		res, err := parts[pi].Write(ctx, bt)
		if err != nil {
			t.Fatal(err)
		}
		ends[pi] = res.End
		// The producer reuses its buffer at once.
		for k := range value {
			value[k] = 'X'
		}
	}
	for pi, p := range parts {
		if err := p.WaitDurable(ctx, ends[pi]); err != nil {
			t.Fatal(err)
		}
		// The local log.
		if got := readValues(t, p, s); fmt.Sprint(got) != fmt.Sprint(want[pi]) {
			t.Fatalf("partition %d: local log holds %q, want %q", pi, got, want[pi])
		}
		// The WAL objects.
		var got []string
		err := b.r.ReadTail(ctx, "a", "orders", int32(pi), 0, func(bt *segment.Batch) error {
			for _, r := range bt.Records {
				if !bytes.Equal(r.Key, r.Value[:4]) {
					return fmt.Errorf("record %d: key %q, value %q", r.Offset, r.Key, r.Value)
				}
				got = append(got, string(r.Value))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want[pi]) {
			t.Fatalf("partition %d: WAL holds %q, want %q", pi, got, want[pi])
		}
	}
}
