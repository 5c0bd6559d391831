// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/tier"
)

// A stale owner (paused, or unaware it was taken over) stores a snapshot
// at the state-log offset where its own durable events end: durable(at)
// needs no WAL write, so the fence is not noticed. The snapshot carries
// its clock's view (a lease it saw run out), and a later rebuild applies
// the new owner's events on top of it: an Extend the new owner stored is
// ignored (the record is not Leased in the snapshot), and the record is
// delivered again while the extended lease runs.
func TestShareRegressionStaleOwnerSnapshotDropsExtend(t *testing.T) { staleSnap(t, false) }
func TestShareRegressionStaleOwnerSnapshotControl(t *testing.T)     { staleSnap(t, true) }

func staleSnap(t *testing.T, ctl bool) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		store := tier.NewMemStore()
		cfg1 := testConfig(t, store)
		cfg1.WAL.ProbeInterval = time.Hour // b1 does not notice the fence before its next snapshot (a race after SIGCONT)
		b1, err := New(cfg1)
		if err != nil {
			t.Fatal(err)
		}
		defer b1.Close(context.Background())
		shareTopic(t, b1, "jobs", 1, ShareGroupConfig{VisibilityMs: 10_000})
		produceN(t, b1, "jobs", 1, nil)
		ds := receive(t, b1, "jobs", "workers", 1, time.Second)
		if len(ds) != 1 {
			t.Fatalf("got %d", len(ds))
		}
		time.Sleep(time.Second)
		// b2 takes over (fences b1) and the client extends its lease by 1h there.
		b2, err := New(testConfig(t, store))
		if err != nil {
			t.Fatal(err)
		}
		res, err := b2.Settle(context.Background(), &SettleRequest{Topic: "jobs", Group: "workers", Kind: SettleExtend, Delay: time.Hour, Receipts: []string{ds[0].Receipt}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("extend on the new owner: %v %v", err, res[0].Err)
		}
		t.Logf("lease extended to %v", res[0].LeaseUntil)
		b2.Close(context.Background())
		// b1 goes on: its loop sees the lease end (10s) and snapshots (30s).
		if ctl {
			b1.Close(context.Background())
		}
		time.Sleep(35 * time.Second)
		store.List(context.Background(), "", func(o tier.ObjectInfo) error {
			if strings.Contains(o.Key, "snap") {
				t.Logf("object %s", o.Key)
			}
			return nil
		})
		b3, err := New(testConfig(t, store))
		if err != nil {
			t.Fatal(err)
		}
		defer b3.Close(context.Background())
		got := receive(t, b3, "jobs", "workers", 1, 5*time.Second)
		if len(got) > 0 && time.Now().Before(res[0].LeaseUntil) {
			t.Fatalf("offset %d delivered again (count %d) while the lease extended to %v runs", got[0].Record.Offset, got[0].DeliveryCount, res[0].LeaseUntil)
		}
	})
}
