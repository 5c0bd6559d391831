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

// A follower whose context outlives the broker's Close ends with a
// shutting-down error; it does not go on looking (Close wakes every
// wait, and a bucket view's wait ends at once on a closed broker), on an
// open partition or a bucket view alike.
func TestFollowerEndsWhenTheBrokerCloses(t *testing.T) {
	for _, written := range []bool{false, true} {
		b, err := New(testConfig(t, tier.NewMemStore()))
		if err != nil {
			t.Fatal(err)
		}
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
		select {
		case err := <-done:
			var e *Error
			if !errors.As(err, &e) || e.Kind != ErrUnavailable {
				t.Errorf("written=%v: follower ended with %v, want the broker shutting down", written, err)
			}
		case <-rctx.Done():
			t.Errorf("written=%v: the follower did not end after Close (%d turns)", written, budget.turns.Load())
		}
		cancel()
	}
}
