package workload

// The queue workloads, on any target.Queuer:
//
//   - QueueDrain fills a fresh queue with a backlog of QueueRecords
//     records (the "queue-fill" result: produce throughput to the queue),
//     then QueueWorkers workers each receive a batch of up to QueueBatch
//     records, ack the batch, and go again until every record is acked
//     (the "queue" result): records received and acked per second, and
//     receive-to-ack latency (from the receive call returning to the ack
//     call returning; every record of a batch counts once, with its
//     batch's time). Every record carries its sequence number: the result
//     says how many were delivered more than once, how many were never
//     acked, and how many the server still holds unacked afterwards.
//   - QueueEndToEnd produces at a fixed offered rate (open loop, each
//     record stamped with the time it was due) into a fresh queue that the
//     workers drain, and measures produce-to-receive latency
//     ("queue-e2e-open").

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/bench/harness/hist"
	"github.com/stratalog/strata/bench/harness/target"
)

// seqMagic marks a backlog record: magic, then its sequence number.
const seqMagic = 0x5354524154415131 // "STRATAQ1"

func seqValue(tmpl []byte, seq int64) []byte {
	v := append([]byte(nil), tmpl...)
	binary.LittleEndian.PutUint64(v[0:8], seqMagic)
	binary.LittleEndian.PutUint64(v[8:16], uint64(seq))
	return v
}

func seqOf(v []byte) (int64, bool) {
	if len(v) < 16 || binary.LittleEndian.Uint64(v[0:8]) != seqMagic {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(v[8:16])), true
}

func (p Params) wopts() target.WorkerOptions {
	return target.WorkerOptions{Batch: p.QueueBatch, Wait: p.queueWait()}
}

func (p Params) queueWait() time.Duration {
	if p.QueueWait > 0 {
		return p.QueueWait
	}
	return time.Second
}

// closeWorkers closes every worker at once (a close may wait: RabbitMQ's).
func closeWorkers(ws []target.Worker) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.Close() }()
	}
	wg.Wait()
}

func startWorkers(ctx context.Context, q target.Queue, p Params) ([]target.Worker, error) {
	ws := make([]target.Worker, 0, p.QueueWorkers)
	for i := 0; i < p.QueueWorkers; i++ {
		w, err := q.NewWorker(ctx, p.wopts())
		if err != nil {
			closeWorkers(ws)
			return nil, fmt.Errorf("worker: %w", err)
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// QueueDrain measures a queue of kind on t (a target.Queuer): fill, then
// drain with the workers. Returns the fill and the drain results.
func QueueDrain(ctx context.Context, t target.Target, kind target.QueueKind, name string, p Params) (fill, drain *Result, err error) {
	qr, ok := t.(target.Queuer)
	if !ok {
		return nil, nil, fmt.Errorf("%s has no queue", t.Name())
	}
	if p.QueueRecords < 1 || p.QueueWorkers < 1 || p.QueueBatch < 1 || p.RecordSize < 16 {
		return nil, nil, errors.New("queue: records, workers and batch >= 1, record size >= 16")
	}
	q, err := qr.CreateQueue(ctx, kind.Name, name, p.Partitions, p.QueueWorkers, p.QueueBatch)
	if err != nil {
		return nil, nil, fmt.Errorf("create queue: %w", err)
	}
	n := p.QueueRecords
	fill, err = fillQueue(ctx, q, kind, p, n)
	if err != nil {
		return fill, nil, err
	}
	ws, err := startWorkers(ctx, q, p)
	if err != nil {
		return fill, nil, err
	}
	received := make([]atomic.Int32, n)
	acked := make([]atomic.Int32, n)
	var distinct, redelivered, errs, foreign atomic.Int64
	var firstErr atomic.Value
	note := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	h, hr := hist.New(), hist.New()
	timeout := p.QueueTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	wctx, stop := context.WithTimeout(ctx, timeout)
	defer stop()
	var end atomic.Int64
	before := t.Usage(ctx)
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				called := time.Now()
				msgs, err := w.Receive(wctx)
				got := time.Now()
				if err != nil {
					if wctx.Err() == nil {
						note(fmt.Errorf("receive: %w", err))
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				if len(msgs) == 0 {
					continue
				}
				hr.Record(got.Sub(called))
				for _, m := range msgs {
					s, ok := seqOf(m.Value)
					if !ok || s < 0 || s >= n {
						foreign.Add(1)
						continue
					}
					if received[s].Add(1) > 1 {
						redelivered.Add(1)
					}
				}
				if err := w.Ack(wctx, msgs); err != nil {
					if wctx.Err() == nil {
						note(fmt.Errorf("ack: %w", err))
					}
					continue // not acked: delivered again after its lease
				}
				h.RecordN(time.Since(got), int64(len(msgs)))
				for _, m := range msgs {
					if s, ok := seqOf(m.Value); ok && s >= 0 && s < n && acked[s].Add(1) == 1 {
						if distinct.Add(1) == n {
							end.Store(time.Now().UnixNano())
							stop() // everything is acked: stop every worker
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if e := end.Load(); e != 0 {
		el = time.Duration(e - start.UnixNano())
	}
	after := t.Usage(ctx)
	closeWorkers(ws)
	drain = &Result{Target: kind.Name, Workload: "queue", Records: distinct.Load(), Bytes: distinct.Load() * int64(p.RecordSize),
		Seconds: el.Seconds(), Errors: errs.Load(), Missing: n - distinct.Load(), Redelivered: redelivered.Load()}
	drain.RecPerS, drain.MBPerS = float64(drain.Records)/el.Seconds(), float64(drain.Bytes)/1e6/el.Seconds()
	s, sr := h.Summarize(), hr.Summarize()
	drain.Latency, drain.Latency2 = &s, &sr
	drain.Cost = queueCost(before, after, el, drain.Records)
	var notes []string
	if un, err := q.Unacked(ctx); err != nil {
		notes = append(notes, "unacked count unknown: "+err.Error())
		drain.Unacked = -1
	} else {
		drain.Unacked = un
	}
	if f := foreign.Load(); f > 0 {
		notes = append(notes, fmt.Sprintf("%d records not of the backlog", f))
	}
	if e, ok := firstErr.Load().(error); ok {
		notes = append(notes, "first error: "+e.Error())
	}
	drain.Note = joinNotes(notes)
	switch {
	case drain.Records < n:
		return fill, drain, fmt.Errorf("queue: %d of %d records acked in %v (%s)", drain.Records, n, timeout, drain.Note)
	case drain.Unacked != 0:
		return fill, drain, fmt.Errorf("queue: every record was acked, but the server holds %d unacked (%s)", drain.Unacked, drain.Note)
	}
	return fill, drain, nil
}

func joinNotes(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += "; "
		}
		out += n
	}
	return out
}

// queueCost: the server's RSS at the end, its CPU (and the object
// store's) over the phase, and object-store requests per 1,000 records.
func queueCost(before, after target.Usage, el time.Duration, records int64) Cost {
	c := cost(before, after, 0, false)
	d := after.Objects.Sub(before.Objects)
	c.Requests = d.Puts + d.Gets + d.Lists + d.Heads + d.Deletes + d.Posts
	if records > 0 {
		c.RequestsPer1k = 1000 * float64(c.Requests) / float64(records)
		c.PutsPer1k = 1000 * float64(d.Puts) / float64(records)
	}
	c.CPUSeconds = after.CPUSeconds - before.CPUSeconds
	c.StoreCPUSeconds = after.StoreCPUSeconds - before.StoreCPUSeconds
	if s := el.Seconds(); s > 0 {
		c.CPUPercent = 100 * c.CPUSeconds / s
		c.StoreCPUPercent = 100 * c.StoreCPUSeconds / s
	}
	return c
}

// fillQueue produces n sequence-stamped records with p.Producers
// producers and waits for every confirm.
func fillQueue(ctx context.Context, q target.Queue, kind target.QueueKind, p Params, n int64) (*Result, error) {
	tmpl := Payloads(1, p.RecordSize, 3)[0]
	prods := make([]target.Producer, p.Producers)
	for i := range prods {
		pr, err := q.NewProducer(ctx, p.popts())
		if err != nil {
			for _, x := range prods[:i] {
				x.Close()
			}
			return nil, fmt.Errorf("producer: %w", err)
		}
		prods[i] = pr
	}
	h := hist.New()
	var next, acked, errs atomic.Int64
	var firstErr atomic.Value
	timeout := p.QueueTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, pr := range prods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s := next.Add(1) - 1
				if s >= n {
					return
				}
				t0 := time.Now()
				if err := pr.Send(fctx, seqValue(tmpl, s), func(err error) {
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
						return
					}
					h.Record(time.Since(t0))
					acked.Add(1)
				}); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, pr := range prods {
		if err := pr.Flush(fctx); err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	}
	el := time.Since(start)
	for _, pr := range prods {
		pr.Close()
	}
	r := &Result{Target: kind.Name, Workload: "queue-fill", Records: acked.Load(), Bytes: acked.Load() * int64(p.RecordSize), Seconds: el.Seconds(), Errors: errs.Load()}
	r.RecPerS, r.MBPerS = float64(r.Records)/el.Seconds(), float64(r.Bytes)/1e6/el.Seconds()
	s := h.Summarize()
	r.Latency = &s
	if e, ok := firstErr.Load().(error); ok {
		r.Note = "first error: " + e.Error()
	}
	if r.Records < n {
		return r, fmt.Errorf("queue fill: %d of %d records confirmed (%s)", r.Records, n, r.Note)
	}
	return r, nil
}

// QueueEndToEnd produces into a fresh queue at rate records/s for
// p.Duration (open loop: each record carries the time it was due, so a
// stall counts in full) while the workers receive and ack, and measures
// due-to-receive latency.
func QueueEndToEnd(ctx context.Context, t target.Target, kind target.QueueKind, name string, p Params, rate float64) (*Result, error) {
	qr, ok := t.(target.Queuer)
	if !ok {
		return nil, fmt.Errorf("%s has no queue", t.Name())
	}
	if rate <= 0 || p.RecordSize < 16 {
		return nil, errors.New("queue e2e: rate > 0 and record size >= 16")
	}
	q, err := qr.CreateQueue(ctx, kind.Name, name, p.Partitions, p.QueueWorkers, p.QueueBatch)
	if err != nil {
		return nil, fmt.Errorf("create queue: %w", err)
	}
	ws, err := startWorkers(ctx, q, p)
	if err != nil {
		return nil, err
	}
	h := hist.New()
	var received, errs atomic.Int64
	var firstErr atomic.Value
	note := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				msgs, err := w.Receive(wctx)
				now := time.Now().UnixNano()
				if err != nil {
					if wctx.Err() == nil {
						note(fmt.Errorf("receive: %w", err))
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				for _, m := range msgs {
					if at, ok := stampOf(m.Value); ok {
						h.Record(time.Duration(now - at))
						received.Add(1)
					}
				}
				if err := w.Ack(wctx, msgs); err != nil && wctx.Err() == nil {
					note(fmt.Errorf("ack: %w", err))
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let the first receives reach the server
	pr, err := q.NewProducer(ctx, p.popts())
	if err != nil {
		stopWorkers()
		wg.Wait()
		closeWorkers(ws)
		return nil, err
	}
	tmpl := Payloads(1, p.RecordSize, 4)[0]
	var acked atomic.Int64
	hc := hist.New()
	start := time.Now()
	deadline := start.Add(p.Duration)
	sctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	var sent int64
send:
	for sent < p.MaxRecords && time.Now().Before(deadline) {
		due := int64(time.Since(start).Seconds() * rate)
		if due <= sent {
			time.Sleep(min(time.Duration(float64(time.Second)/rate), time.Millisecond))
			continue
		}
		for ; sent < due && sent < p.MaxRecords; sent++ {
			at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second))).UnixNano()
			t0 := time.Now()
			if err := pr.Send(sctx, stampValue(nil, tmpl, at), func(err error) {
				if err != nil {
					note(err)
					return
				}
				hc.Record(time.Since(t0))
				acked.Add(1)
			}); err != nil {
				note(err)
				break send
			}
		}
	}
	if err := pr.Flush(sctx); err != nil {
		note(err)
	}
	sendTime := time.Since(start)
	pr.Close()
	wait := time.Now().Add(15 * time.Second)
	for received.Load() < acked.Load() && time.Now().Before(wait) {
		time.Sleep(20 * time.Millisecond)
	}
	stopWorkers()
	wg.Wait()
	closeWorkers(ws)
	r := &Result{Target: kind.Name, Workload: "queue-e2e-open", Offered: rate, Records: received.Load(), Bytes: received.Load() * int64(p.RecordSize),
		Seconds: sendTime.Seconds(), Errors: errs.Load(), Missing: max(acked.Load()-received.Load(), 0)}
	r.RecPerS, r.MBPerS = float64(acked.Load())/sendTime.Seconds(), float64(acked.Load()*int64(p.RecordSize))/1e6/sendTime.Seconds()
	s, sc := h.Summarize(), hc.Summarize()
	r.Latency, r.Latency2 = &s, &sc
	r.Cost.RSSBytes = t.Usage(ctx).RSSBytes
	if e, ok := firstErr.Load().(error); ok {
		r.Note = "first error: " + e.Error()
	}
	if received.Load() == 0 {
		return r, fmt.Errorf("no record reached a worker (%d confirmed)", acked.Load())
	}
	return r, nil
}
