package target

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The batcher never sends more than batch records per request nor more
// than inflight requests at once, and runs every callback once.
func TestBatcherBounds(t *testing.T) {
	var cur, peak, calls atomic.Int64
	var mu sync.Mutex
	sizes := map[int]int{}
	b := newBatcher(10, 3, func(_ int, vs [][]byte) error {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		sizes[len(vs)]++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		cur.Add(-1)
		for _, v := range vs { // the batch holding the poisoned record fails, wherever it sits in it
			if v[0] == 'x' {
				return errors.New("boom")
			}
		}
		return nil
	})
	var ok, failed atomic.Int64
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		v := []byte("v")
		if i == 500 {
			v = []byte("x")
		}
		if err := b.send(ctx, v, func(err error) {
			calls.Add(1)
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.close()
	if calls.Load() != 1000 || failed.Load() < 1 || failed.Load() > 10 {
		t.Fatalf("calls %d, failed %d", calls.Load(), failed.Load())
	}
	if peak.Load() > 3 {
		t.Fatalf("%d requests in flight, want <= 3", peak.Load())
	}
	for n := range sizes {
		if n > 10 || n < 1 {
			t.Fatalf("a request of %d records", n)
		}
	}
}

// The ack queue runs callbacks in send order.
func TestAckQueueOrder(t *testing.T) {
	q := newAckQueue(4)
	var got []int
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		done := make(chan struct{})
		go func() { time.Sleep(time.Duration(100-i) * 10 * time.Microsecond); close(done) }()
		q.push(ctx, func() error { <-done; return nil }, func(error) { got = append(got, i) })
	}
	if err := q.flush(ctx); err != nil {
		t.Fatal(err)
	}
	q.close()
	for i, v := range got {
		if v != i {
			t.Fatalf("callback %d ran at position %d", v, i)
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d callbacks", len(got))
	}
}
