package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

func TestDemo(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		var out bytes.Buffer
		now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		rep, err := Demo(context.Background(), DemoConfig{
			Dir: t.TempDir(), Store: s, Partitions: 2, Records: 3000, SealBytes: 64 << 10,
			Now: func() time.Time { return now },
		}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Records != 6000 || rep.ReplayRecords != 6000 {
			t.Fatalf("wrote %d, replayed %d; want 6000 each", rep.Records, rep.ReplayRecords)
		}
		if rep.Segments < 4 || rep.SealedBytes <= 0 || rep.SealedBytes >= rep.RawBytes {
			t.Fatalf("segments %d, sealed %d of %d raw bytes", rep.Segments, rep.SealedBytes, rep.RawBytes)
		}
		// The time query lands in the middle of each partition's 14 days.
		for p, off := range rep.TimeQueryFound {
			if off != 1500 {
				t.Errorf("partition %d: first offset at the midpoint time = %d, want 1500", p, off)
			}
		}
		if !strings.Contains(out.String(), "every record verified") {
			t.Fatalf("demo output: %s", out.String())
		}
	})
}
