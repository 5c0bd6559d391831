package ingest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

// A broker that was taken over while idle has not noticed yet (no write,
// no commit told it). Its sweep must not delete the segments the new
// owner sealed since, which its stale manifest does not reference: that
// would delete acknowledged, sealed data once they are older than
// SweepGrace.
func TestSweepOfATakenOverPartitionKeepsTheNewOwnersSegments(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		clk := &fakeClock{now: time.Now()}
		old, err := ingest.OpenPartition(ctx, testConfig(t, store, t.TempDir(), clk))
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close(ctx)
		appendN(t, old, 100, 1)
		if err := old.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		// Another broker takes over, appends and seals; the old owner is idle.
		cfg := testConfig(t, store, t.TempDir(), nil)
		newer, err := ingest.OpenPartition(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, newer, 100, 1)
		if err := newer.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		newer.Close(ctx)

		clk.Add(2 * time.Hour) // the new owner's segments are older than SweepGrace now
		n, err := old.Sweep(ctx)
		if n != 0 {
			t.Fatalf("the taken-over owner's sweep deleted %d segments of the new owner", n)
		}
		if !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("the taken-over owner's sweep: %v, want ErrFenced (it no longer owns the partition)", err)
		}
		if next := replayAll(t, store, "orders", 0); next != 200 {
			t.Fatalf("the log replays to %d, want 200", next)
		}
	})
}
