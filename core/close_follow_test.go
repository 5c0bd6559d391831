package core

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// countingBudget counts the fetch loop's turns (one Acquire per turn).
type countingBudget struct{ turns atomic.Int64 }

type freeLease struct{ n int64 }

func (l freeLease) Size() int64 { return l.n }
func (freeLease) Release()      {}

func (c *countingBudget) Acquire(_ context.Context, n int64) (FetchLease, error) {
	c.turns.Add(1)
	return freeLease{n}, nil
}

// A follower whose context outlives the broker's Close does not spin:
// Close wakes the followers of open partitions once, they switch to the
// bucket view and wait for its poll (an hour here), as followers already
// on a bucket view do. (Its stream ends when the front end stops.)
func TestFollowerDoesNotSpinAfterTheBrokerCloses(t *testing.T) {
	for _, written := range []bool{false, true} {
		b, err := New(testConfig(t, tier.NewMemStore()))
		if err != nil {
			t.Fatal(err)
		}
		b.viewPoll = time.Hour
		ctx := context.Background()
		if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		if written {
			if _, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: []segment.Record{{Value: []byte("x")}}}); err != nil {
				t.Fatal(err)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		budget := &countingBudget{}
		done := make(chan error, 1)
		go func() {
			done <- b.Fetch(rctx, &FetchRequest{Topic: "t", Partition: 0, Start: Position{Kind: StartLatest}, Follow: true, MaxWait: time.Hour, Budget: budget},
				func(*FetchResult) error { return nil })
		}()
		for budget.turns.Load() == 0 && rctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		b.Close(ctx)
		before := budget.turns.Load()
		time.Sleep(200 * time.Millisecond) // a spinning loop makes thousands of turns in this
		if n := budget.turns.Load() - before; n > 3 {
			t.Errorf("written=%v: %d turns of the fetch loop after Close, want at most the one wake-up and the switch to the bucket view", written, n)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrUnavailable) {
			t.Logf("written=%v: follower ended with %v", written, err)
		}
	}
}
