package core

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

// Producer ids stay unique across brokers sharing a bucket although the
// store loses half the answers to their block writes: a lost write is
// settled by reading the block back (meta.CAS), never handed out twice.
func TestProducerIDsUniqueAcrossBrokersUnderLostAnswers(t *testing.T) {
	mem := tier.NewMemStore()
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for b := range 3 {
		f := tier.NewFaultStore(mem, tier.FaultConfig{Seed: uint64(b), LostResponseRate: 0.5})
		a := newIDAllocator(f)
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 700 { // several blocks per broker
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					id, err := a.allocate(ctx)
					cancel()
					if err != nil {
						continue // an unknown outcome wastes a block, never reuses one
					}
					mu.Lock()
					seen[id]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) < 3000 {
		t.Fatalf("only %d ids handed out", len(seen))
	}
	for id, n := range seen {
		if n > 1 || id < 1 {
			t.Fatalf("producer id %d handed out %d times", id, n)
		}
	}
}

// A caller waiting for another's block write leaves when its context ends.
func TestProducerIDWaiterLeavesOnCancel(t *testing.T) {
	a := newIDAllocator(tier.NewMemStore())
	a.taking <- struct{}{} // a block write in progress
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.allocate(ctx); err != context.Canceled {
		t.Fatalf("allocate while another takes a block, canceled: %v", err)
	}
}
