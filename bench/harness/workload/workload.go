// Package workload runs the benchmark's workloads against any
// target.Target: produce throughput, end-to-end latency (open loop at an
// offered rate, and at saturation), the latency-versus-offered-load
// curve (open loop at fractions of saturation), catch-up / cold replay,
// produce across many partitions, and (queue.go, on a target.Queuer) a
// queue's backlog drained by competing workers. Every loop is bounded in
// records and in time; an open-loop sender follows a schedule (pace.go)
// and stamps each record with its due time.
package workload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/bench/harness/hist"
	"github.com/stratalog/strata/bench/harness/target"
)

// Params are the workload knobs (flags of cmd/stratabench).
type Params struct {
	RecordSize int           `json:"record_size"`
	Partitions int           `json:"partitions"`
	Producers  int           `json:"producers"`
	Consumers  int           `json:"consumers"` // tailing consumers in the latency workload (each reads partitions round robin)
	Batch      int           `json:"batch"`
	InFlight   int           `json:"in_flight"`
	Linger     time.Duration `json:"linger_ns"`
	Duration   time.Duration `json:"duration_ns"` // per produce / latency phase
	MaxRecords int64         `json:"max_records"` // per produce phase (count bound)
	Rate       float64       `json:"rate"`        // offered records/s for open-loop latency; 0: half of the measured saturation
	ReplayMiB  int           `json:"replay_mib"`  // history written, then replayed
	// ReplayTimeout bounds the replay read (0: 10 min).
	ReplayTimeout time.Duration `json:"replay_timeout_ns"`
	// The queue workloads: a backlog of QueueRecords records drained by
	// QueueWorkers workers, each receiving up to QueueBatch records and
	// acking them in one call; a receive waits up to QueueWait (0: 1 s).
	QueueRecords int64         `json:"queue_records"`
	QueueWorkers int           `json:"queue_workers"`
	QueueBatch   int           `json:"queue_batch"`
	QueueWait    time.Duration `json:"queue_wait_ns"`
	// QueueRate is the light-load end-to-end phase's offered rate (0:
	// QueueLoad of the measured drain throughput; QueueLoad < 0: no such
	// phase).
	QueueRate float64 `json:"queue_rate"`
	QueueLoad float64 `json:"queue_load"`
	// QueueTimeout bounds the fill and the drain each (0: 10 min).
	QueueTimeout time.Duration `json:"queue_timeout_ns"`
	// The latency curve: one open-loop phase of CurveDuration (0:
	// Duration) at each of CurveLoads, fractions of saturation.
	CurveDuration time.Duration `json:"curve_point_duration_ns"`
	CurveLoads    []float64     `json:"curve_loads,omitempty"`
}

// Result is one workload on one target.
type Result struct {
	Target   string  `json:"target"`
	Workload string  `json:"workload"` // produce, e2e-open, e2e-saturation, replay, partitions-N
	Records  int64   `json:"records"`
	Bytes    int64   `json:"bytes"` // record payload bytes
	Seconds  float64 `json:"seconds"`
	RecPerS  float64 `json:"records_per_s"`
	MBPerS   float64 `json:"mb_per_s"` // 10^6 bytes of payload per second
	Errors   int64   `json:"errors"`
	Missing  int64   `json:"missing,omitempty"` // sent, acked, never received (latency); queue: never acked
	// Queue: deliveries beyond a record's first, and records the server
	// still held unacked after the drain (-1: unknown).
	Redelivered int64 `json:"redelivered,omitempty"`
	Unacked     int64 `json:"unacked,omitempty"`
	// Offered is the open-loop rate in records/s; Load (curve) that rate
	// as a fraction of the target's saturation.
	Offered float64       `json:"offered_per_s,omitempty"`
	Load    float64       `json:"load,omitempty"`
	Latency *hist.Summary `json:"latency,omitempty"` // producer-side (produce), send-to-receive (e2e, curve), receive-to-ack (queue)
	// Queue: how long a receive call that returned records took (from
	// its call); queue-e2e-open: the producer's send-to-confirm latency;
	// e2e and curve: the producer's send-to-ack latency (open loop: from
	// the record's due time).
	Latency2 *hist.Summary `json:"latency2,omitempty"`
	// RawPut (strata's e2e-open, on MinIO): the latency of plain
	// one-at-a-time PUTs straight to MinIO of the phase's mean WAL object
	// size, measured right after the phase (the bound of issue 17's
	// latency goals: flush interval + 2 x its p99).
	RawPut      *hist.Summary `json:"raw_put,omitempty"`
	RawPutBytes int64         `json:"raw_put_bytes,omitempty"`
	Cost        Cost          `json:"cost"`
	Note        string        `json:"note,omitempty"`
}

// Cost is what the server used for the workload.
type Cost struct {
	RSSBytes          int64   `json:"rss_bytes"`
	Puts              int64   `json:"puts"`
	Gets              int64   `json:"gets"`
	PutBytes          int64   `json:"put_bytes"`
	GetBytes          int64   `json:"get_bytes"`
	PutsPerGiB        float64 `json:"puts_per_gib"`         // per GiB of payload ingested
	GetsPerGiB        float64 `json:"gets_per_gib"`         // per GiB of payload replayed
	StoredPerProduced float64 `json:"stored_per_produced"`  // object (strata) or disk bytes per payload byte
	StoredBytes       int64   `json:"stored_bytes"`         // object (strata) or local disk bytes
	GetPerStored      float64 `json:"get_per_stored_bytes"` // replay: bytes fetched / bytes stored (1 = each byte once)
	// CacheHitRatio: read-cache block lookups served without waiting for
	// a GET (read-ahead makes most of a sequential replay hits); -1 when
	// the target does not say.
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// Queue: object-store requests of every kind (and PUTs) per 1,000
	// records acked; the server's and the object store's CPU over the
	// phase, in % of one core.
	Requests        int64   `json:"requests,omitempty"`
	RequestsPer1k   float64 `json:"requests_per_1k,omitempty"`
	PutsPer1k       float64 `json:"puts_per_1k,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"`
	CPUPercent      float64 `json:"cpu_percent,omitempty"`
	StoreCPUSeconds float64 `json:"store_cpu_seconds,omitempty"`
	StoreCPUPercent float64 `json:"store_cpu_percent,omitempty"`
	// Latency phases (e2e, curve): strata's WAL object PUTs (counted in
	// Puts too), their bytes, and WAL PUTs per second of the send phase.
	WALPuts     int64   `json:"wal_puts,omitempty"`
	WALPutBytes int64   `json:"wal_put_bytes,omitempty"`
	WALPutsPerS float64 `json:"wal_puts_per_s,omitempty"`
}

const gib = float64(1 << 30)

func cost(before, after target.Usage, payload int64, ingest bool) Cost {
	d := after.Objects.Sub(before.Objects)
	c := Cost{RSSBytes: after.RSSBytes, Puts: d.Puts, Gets: d.Gets, PutBytes: d.PutBytes, GetBytes: d.GetBytes, CacheHitRatio: -1}
	if h, m := after.CacheHits-before.CacheHits, after.CacheMisses-before.CacheMisses; h+m > 0 {
		c.CacheHitRatio = float64(h) / float64(h+m)
	}
	stored := after.ObjectBytes - before.ObjectBytes
	if after.ObjectBytes == 0 {
		stored = after.DiskBytes - before.DiskBytes
	}
	if payload > 0 {
		if ingest {
			c.PutsPerGiB = float64(d.Puts) / (float64(payload) / gib)
			c.StoredBytes = stored
			c.StoredPerProduced = float64(stored) / float64(payload)
		} else {
			c.GetsPerGiB = float64(d.Gets) / (float64(payload) / gib)
		}
	}
	return c
}

// Payloads returns n record values of size bytes each: JSON-like text with
// a random part, so they compress about as real events do (~2x).
func Payloads(n, size int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 0, size+64)
		for len(b) < size {
			b = fmt.Appendf(b, `{"user":"user-%04d","event":"page_view","path":"/products/%d","ok":true,"blob":"`, r.IntN(1000), r.IntN(97))
			for j := 0; j < 24; j++ {
				b = append(b, alpha[r.IntN(64)])
			}
			b = append(b, '"', '}', '\n')
		}
		out[i] = b[:size]
	}
	return out
}

func (p Params) popts() target.ProducerOptions {
	return target.ProducerOptions{Batch: p.Batch, InFlight: p.InFlight, Linger: p.Linger}
}

// Produce measures closed-loop produce throughput with producer-side
// latency (Send call to ack) on a fresh topic.
func Produce(ctx context.Context, t target.Target, topic string, p Params) (*Result, error) {
	if err := t.CreateTopic(ctx, topic, p.Partitions); err != nil {
		return nil, fmt.Errorf("create topic: %w", err)
	}
	before := t.Usage(ctx)
	r, err := produceFor(ctx, t, topic, p, p.Duration, p.MaxRecords)
	if err != nil {
		return nil, err
	}
	r.Workload = "produce"
	r.Cost = cost(before, t.Usage(ctx), r.Bytes, true)
	if _, ok := t.(target.TopicSizer); ok {
		// Nothing is sealed yet at this size: stored bytes show in replay-ingest.
		r.Cost.StoredBytes, r.Cost.StoredPerProduced = 0, 0
	}
	return r, nil
}

func produceFor(ctx context.Context, t target.Target, topic string, p Params, dur time.Duration, maxRecords int64) (*Result, error) {
	vals := Payloads(max(4096, 4<<20/p.RecordSize), p.RecordSize, 1) // distinct values: compression sees no repeats across 4 MiB
	h := hist.New()
	var acked, errs, sent atomic.Int64
	var firstErr atomic.Value
	prods := make([]target.Producer, p.Producers)
	for i := range prods {
		pr, err := t.NewProducer(ctx, topic, p.Partitions, p.popts())
		if err != nil {
			for _, q := range prods[:i] {
				q.Close()
			}
			return nil, fmt.Errorf("producer: %w", err)
		}
		prods[i] = pr
	}
	start := time.Now()
	deadline := start.Add(dur)
	lctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	for i, pr := range prods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if sent.Add(1) > maxRecords || time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				err := pr.Send(lctx, vals[(i*7+n)%len(vals)], func(err error) {
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
						return
					}
					h.Record(time.Since(t0))
					acked.Add(1)
				})
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, pr := range prods {
		if err := pr.Flush(lctx); err != nil {
			errs.Add(1)
		}
	}
	el := time.Since(start)
	for _, pr := range prods {
		pr.Close()
	}
	r := &Result{Target: t.Name(), Records: acked.Load(), Bytes: acked.Load() * int64(p.RecordSize), Seconds: el.Seconds(), Errors: errs.Load()}
	r.RecPerS, r.MBPerS = float64(r.Records)/el.Seconds(), float64(r.Bytes)/1e6/el.Seconds()
	s := h.Summarize()
	r.Latency = &s
	if e, ok := firstErr.Load().(error); ok {
		r.Note = "first error: " + e.Error()
		if r.Records == 0 {
			return r, fmt.Errorf("no record acked: %w", e)
		}
	}
	return r, nil
}

// stamp marks a latency probe: magic, then the intended send time.
const magic = 0x5354524154414c31 // "STRATAL1"

func stampValue(dst, tmpl []byte, at int64) []byte {
	dst = append(dst[:0], tmpl...)
	binary.LittleEndian.PutUint64(dst[0:8], magic)
	binary.LittleEndian.PutUint64(dst[8:16], uint64(at))
	return dst
}

func stampOf(v []byte) (int64, bool) {
	if len(v) < 16 || binary.LittleEndian.Uint64(v[0:8]) != magic {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(v[8:16])), true
}

// EndToEnd measures send-to-receive latency through tailing consumers,
// and (Latency2) the producer's send-to-ack latency. rate > 0: open loop
// (a schedule, pace.go) of at most p.Duration, records are due at
// start + i/rate and each carries its due time, so a stall in the system
// (or in the sender, blocked by flow control) counts in full for every
// record it delays (no coordinated omission); both latencies run from
// the due time. rate == 0: saturation, each record carries its actual
// send time and the sender goes as fast as the producer lets it. The
// object-store PUTs of the send phase (strata on MinIO) are in Cost.
func EndToEnd(ctx context.Context, t target.Target, topic string, p Params, rate float64) (*Result, error) {
	if p.RecordSize < 16 {
		return nil, errors.New("e2e latency needs records of at least 16 bytes")
	}
	limit := p.MaxRecords
	var sch schedule
	if rate > 0 {
		var err error
		if sch, err = newSchedule(rate, p.Duration, p.MaxRecords); err != nil {
			return nil, err
		}
		limit = sch.limit
	}
	if err := t.CreateTopic(ctx, topic, p.Partitions); err != nil {
		return nil, fmt.Errorf("create topic: %w", err)
	}
	h := hist.New()
	var received atomic.Int64
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	var cwg sync.WaitGroup
	var consumers []target.Consumer
	for part := 0; part < p.Partitions; part++ {
		c, err := t.NewConsumer(ctx, topic, part, false)
		if err != nil {
			for _, c := range consumers {
				c.Close()
			}
			return nil, fmt.Errorf("consumer: %w", err)
		}
		consumers = append(consumers, c)
	}
	for _, c := range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for cctx.Err() == nil {
				vs, err := c.Poll(cctx, 100*time.Millisecond)
				now := time.Now().UnixNano()
				if err != nil {
					return
				}
				for _, v := range vs {
					if at, ok := stampOf(v); ok {
						h.Record(time.Duration(now - at))
						received.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let tailing fetches reach the server
	pr, err := t.NewProducer(ctx, topic, p.Partitions, p.popts())
	if err != nil {
		return nil, err
	}
	tmpl := Payloads(1, p.RecordSize, 2)[0]
	ha := hist.New()
	var acked, errs atomic.Int64
	var firstErr atomic.Value
	send := func(sctx context.Context, at int64) error {
		return pr.Send(sctx, stampValue(nil, tmpl, at), func(err error) {
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			ha.Record(time.Duration(time.Now().UnixNano() - at))
			acked.Add(1)
		})
	}
	before := t.Usage(ctx)
	start := time.Now()
	deadline := start.Add(p.Duration)
	sctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	var sent int64
loop:
	for sent < limit {
		el := time.Since(start)
		// Open loop: the schedule ends by itself (its last record is due
		// before p.Duration), so a late wake-up still sends every record
		// due; the closed loop stops at the deadline.
		if rate == 0 && el > p.Duration {
			break
		}
		if rate > 0 {
			due := sch.due(el)
			if due <= sent {
				time.Sleep(sch.wait(sent, el))
				continue
			}
			for ; sent < due; sent++ {
				if err := send(sctx, start.Add(sch.at(sent)).UnixNano()); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					break loop
				}
			}
			continue
		}
		if err := send(sctx, time.Now().UnixNano()); err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err)
			break
		}
		sent++
	}
	if err := pr.Flush(sctx); err != nil {
		errs.Add(1)
	}
	sendTime := time.Since(start)
	after := t.Usage(ctx)
	pr.Close()
	// Wait (bounded) for the consumers to see everything acked.
	wait := time.Now().Add(15 * time.Second)
	for received.Load() < acked.Load() && time.Now().Before(wait) {
		time.Sleep(20 * time.Millisecond)
	}
	stopConsumers()
	cwg.Wait()
	for _, c := range consumers {
		c.Close()
	}
	r := &Result{Target: t.Name(), Workload: "e2e-saturation", Records: received.Load(), Bytes: received.Load() * int64(p.RecordSize),
		Seconds: sendTime.Seconds(), Errors: errs.Load(), Missing: max(acked.Load()-received.Load(), 0)}
	if rate > 0 {
		r.Workload, r.Offered = "e2e-open", rate
	}
	r.RecPerS, r.MBPerS = float64(acked.Load())/sendTime.Seconds(), float64(acked.Load()*int64(p.RecordSize))/1e6/sendTime.Seconds()
	s, sa := h.Summarize(), ha.Summarize()
	r.Latency, r.Latency2 = &s, &sa
	r.Cost = sendCost(before, after, acked.Load()*int64(p.RecordSize), sendTime)
	r.Cost.RSSBytes = t.Usage(ctx).RSSBytes
	if e, ok := firstErr.Load().(error); ok {
		r.Note = "first error: " + e.Error()
	}
	if received.Load() == 0 {
		return r, fmt.Errorf("no record reached a consumer (%d acked)", acked.Load())
	}
	return r, nil
}

// sendCost is the object-store side of a latency phase: its PUTs (in
// all, per GiB acked, and strata's WAL PUTs per second of the phase).
func sendCost(before, after target.Usage, payload int64, el time.Duration) Cost {
	d := after.Objects.Sub(before.Objects)
	c := Cost{Puts: d.Puts, PutBytes: d.PutBytes, WALPuts: d.WALPuts, WALPutBytes: d.WALPutBytes, CacheHitRatio: -1}
	if payload > 0 {
		c.PutsPerGiB = float64(d.Puts) / (float64(payload) / gib)
	}
	if el > 0 {
		c.WALPutsPerS = float64(d.WALPuts) / el.Seconds()
	}
	return c
}

// Curve is the latency-versus-offered-load curve: at each load (a
// fraction of saturation, the target's measured saturation rate in
// records/s: its e2e-saturation result) one open-loop EndToEnd phase of
// p.CurveDuration (at most p.MaxRecords records) on a fresh topic
// <topic><percent> (curve10; a dot becomes p: curve7p5), in the order
// given. Each point's result is named
// curve-<percent> (curve-10) and carries its load; a point that fails is
// reported with the others and the next point still runs.
func Curve(ctx context.Context, t target.Target, topic string, p Params, saturation float64, loads []float64) ([]*Result, error) {
	rates, err := CurveRates(saturation, loads)
	if err != nil {
		return nil, err
	}
	pp := p
	pp.Duration = p.CurveDuration
	if pp.Duration <= 0 {
		pp.Duration = p.Duration
	}
	var out []*Result
	var errs []error
	for i, rate := range rates {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: %w", curveName(loads[i]), ctx.Err()))
			break
		}
		name := curveName(loads[i])
		r, err := EndToEnd(ctx, t, topic+strings.NewReplacer("curve-", "", ".", "p").Replace(name), pp, rate)
		if r != nil {
			r.Workload, r.Load = name, loads[i]
			out = append(out, r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%.0f records/s): %w", name, rate, err))
		}
	}
	return out, errors.Join(errs...)
}

// Replay (run first on a fresh target, so a cold restart seals only its
// topic) writes p.ReplayMiB of history, then (for a target that can)
// restarts it cold — strata: a new broker with an empty data directory on
// the same bucket — and reads everything back from the first offset with
// one consumer per partition. Returns the ingest and the replay results.
func Replay(ctx context.Context, t target.Target, topic string, p Params) (ingest, replay *Result, err error) {
	if err := t.CreateTopic(ctx, topic, p.Partitions); err != nil {
		return nil, nil, fmt.Errorf("create topic: %w", err)
	}
	before := t.Usage(ctx)
	n := int64(p.ReplayMiB) << 20 / int64(p.RecordSize)
	in, err := produceFor(ctx, t, topic, p, 10*time.Minute, n)
	if err != nil {
		return nil, nil, err
	}
	in.Workload = "replay-ingest"
	if in.Records < n {
		return nil, nil, fmt.Errorf("replay: only %d of %d records acked (%s)", in.Records, n, in.Note)
	}
	cold := false
	if cr, ok := t.(target.ColdRestarter); ok {
		if err := cr.RestartCold(ctx); err != nil {
			return nil, nil, fmt.Errorf("cold restart: %w", err)
		}
		cold = true
	}
	mid := t.Usage(ctx)
	in.Cost = cost(before, mid, in.Bytes, true)
	if ts, ok := t.(target.TopicSizer); ok {
		in.Cost.StoredBytes = ts.TopicBytes(ctx, topic)
		in.Cost.StoredPerProduced = float64(in.Cost.StoredBytes) / float64(max(in.Bytes, 1))
	}
	if cold {
		in.Note = "PUTs include sealing everything when the broker stopped"
	}
	var got atomic.Int64
	var gotBytes, finished atomic.Int64
	rt := p.ReplayTimeout
	if rt <= 0 {
		rt = 10 * time.Minute
	}
	rctx, cancel := context.WithTimeout(ctx, rt)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, p.Partitions)
	perPart := in.Records / int64(p.Partitions) // round robin: each partition has about this many
	for part := 0; part < p.Partitions; part++ {
		c, err := t.NewConsumer(rctx, topic, part, true)
		if err != nil {
			return in, nil, fmt.Errorf("consumer: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			idle := 0
			var mine int64
			for rctx.Err() == nil {
				vs, err := c.Poll(rctx, 200*time.Millisecond)
				if err != nil {
					errc <- err
					return
				}
				if len(vs) == 0 {
					// Done once this partition's share is read and nothing more comes.
					if mine >= perPart || got.Load() >= in.Records {
						if idle++; idle >= 2 {
							return
						}
					}
					continue
				}
				idle = 0
				mine += int64(len(vs))
				var b int64
				for _, v := range vs {
					b += int64(len(v))
				}
				gotBytes.Add(b)
				if got.Add(int64(len(vs))) >= in.Records {
					finished.CompareAndSwap(0, time.Now().UnixNano())
					cancel() // everything is read: stop every consumer
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := finished.Load(); f != 0 {
		el = time.Duration(f - start.UnixNano()) // not the consumers' Close
	}
	close(errc)
	rp := &Result{Target: t.Name(), Workload: "replay", Records: got.Load(), Bytes: gotBytes.Load(), Seconds: el.Seconds()}
	rp.RecPerS, rp.MBPerS = float64(rp.Records)/el.Seconds(), float64(rp.Bytes)/1e6/el.Seconds()
	after := t.Usage(ctx)
	rp.Cost = cost(mid, after, rp.Bytes, false)
	if in.Cost.StoredBytes > 0 {
		rp.Cost.GetPerStored = float64(rp.Cost.GetBytes) / float64(in.Cost.StoredBytes)
	}
	if cold {
		rp.Note = "cold: fresh broker, empty data dir, everything from the object store"
		if rp.Cost.CacheHitRatio >= 0 {
			rp.Note += fmt.Sprintf("; read-cache hit ratio %.2f", rp.Cost.CacheHitRatio)
		}
	} else {
		rp.Note = "catch-up read from the server's own disk (page cache warm)"
	}
	for e := range errc {
		if e != nil && rp.Records < in.Records {
			return in, rp, fmt.Errorf("replay: %w", e)
		}
	}
	if rp.Records < in.Records {
		return in, rp, fmt.Errorf("replay read %d of %d records", rp.Records, in.Records)
	}
	return in, rp, nil
}

// Partitions produces across n partitions (a fresh topic) for
// p.Duration, a sustained phase: every partition is opened first (a
// warm-up of one-record batches, each producer's next batch going to the
// next partition, bounded in records and time), so the phase measures
// the steady state and not the one-time cost of claiming n partitions,
// which the Note reports (time and requests). With idle > 0 the target
// then stays idle that long and the Note gives the object-store requests
// per minute it made meanwhile.
func Partitions(ctx context.Context, t target.Target, topic string, n int, p Params, idle time.Duration) (*Result, error) {
	p.Partitions = n
	if err := t.CreateTopic(ctx, topic, n); err != nil {
		return nil, fmt.Errorf("create topic with %d partitions: %w", n, err)
	}
	warm := p
	warm.Batch, warm.Linger = 1, 0
	u0 := t.Usage(ctx)
	wstart := time.Now()
	if _, err := produceFor(ctx, t, topic, warm, 5*time.Minute, int64(n*p.Producers)); err != nil {
		return nil, fmt.Errorf("open %d partitions: %w", n, err)
	}
	wsecs := time.Since(wstart).Seconds()
	before := t.Usage(ctx)
	r, err := produceFor(ctx, t, topic, p, p.Duration, p.MaxRecords)
	if err != nil {
		return nil, err
	}
	r.Workload = fmt.Sprintf("partitions-%d", n)
	after := t.Usage(ctx)
	r.Cost = cost(before, after, r.Bytes, true)
	w := before.Objects.Sub(u0.Objects)
	r.Note = fmt.Sprintf("partitions opened first in %.1f s (%d PUTs, %d GETs, %d LISTs, not in the phase)", wsecs, w.Puts, w.Gets, w.Lists)
	if idle > 0 {
		start := time.Now()
		select {
		case <-time.After(idle):
		case <-ctx.Done():
			return r, ctx.Err()
		}
		d := t.Usage(ctx).Objects.Sub(after.Objects)
		mins := time.Since(start).Minutes()
		total := d.Puts + d.Gets + d.Lists + d.Heads + d.Deletes + d.Posts
		r.Note += fmt.Sprintf("; then idle %.0f s: %.1f requests/min (PUT %d, GET %d, LIST %d, HEAD %d, DELETE %d)",
			idle.Seconds(), float64(total)/mins, d.Puts, d.Gets, d.Lists, d.Heads, d.Deletes)
	}
	return r, nil
}
