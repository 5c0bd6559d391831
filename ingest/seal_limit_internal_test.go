package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// TestSealLimiterBoundsSeals: while the only slot of a shared limiter is
// taken, no partition seals (a seal waits, and gives up with its
// context); once it is free, the seal goes through. Partitions that
// reach their seal interval together then seal a few at a time, each
// holding its segment in memory, instead of all at once.
func TestSealLimiterBoundsSeals(t *testing.T) {
	ctx := context.Background()
	lim := NewSealLimiter(1)
	cfg := DefaultPartitionConfig()
	cfg.Topic, cfg.Dir, cfg.FS, cfg.Store = "orders", "/p", vfs.NewMem(), tier.NewMemStore()
	cfg.CheckInterval = time.Hour
	cfg.Seals = lim
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := OpenPartition(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := p.Append(ctx, &segment.Batch{ProducerID: segment.NoProducer, Records: []segment.Record{{Value: []byte("v"), Timestamp: time.Now().UnixMilli()}}}); err != nil { // dated now: a record of 1970 is past the retention a background round applies
		t.Fatal(err)
	}
	release, err := lim.acquire(ctx) // another partition's seal holds the slot
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = p.SealNow(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("seal while the only slot is taken: %v, want it to wait and give up with its context", err)
	}
	if m, _ := p.Manifest(ctx); len(m.Segments) != 0 {
		t.Fatalf("a seal went through while the only slot was taken: %d segments", len(m.Segments))
	}
	release()
	if err := p.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Manifest(ctx); len(m.Segments) != 1 || m.NextOffset() != 1 {
		t.Fatalf("after the slot was freed: %d segments, sealed to %d; want 1 segment to offset 1", len(m.Segments), m.NextOffset())
	}
	if lim.InUse() != 0 {
		t.Fatalf("%d slots still held after the seal", lim.InUse())
	}
}
