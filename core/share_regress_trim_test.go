// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/tier"
)

// trimStateLog counts the groups whose configs this broker has cached,
// not the groups that exist: after a restart, one active group's snapshot
// lets the state log drop another group's events that no snapshot covers.
func TestShareRegressionStateLogTrimForgetsUncachedGroup(t *testing.T) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		store := tier.NewMemStore()
		ctx := context.Background()
		b1, err := New(testConfig(t, store))
		if err != nil {
			t.Fatal(err)
		}
		shareTopic(t, b1, "jobs", 1, ShareGroupConfig{Group: "g1"})
		if _, err := b1.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "g2"}); err != nil {
			t.Fatal(err)
		}
		produceN(t, b1, "jobs", 1, nil)
		ds := receive(t, b1, "jobs", "g2", 1, time.Second)
		for _, r := range settle(t, b1, "jobs", "g2", SettleAck, ds) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		t.Logf("g2 acked offset %d", ds[0].Record.Offset)
		b1.Close(ctx) // graceful; g2 never snapshotted (30 s not reached)

		cfg2 := testConfig(t, store)
		cfg2.Partition.SealInterval = 2 * time.Second
		b2, err := New(cfg2)
		if err != nil {
			t.Fatal(err)
		}
		defer b2.Close(ctx)
		// Only g1 is used on b2 for a while.
		produceN(t, b2, "jobs", 1, nil)
		for _, d := range receive(t, b2, "jobs", "g1", 10, time.Second) {
			settle(t, b2, "jobs", "g1", SettleAck, []Delivery{d})
		}
		time.Sleep(45 * time.Second) // g1 snapshots (30 s), the state log seals and applies its floor
		m, _, _ := b2.partitionBounds(ctx, mustTopic(t, b2, shareLogPrefix+"jobs"), 0)
		t.Logf("state log start now %d", m)
		got, err := b2.Receive(ctx, &ReceiveRequest{Topic: "jobs", Group: "g2", MaxRecords: 10})
		if err != nil {
			t.Fatalf("g2 receive after the trim: %v", err)
		}
		for _, d := range got {
			if d.Record.Offset == ds[0].Record.Offset {
				t.Fatalf("g2's acked record %d delivered again (count %d)", d.Record.Offset, d.DeliveryCount)
			}
		}
	})
}
