package core

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// On a fake clock: a record never settled is delivered again only after
// its lease ends plus a backoff inside the documented bounds, its delivery
// count goes up by one each time, and after max deliveries it is not
// delivered again (it goes to the dead-letter topic).
func TestShareLeaseAndBackoffOnFakeClock(t *testing.T) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		b, err := New(testConfig(t, tier.NewMemStore()))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		cfg := shareTopic(t, b, "jobs", 1, ShareGroupConfig{VisibilityMs: 10_000, BackoffMinMs: 2_000, BackoffMaxMs: 60_000, BackoffMultiplier: 3, MaxDeliveries: 4})
		produceN(t, b, "jobs", 1, nil)
		qc := cfg.queueConfig().Defaults()
		var leaseEnd time.Time
		for n := int32(1); n <= 4; n++ {
			asked := time.Now()
			ds := receive(t, b, "jobs", "workers", 10, 20*time.Second)
			for len(ds) == 0 {
				asked = time.Now()
				ds = receive(t, b, "jobs", "workers", 10, 20*time.Second)
				if time.Since(leaseEnd) > 10*time.Minute {
					t.Fatalf("delivery %d never came", n)
				}
			}
			now := time.Now()
			if ds[0].DeliveryCount != n {
				t.Fatalf("delivery %d has count %d", n, ds[0].DeliveryCount)
			}
			if n > 1 {
				// After the lease of delivery n-1 ended: its backoff.
				gap := now.Sub(leaseEnd)
				lo := qc.BackoffMin
				hi := min(qc.BackoffMax, time.Duration(float64(qc.BackoffMin)*pow(qc.BackoffMultiplier, n-2)))
				// (the delivery itself waits for its lease to be stored: a
				// WAL flush)
				if gap < lo || gap > hi+shareLoopInterval+b.cfg.WAL.FlushInterval+10*time.Millisecond {
					t.Fatalf("delivery %d came %v after the last lease ended; the backoff after delivery %d is %v to %v", n, gap, n-1, lo, hi)
				}
				if want := qc.Backoff(0, n-1); gap < want {
					t.Fatalf("delivery %d came %v after the lease, before its backoff %v", n, gap, want)
				}
			}
			leaseEnd = ds[0].LeaseUntil
			if d := leaseEnd.Sub(asked); d < 10*time.Second || d > 10*time.Second+time.Since(asked) {
				t.Fatalf("lease ends %v after the receive began (which took %v), want the group's 10s", d, time.Since(asked))
			}
		}
		// Max deliveries reached: never again.
		time.Sleep(11 * time.Second)
		if ds := receive(t, b, "jobs", "workers", 10, 20*time.Second); len(ds) != 0 {
			t.Fatalf("delivered after max deliveries: %+v", ds)
		}
		d, err := b.DescribeShareGroup(context.Background(), "jobs", "workers")
		if err != nil || d.DeadLettered != 1 {
			t.Fatalf("describe after max deliveries: %+v, %v", d, err)
		}
	})
}

func pow(x float64, n int32) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

// On a fake clock, with priority-9 records arriving faster than they are
// handed out: the priority-0 record is not starved, and no record that
// became available more than 9 × priority aging after it goes first (the
// bound of docs/queues.md), while fresher priority-9 records do go first.
func TestSharePriorityStarvationBoundOnFakeClock(t *testing.T) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		b, err := New(testConfig(t, tier.NewMemStore()))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		const aging = time.Second
		shareTopic(t, b, "jobs", 1, ShareGroupConfig{PriorityAgingMs: aging.Milliseconds()})
		produced := map[string]time.Time{}
		send := func(prio int, name string) {
			produced[name] = time.Now()
			rec := segment.Record{Value: []byte(name), Headers: []segment.Header{{Key: HeaderPriority, Value: []byte(strconv.Itoa(prio))}}}
			if _, err := b.Produce(context.Background(), &ProduceRequest{Topic: "jobs", Partition: 0, Records: []segment.Record{rec}}); err != nil {
				t.Fatal(err)
			}
		}
		send(0, "low")
		low := produced["low"]
		passedBy := 0
		for round := 0; ; round++ {
			// Two fresh priority-9 records each step, one handed out.
			send(9, "high-"+strconv.Itoa(2*round))
			send(9, "high-"+strconv.Itoa(2*round+1))
			ds := receive(t, b, "jobs", "workers", 1, 0)
			if len(ds) != 1 {
				t.Fatalf("round %d: %d records", round, len(ds))
			}
			settle(t, b, "jobs", "workers", SettleAck, ds)
			name := string(ds[0].Record.Value)
			if name == "low" {
				if passedBy == 0 {
					t.Fatal("the priority-0 record went before fresh priority-9 ones")
				}
				t.Logf("the priority-0 record waited %v; %d priority-9 records went first", time.Since(low), passedBy)
				return
			}
			// Available about when produced (the produce waits for its ack).
			if late := produced[name].Sub(low); late > 9*aging+500*time.Millisecond {
				t.Fatalf("%s, available %v after the priority-0 record, went before it: over the 9 x %v bound", name, late, aging)
			}
			passedBy++
			if time.Since(low) > 5*time.Minute {
				t.Fatal("the priority-0 record starved for 5 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// warmCoders makes the segment package's shared zstd coders outside any
// bubble: made lazily inside one, they would hold that bubble's channels
// and break the next (see internal/sim WarmUp).
func warmCoders(t *testing.T) {
	t.Helper()
	var buf bytes.Buffer
	w := segment.NewWriter(&buf, segment.WriterOptions{Codec: segment.CodecZstd})
	if err := w.Append(&segment.Batch{ProducerID: segment.NoProducer, Records: []segment.Record{{Value: []byte("warm up")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	r, err := segment.Open(context.Background(), memRange(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadBlock(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}

type memRange []byte

func (b memRange) ReadRange(_ context.Context, off, n int64) ([]byte, error) {
	return b[off:min(off+n, int64(len(b)))], nil
}
