// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

// regressWalGate blocks WAL object PUTs while closed (a store that hangs).
type regressWalGate struct {
	tier.Store
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *regressWalGate) hold() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *regressWalGate) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}
func (g *regressWalGate) wait(ctx context.Context, key string) {
	if !strings.HasPrefix(key, "wal/") {
		return
	}
	g.mu.Lock()
	ch := g.gate
	g.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
func (g *regressWalGate) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	g.wait(ctx, key)
	return g.Store.PutIfAbsent(ctx, key, r, size)
}
func (g *regressWalGate) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	g.wait(ctx, key)
	return g.Store.Put(ctx, key, r, size)
}

// A receive whose caller goes away while its leases are being stored
// returns an error and neither hands out nor releases the leases: the
// delivery is counted although nobody got the record. With max
// deliveries 1 the record goes to the dead-letter topic never delivered.
func TestShareRegressionCanceledReceiveBurnsDelivery(t *testing.T) {
	gs := &regressWalGate{Store: tier.NewMemStore()}
	b := newBroker(t, testConfig(t, gs))
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{VisibilityMs: 1000, MaxDeliveries: 1})
	produceN(t, b, "jobs", 1, nil)
	gs.hold()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := b.Receive(ctx, &ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 1})
	cancel()
	t.Logf("canceled receive: %v", err)
	gs.open()
	time.Sleep(2500 * time.Millisecond)
	if got := receive(t, b, "jobs", "workers", 1, time.Second); len(got) == 0 {
		d, _ := b.DescribeShareGroup(context.Background(), "jobs", "workers")
		t.Fatalf("record never delivered; dead-lettered %d, pending %d", d.DeadLettered, d.DeadLetterPending)
	}
}
