// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

// Records nacked with a long delay stay in memory and count against the
// window (only never-delivered delayed records spill): Window of them
// stop the partition from reading anything new until the delay ends.
func TestShareRegressionNackDelayFillsWindow(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Share.Window = 10
	b := newBroker(t, cfg)
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{})
	produceN(t, b, "jobs", 10, nil)
	ds := receive(t, b, "jobs", "workers", 10, time.Second)
	res, err := b.Settle(ctx, &SettleRequest{Topic: "jobs", Group: "workers", Kind: SettleNack, Delay: 24 * time.Hour, Receipts: receiptsOf(ds)})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	produceN(t, b, "jobs", 5, nil)
	if got := receive(t, b, "jobs", "workers", 10, 2*time.Second); len(got) == 0 {
		t.Fatalf("5 new records produced, none delivered: %d nacked for a day fill the window", len(ds))
	}
}

func receiptsOf(ds []Delivery) []string {
	var rs []string
	for _, d := range ds {
		rs = append(rs, d.Receipt)
	}
	return rs
}
