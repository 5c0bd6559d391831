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

// Snapshots are keyed by group name and offset, and Restore does not check
// the group's creation (seed): a snapshot the owner stores after a delete
// through another broker (its config cache is trusted for 5 s) is restored
// by the re-created group, which then never delivers what the old group
// acked.
func TestShareRegressionRecreatedGroupRestoresOldSnapshot(t *testing.T) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		store := tier.NewMemStore()
		ctx := context.Background()
		b1, err := New(testConfig(t, store))
		if err != nil {
			t.Fatal(err)
		}
		defer b1.Close(ctx)
		shareTopic(t, b1, "jobs", 1, ShareGroupConfig{StartFromEarliest: true})
		produceN(t, b1, "jobs", 6, nil)
		time.Sleep(2500 * time.Millisecond)
		ds := receive(t, b1, "jobs", "workers", 6, time.Second)
		settle(t, b1, "jobs", "workers", SettleAck, ds[:5])
		time.Sleep(28500 * time.Millisecond)
		// Another broker deletes and re-creates the group (from earliest).
		b2, err := New(testConfig(t, store))
		if err != nil {
			t.Fatal(err)
		}
		defer b2.Close(ctx)
		if err := b2.DeleteShareGroup(ctx, "jobs", "workers"); err != nil {
			t.Fatal(err)
		}
		if _, err := b2.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "workers", StartFromEarliest: true}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // b1 snapshots the old group before it sees the delete
		store.List(ctx, "shares/", func(o tier.ObjectInfo) error {
			if strings.Contains(o.Key, "snapshots") {
				t.Logf("left: %s", o.Key)
			}
			return nil
		})
		b1.Close(ctx)
		seen := map[int64]bool{}
		for i := 0; i < 3; i++ {
			for _, d := range receive(t, b2, "jobs", "workers", 10, time.Second) {
				seen[d.Record.Offset] = true
			}
		}
		if len(seen) != 6 {
			t.Fatalf("the re-created group (from earliest) delivered %v of offsets 0-5", seen)
		}
	})
}
