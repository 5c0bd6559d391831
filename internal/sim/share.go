package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/meta"
)

// This file is the share-group part of the simulation: the group on topic
// a, the client steps that create it, receive from it and settle what
// they hold, the history of deliveries and settles, the final drain of
// the group, and the checks of the queue guarantees (doc.go lists them).
// The share ops call the core's methods (core.Broker's CreateShareGroup,
// Receive, Settle, DescribeShareGroup) directly, not the front end's
// share handlers (written beside this simulation; they have tests of
// their own).

const (
	shareTopic = 0 // topicSpecs index: topic a, which is never deleted
	shareGroup = "g"
	// shareMaxHeld bounds the receipts of one settle request.
	shareMaxHeld = 20
)

// shareConfig is the group's settings: short leases and backoffs, so that
// leases run out, nacked records come back and records reach the
// dead-letter topic within seconds of fake time.
func shareConfig() core.ShareGroupConfig {
	return core.ShareGroupConfig{Topic: topicSpecs[shareTopic].name, Group: shareGroup, VisibilityMs: 3000, MaxDeliveries: 3, BackoffMinMs: 200, BackoffMaxMs: 1000}
}

// dlqTopic is the group's dead-letter topic (the default name).
func dlqTopic() string { return topicSpecs[shareTopic].name + ".dlq." + shareGroup }

// recKey is a record's identity in the group: partition and offset of
// topic a.
type recKey struct {
	part int32
	off  int64
}

func (k recKey) String() string {
	return fmt.Sprintf("%s/%d@%d", topicSpecs[shareTopic].name, k.part, k.off)
}

// delivery is one record handed out: a Receive answered it to the client.
type delivery struct {
	step    int // plan step; len(plan) for the final drain
	proc    string
	key     recKey
	value   string
	count   int32
	receipt string
	// start and until are the lease's start (its end less the visibility
	// the receive asked for) and end (LeaseUntil), in ms of fake time;
	// sent and done when the broker got the receive and when the answer
	// reached the client.
	start, until, sent, done int64
}

func (d *delivery) String() string {
	return fmt.Sprintf("delivery %d by %s at step %d (lease %s to %s)", d.count, d.proc, d.step, fakeMs(d.start), fakeMs(d.until))
}

// settleAttempt is one receipt of a settle request.
type settleAttempt struct {
	step       int
	proc       string
	kind       core.SettleKind
	d          *delivery
	sent, done int64   // ms of fake time
	res        outcome // outAck: settled (no error for the receipt); outFail: certainly not applied; outUnknown: maybe applied
	err        string
}

func (a *settleAttempt) String() string {
	res := map[outcome]string{outAck: "ok", outFail: "failed", outUnknown: "unknown"}[a.res]
	return fmt.Sprintf("%s of delivery %d by %s at step %d (sent %s, answered %s: %s)", settleName(a.kind), a.d.count, a.proc, a.step, fakeMs(a.sent), fakeMs(a.done), res)
}

// dlqRec is a record of the dead-letter topic.
type dlqRec struct {
	part    int32
	off     int64
	value   string
	headers map[string]string
}

// shareRun is the runner's share-group state. Guarded by runner.mu.
type shareRun struct {
	rng        *rand.Rand // the client's choices: what to settle, what to abandon
	exists     bool       // the group's config is in the bucket
	creating   bool
	cfg        *core.ShareGroupConfig // as stored, read after the run
	held       []*delivery            // deliveries the client holds and may settle
	deliveries []*delivery
	settles    []*settleAttempt
	drainErr   []string
	dlq        []dlqRec
	drained    bool // the final drain found the group empty
}

// ms is the fake time in milliseconds, the queue state's clock.
func ms() int64 { return time.Now().UnixMilli() }

// fakeMs shows a fake time (ms) as seconds since the bubble's epoch.
func fakeMs(t int64) string {
	return fmt.Sprintf("%.3fs", float64(t-bubbleEpoch)/1000)
}

// bubbleEpoch is where synctest's fake clock starts (2000-01-01 UTC).
var bubbleEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func settleName(k core.SettleKind) string {
	switch k {
	case core.SettleAck:
		return "ack"
	case core.SettleNack:
		return "nack"
	case core.SettleRelease:
		return "release"
	case core.SettleReject:
		return "reject"
	case core.SettleExtend:
		return "extend"
	}
	return fmt.Sprintf("settle(%d)", k)
}

func shareParts(p int32) string {
	if p < 0 {
		return topicSpecs[shareTopic].name + "/*"
	}
	return fmt.Sprintf("%s/%d", topicSpecs[shareTopic].name, p)
}

// ShareConfig reads the share group's config from the bucket (god's
// view): the one of topic name's current identity.
func (w *World) ShareConfig(name, group string) (*core.ShareGroupConfig, bool) {
	ctx := context.Background()
	rc, _, err := w.bucket.Get(ctx, meta.TopicConfigKey(name))
	if err != nil {
		return nil, false
	}
	var tc struct {
		ID string `json:"topic_id"`
	}
	err = json.NewDecoder(rc).Decode(&tc)
	rc.Close()
	if err != nil {
		return nil, false
	}
	rc, _, err = w.bucket.Get(ctx, meta.ShareConfigKey(meta.StorageName(name, tc.ID), group))
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	var cfg core.ShareGroupConfig
	if err != nil || json.Unmarshal(data, &cfg) != nil {
		return nil, false
	}
	return &cfg, true
}

// shareCreate creates the group, synchronously (no other step runs
// meanwhile); whether it exists afterwards is read from the bucket.
func (r *runner) shareCreate(i int, p *Process) {
	r.mu.Lock()
	if r.share.exists || r.share.creating {
		r.mu.Unlock()
		r.note(i, "skipped: the group exists or is being created")
		return
	}
	r.share.creating = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := p.Call(ctx, func(ctx context.Context) error {
		_, err := p.Core.CreateShareGroup(ctx, shareConfig())
		return err
	})
	cancel()
	_, exists := r.w.ShareConfig(topicSpecs[shareTopic].name, shareGroup)
	r.mu.Lock()
	r.share.exists, r.share.creating = exists, false
	r.mu.Unlock()
	r.note(i, "%s: create share group %s: %s; it exists: %v", p.Name, shareGroup, errText(err), exists)
}

// shareReady reports whether the group exists; when it does not yet (its
// create failed), this step creates it instead.
func (r *runner) shareReady(i int, p *Process) bool {
	r.mu.Lock()
	exists := r.share.exists
	r.mu.Unlock()
	if !exists {
		r.note(i, "the share group does not exist yet: creating it instead")
		r.shareCreate(i, p)
	}
	return exists
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "error: " + short(err)
}

// receive asks p for records of the group and records what the client
// got; the client abandons some of them (their leases run out).
func (r *runner) receive(i int, st Step, p *Process) {
	if !r.shareReady(i, p) {
		return
	}
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req := &core.ReceiveRequest{Topic: topicSpecs[shareTopic].name, Group: shareGroup, MaxRecords: 4 * st.N, Wait: st.Poll, Visibility: st.Vis}
		if st.Part >= 0 {
			req.Partitions = []int32{st.Part}
		}
		var (
			ds   []core.Delivery
			sent int64
		)
		ok, err := p.Call(ctx, func(ctx context.Context) (err error) {
			sent = ms()
			ds, err = p.Core.Receive(ctx, req)
			return err
		})
		switch {
		case !ok:
			r.note(i, "not sent: %v", err)
			return
		case errors.Is(err, errConnLost):
			r.note(i, "%s: the answer was lost (%d deliveries never reached the client): %v", p.Name, len(ds), short(err))
			return
		case err != nil:
			r.note(i, "%s: error: %v", p.Name, short(err))
			return
		}
		got := r.delivered(i, p.Name, ds, st.Vis, sent, ms(), true)
		r.note(i, "%s: received %s", p.Name, got)
	}()
}

// delivered records deliveries the client got, holding them (hold) or not,
// and returns a summary for the schedule.
func (r *runner) delivered(i int, proc string, ds []core.Delivery, vis time.Duration, sent, done int64, hold bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	abandoned := 0
	for _, x := range ds {
		d := &delivery{step: i, proc: proc, key: recKey{x.Partition, x.Record.Offset}, value: string(x.Record.Value), count: x.DeliveryCount, receipt: x.Receipt,
			until: x.LeaseUntil.UnixMilli(), sent: sent, done: done}
		d.start = d.until - vis.Milliseconds()
		r.share.deliveries = append(r.share.deliveries, d)
		if b.Len() < 200 {
			fmt.Fprintf(&b, " %v=%s#%d", d.key, d.value, d.count)
		}
		switch {
		case !hold:
		case r.share.rng.IntN(6) == 0:
			abandoned++ // the client forgets it: its lease runs out
		default:
			r.share.held = append(r.share.held, d)
		}
	}
	out := fmt.Sprintf("%d records", len(ds))
	if len(ds) > 0 {
		out += ":" + b.String()
	}
	if abandoned > 0 {
		out += fmt.Sprintf(" (%d abandoned)", abandoned)
	}
	return out
}

// settle settles a random subset of what the client holds (of partition
// st.Part, or any) with st.Settle.
func (r *runner) settle(i int, st Step, p *Process) {
	if !r.shareReady(i, p) {
		return
	}
	r.mu.Lock()
	var chosen []*delivery
	kept := r.share.held[:0]
	now := ms()
	for _, d := range r.share.held {
		switch {
		case d.until <= now && r.share.rng.IntN(10) < 8:
			// The client saw the lease end and gives it up; now and then
			// it settles an ended lease anyway.
		case len(chosen) < shareMaxHeld && (st.Part < 0 || d.key.part == st.Part) && r.share.rng.Float64() < st.Frac:
			chosen = append(chosen, d)
		default:
			kept = append(kept, d)
		}
	}
	r.share.held = kept
	r.mu.Unlock()
	if len(chosen) == 0 {
		r.note(i, "skipped: the client holds nothing to settle there")
		return
	}
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req := &core.SettleRequest{Topic: topicSpecs[shareTopic].name, Group: shareGroup, Kind: st.Settle, Reason: fmt.Sprintf("step %d", i)}
		for _, d := range chosen {
			req.Receipts = append(req.Receipts, d.receipt)
		}
		var (
			res  []core.SettleResult
			sent int64
		)
		ok, err := p.Call(ctx, func(ctx context.Context) (err error) {
			sent = ms()
			res, err = p.Core.Settle(ctx, req)
			return err
		})
		if !ok {
			r.mu.Lock()
			r.share.held = append(r.share.held, chosen...) // never reached the broker
			r.mu.Unlock()
			r.note(i, "not sent: %v", err)
			return
		}
		r.note(i, "%s: %s", p.Name, r.settled(i, p.Name, st.Settle, chosen, res, err, sent, ms(), true))
	}()
}

// settled records the outcome of a settle of ds (res and err as the
// broker answered) and returns a summary for the schedule. With retry,
// the client holds on to some receipts whose outcome it does not know,
// to settle them again.
func (r *runner) settled(i int, proc string, kind core.SettleKind, ds []*delivery, res []core.SettleResult, err error, sent, done int64, retry bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[outcome]int{}
	var firstErr string
	for j, d := range ds {
		a := &settleAttempt{step: i, proc: proc, kind: kind, d: d, sent: sent, done: done}
		var e error
		switch {
		case errors.Is(err, errConnLost):
			a.res, e = outUnknown, err
		case err != nil:
			a.res, e = outFail, err // refused as a whole before any receipt
		case j >= len(res):
			a.res, e = outUnknown, fmt.Errorf("sim: the broker answered %d results for %d receipts", len(res), len(ds))
		case res[j].Err == nil:
			a.res = outAck
		case errors.Is(res[j].Err, core.ErrFailedPrecondition), errors.Is(res[j].Err, core.ErrInvalidArgument), errors.Is(res[j].Err, core.ErrNotOwner):
			a.res, e = outFail, res[j].Err
		default:
			a.res, e = outUnknown, res[j].Err
		}
		if e != nil {
			a.err = e.Error()
			if firstErr == "" {
				firstErr = short(e)
			}
		}
		n[a.res]++
		r.share.settles = append(r.share.settles, a)
		if retry && a.res != outAck && !errors.Is(e, core.ErrFailedPrecondition) && r.share.rng.IntN(2) == 0 {
			r.share.held = append(r.share.held, d)
		}
	}
	out := fmt.Sprintf("%s of %d: %d ok, %d failed, %d unknown", settleName(kind), len(ds), n[outAck], n[outFail], n[outUnknown])
	if firstErr != "" {
		out += "; first error: " + firstErr
	}
	return out
}

// shareDrain drains the group from a fresh broker once everything healed
// and every other broker closed: it receives with short leases and acks
// everything, letting fake time pass for backoffs, delays and the leases
// still running, until the group holds nothing and has read every
// partition to its end; then it reads the dead-letter topic.
func (r *runner) shareDrain() {
	cfg, ok := r.w.ShareConfig(topicSpecs[shareTopic].name, shareGroup)
	r.mu.Lock()
	exists := r.share.exists
	r.share.cfg = cfg
	r.mu.Unlock()
	if !ok {
		if exists {
			r.share.drainErr = append(r.share.drainErr, "the share group's config is gone from the bucket")
		}
		return
	}
	step := len(r.plan)
	d, err := r.w.StartFresh("share-drain")
	if err != nil {
		r.share.drainErr = append(r.share.drainErr, err.Error())
		return
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		d.Core.Close(ctx)
		cancel()
	}()
	ends := r.logEnds()
	const vis = time.Second
	quiet, fails := 0, 0
	var last string
	for round := 0; round < 400 && quiet < 3 && fails < 20; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sent := ms()
		ds, err := d.Core.Receive(ctx, &core.ReceiveRequest{Topic: topicSpecs[shareTopic].name, Group: shareGroup, MaxRecords: core.MaxReceiveRecords, Visibility: vis})
		cancel()
		if err != nil {
			fails++
			last = "receive: " + short(err)
			time.Sleep(time.Second)
			continue
		}
		if len(ds) > 0 {
			quiet = 0
			r.delivered(step, d.Name, ds, vis, sent, ms(), false)
			r.mu.Lock()
			batch := r.share.deliveries[len(r.share.deliveries)-len(ds):]
			r.mu.Unlock()
			req := &core.SettleRequest{Topic: topicSpecs[shareTopic].name, Group: shareGroup, Kind: core.SettleAck}
			for _, x := range ds {
				req.Receipts = append(req.Receipts, x.Receipt)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			sent := ms()
			res, err := d.Core.Settle(ctx, req)
			cancel()
			r.settled(step, d.Name, core.SettleAck, batch, res, err, sent, ms(), false)
			continue
		}
		empty, why := r.shareEmpty(d, ends)
		if empty {
			quiet++
		} else {
			quiet, last = 0, why
		}
		time.Sleep(500 * time.Millisecond)
	}
	if quiet < 3 {
		r.share.drainErr = append(r.share.drainErr, fmt.Sprintf("a fresh broker could not drain the share group (%d receive errors); last: %s", fails, last))
	} else {
		r.share.drained = true
	}
	r.readDLQ(d)
}

// logEnds is each partition's end of topic a as the final drain read it.
func (r *runner) logEnds() map[int32]int64 {
	ends := map[int32]int64{}
	label := r.label(shareTopic, r.topics[shareTopic].era)
	for _, h := range r.hwms {
		if h.Topic == label {
			ends[h.Partition] = h.HWM
		}
	}
	return ends
}

// shareEmpty reports whether the group holds nothing on d and has read
// every partition to its end, or else what it still holds.
func (r *runner) shareEmpty(d *Process, ends map[int32]int64) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := d.Core.DescribeShareGroup(ctx, topicSpecs[shareTopic].name, shareGroup)
	if err != nil {
		return false, "describe: " + short(err)
	}
	for _, p := range desc.Partitions {
		if !p.Live {
			return false, fmt.Sprintf("partition %d is not live on %s", p.Partition, d.Name)
		}
		if busy := p.Available + p.InFlight + p.Backoff + p.Delayed + p.KeyBlocked + p.DeadLetterPending; busy > 0 || p.Cursor < ends[p.Partition] {
			return false, fmt.Sprintf("partition %d: cursor %d of %d, available %d, in flight %d, backoff %d, delayed %d, dead-letter pending %d",
				p.Partition, p.Cursor, ends[p.Partition], p.Available, p.InFlight, p.Backoff, p.Delayed, p.DeadLetterPending)
		}
	}
	return true, ""
}

// readDLQ reads every partition of the dead-letter topic through d.
func (r *runner) readDLQ(d *Process) {
	name := dlqTopic()
	for p := range topicSpecs[shareTopic].parts {
		req := &stratapb.FetchRequest{Topic: name, Partition: p, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: 1 << 20, MaxWaitMs: 1}
		for rounds := 0; rounds < 1000; rounds++ {
			s := &fetchStream{ctx: context.Background()}
			if err := d.B.Fetch(req, s); err != nil {
				r.share.drainErr = append(r.share.drainErr, fmt.Sprintf("reading dead-letter topic %s/%d on %s: %v", name, p, d.Name, err))
				break
			}
			n := 0
			for _, resp := range s.out {
				for _, rec := range resp.Records {
					h := map[string]string{}
					for _, x := range rec.Headers {
						h[x.Key] = string(x.Value)
					}
					r.share.dlq = append(r.share.dlq, dlqRec{part: p, off: rec.Offset, value: string(rec.Value), headers: h})
					n++
				}
			}
			last := s.out[len(s.out)-1]
			if last.NextOffset >= last.HighWatermark || n == 0 {
				break
			}
			req.Start = &stratapb.FetchRequest_Offset{Offset: last.NextOffset}
		}
	}
}

// shareAnomaly is one broken queue guarantee.
type shareAnomaly struct {
	class string
	msg   string
}

// checkShare checks the share group's history (see doc.go) and returns
// what it broke.
func (r *runner) checkShare() []shareAnomaly {
	sh := &r.share
	var out []shareAnomaly
	add := func(class, format string, args ...any) {
		out = append(out, shareAnomaly{class, fmt.Sprintf(format, args...)})
	}
	for _, e := range sh.drainErr {
		add("share drain failed", "%s", e)
	}
	if sh.cfg == nil {
		return out
	}
	maxDeliveries := sh.cfg.MaxDeliveries
	start := func(p int32) int64 {
		if int(p) < len(sh.cfg.StartOffsets) {
			return sh.cfg.StartOffsets[p]
		}
		return 0
	}

	// The final log of topic a, as the drain read it.
	logv := map[recKey]string{}
	label := r.label(shareTopic, r.topics[shareTopic].era)
	for _, rd := range r.reads {
		if rd.proc == "drain2" && rd.topic == shareTopic && r.label(shareTopic, rd.eras[0]) == label {
			for _, rec := range rd.recs {
				logv[recKey{rd.part, rec.Offset}] = rec.Value
			}
		}
	}

	byKey := map[recKey][]*delivery{}
	for _, d := range sh.deliveries {
		byKey[d.key] = append(byKey[d.key], d)
	}
	settlesOf := map[*delivery][]*settleAttempt{}
	acks := map[recKey][]*settleAttempt{} // ack attempts that may have applied
	for _, a := range sh.settles {
		settlesOf[a.d] = append(settlesOf[a.d], a)
		if a.kind == core.SettleAck && a.res != outFail {
			acks[a.d.key] = append(acks[a.d.key], a)
		}
	}
	dlqOf := map[recKey][]dlqRec{}
	for _, x := range sh.dlq {
		p, perr := strconv.ParseInt(x.headers[core.HeaderDLQOriginPartition], 10, 32)
		off, oerr := strconv.ParseInt(x.headers[core.HeaderDLQOriginOffset], 10, 64)
		if perr != nil || oerr != nil || x.headers[core.HeaderDLQOriginTopic] != topicSpecs[shareTopic].name || x.headers[core.HeaderDLQGroup] != shareGroup {
			add("dead letter without its origin", "%s/%d@%d (%s) lacks origin headers (topic, partition, offset, group): %v", dlqTopic(), x.part, x.off, x.value, x.headers)
			continue
		}
		k := recKey{int32(p), off}
		dlqOf[k] = append(dlqOf[k], x)
		if v, ok := logv[k]; !ok || v != x.value {
			add("dead letter without its origin", "%s/%d@%d holds %q as a copy of %v, which holds %q", dlqTopic(), x.part, x.off, x.value, k, v)
		}
		if c, err := strconv.Atoi(x.headers[core.HeaderDLQDeliveryCount]); err != nil || c < 1 || c > int(maxDeliveries) {
			add("dead letter without its origin", "%s/%d@%d (copy of %v): delivery count header %q is not 1 to %d", dlqTopic(), x.part, x.off, k, x.headers[core.HeaderDLQDeliveryCount], maxDeliveries)
		}
	}
	for k, xs := range dlqOf {
		if len(xs) > 1 {
			var at []string
			for _, x := range xs {
				at = append(at, fmt.Sprintf("%d/%d", x.part, x.off))
			}
			add("dead letter stored twice", "%v is in %s %d times (at %s): the dead-letter producer must be idempotent", k, dlqTopic(), len(xs), strings.Join(at, ", "))
		}
	}

	keys := make([]recKey, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].part < keys[j].part || keys[i].part == keys[j].part && keys[i].off < keys[j].off
	})
	for _, k := range keys {
		ds := byKey[k]
		sort.SliceStable(ds, func(i, j int) bool {
			return ds[i].start < ds[j].start || ds[i].start == ds[j].start && ds[i].count < ds[j].count
		})
		for _, d := range ds {
			switch v, ok := logv[k]; {
			case !ok:
				add("delivery of a record not in the log", "%v was handed out (%v, value %q), but the final log of topic a has no record there", k, d, d.value)
			case v != d.value:
				add("delivery of a record not in the log", "%v was handed out with value %q (%v), but the final log holds %q there", k, d.value, d, v)
			}
			if k.off < start(k.part) {
				add("delivery from before the group", "%v was handed out (%v), below the group's start offset %d on partition %d", k, d, start(k.part), k.part)
			}
			if d.start < d.sent || d.start > d.done {
				add("lease times", "%v: %v began outside its receive (sent %s, answered %s): the lease end is not the receive time plus the visibility asked for", k, d, fakeMs(d.sent), fakeMs(d.done))
			}
			if d.count < 1 || d.count > maxDeliveries {
				add("delivered past max deliveries", "%v: %v has delivery count %d, out of 1..%d (MaxDeliveries)", k, d, d.count, maxDeliveries)
			}
		}
		// 1. Ack durability: nothing is handed out after an ack of it
		// succeeded, nor moved to the dead-letter topic.
		for _, a := range acks[k] {
			if a.res != outAck {
				continue
			}
			for _, d := range ds {
				if d != a.d && d.start >= a.sent {
					add("acked record delivered again", "%v: %v, yet it was handed out again afterwards: %v", k, a, d)
				}
			}
			if len(dlqOf[k]) > 0 {
				add("acked record dead-lettered", "%v: %v, yet it is in the dead-letter topic %s", k, a, dlqTopic())
			}
		}
		// 2. Lease exclusivity: a delivery's lease lasts until its end or
		// a settle of it that may have applied; no other delivery begins
		// within it.
		for i, d0 := range ds {
			for _, d1 := range ds[i+1:] {
				if d1.start >= d0.until || d1 == d0 {
					continue
				}
				ended := false
				for _, a := range settlesOf[d0] {
					if a.res != outFail && a.sent <= d1.start {
						ended = true
					}
				}
				if !ended {
					add("two live leases", "%v: %v was handed out while the lease of %v had not ended and no settle of it had been sent", k, d1, d0)
				}
			}
		}
		// 4. Delivery counts grow, but after a release (which takes one
		// back before the next lease adds one).
		for i := 1; i < len(ds); i++ {
			prev, next := ds[i-1], ds[i]
			released := slices.ContainsFunc(settlesOf[prev], func(a *settleAttempt) bool {
				return a.kind == core.SettleRelease && a.res != outFail && a.sent <= next.start
			})
			switch {
			case next.count < prev.count:
				add("delivery count went back", "%v: %v came after %v", k, next, prev)
			case next.count == prev.count && !released:
				add("delivery count went back", "%v: %v has the count of the one before, %v, which was not released", k, next, prev)
			}
		}
	}

	// 3. At least once: every record of the group (in the final log at or
	// past the group's start, or durably acked there) is acked by someone
	// (an ack that may have applied) or in the dead-letter topic.
	if !sh.drained {
		return out
	}
	need := map[recKey]string{}
	for k, v := range logv {
		if k.off >= start(k.part) {
			need[k] = v
		}
	}
	for _, a := range r.attempts {
		if a.topic != shareTopic || a.res != outAck || a.local || a.eras[0] != a.eras[1] || r.label(shareTopic, a.eras[0]) != label {
			continue
		}
		for j, off := range a.offsets {
			if k := (recKey{a.part, off}); off >= start(a.part) && need[k] == "" {
				need[k] = a.values[j]
			}
		}
	}
	var missing []recKey
	for k := range need {
		if len(acks[k]) == 0 && len(dlqOf[k]) == 0 {
			missing = append(missing, k)
		}
	}
	sort.Slice(missing, func(i, j int) bool {
		return missing[i].part < missing[j].part || missing[i].part == missing[j].part && missing[i].off < missing[j].off
	})
	for i, k := range missing {
		if i == 10 {
			add("record neither acked nor dead-lettered", "... and %d more", len(missing)-10)
			break
		}
		var hist []string
		for _, d := range byKey[k] {
			hist = append(hist, d.String())
			for _, a := range settlesOf[d] {
				hist = append(hist, "  "+a.String())
			}
		}
		what := "it was never handed out"
		if len(hist) > 0 {
			what = "its deliveries:" + strings.Join(append([]string{""}, hist...), "\n      ")
		}
		add("record neither acked nor dead-lettered", "%v (%q) was neither acked nor moved to the dead-letter topic after the drain; %s", k, need[k], what)
	}
	return out
}

// shareStats sums up what the share group went through.
func (r *runner) shareStats() string {
	sh := &r.share
	if sh.cfg == nil {
		return "never created"
	}
	step := len(r.plan)
	var run, drain, redelivered, acked, drainAcked, settles int
	for _, d := range sh.deliveries {
		if d.step == step {
			drain++
		} else {
			run++
		}
		if d.count > 1 {
			redelivered++
		}
	}
	for _, a := range sh.settles {
		switch {
		case a.step == step:
			if a.res == outAck {
				drainAcked++
			}
		case a.res == outAck && a.kind == core.SettleAck:
			acked++
			settles++
		case a.res == outAck:
			settles++
		}
	}
	return fmt.Sprintf("%d deliveries (%d redeliveries), %d settled (%d acks), then the drain: %d deliveries, %d acks; %d dead letters",
		run, redelivered, settles, acked, drain, drainAcked, len(sh.dlq))
}
