package sim

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/history"
)

// This file is the check: the final phase (heal, seal, drain from fresh
// brokers), the history it builds from what every client saw, the rule
// for local acks, and the result.

// finish heals everything, lets in-flight requests end, closes every
// broker gracefully (they seal), and drains every partition.
func (r *runner) finish() {
	for _, p := range r.w.Live() {
		p.SetFaults(Faults{})
		p.Resume()
	}
	time.Sleep(10 * time.Second)
	r.ops.Wait()
	r.mu.Lock()
	r.cutoff = r.w.Now()
	r.mu.Unlock()
	r.liveness()
	var wg sync.WaitGroup
	for _, p := range r.w.Live() {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := p.Core.Close(ctx); err != nil {
				r.note(len(r.plan), "close %s: %v", p.Name, short(err))
			}
		})
	}
	wg.Wait()
	r.w.WaitKilled()
	r.drain()
	r.shareDrain()
}

// liveness checks that, once everything healed, every running broker
// takes a durable write to every partition within a few tries: a broker
// fenced for a partition (by a read, a takeover, a lost race) must claim
// it again, not refuse writes for good. (When ownership comes from
// membership, a non-owner may refuse; this check then asks the owner.)
func (r *runner) liveness() {
	step := len(r.plan)
	for _, p := range r.w.Live() {
		for ti, t := range r.topics {
			if t.era%2 == 0 {
				continue
			}
			for part := range t.spec.parts {
				var last codes.Code
				ok := false
				for try := 0; try < 5 && !ok; try++ {
					a := &attempt{step: step, proc: p.Name, topic: ti, part: part, values: []string{fmt.Sprintf("live.%s.%s.%d.%d", p.Name, t.spec.name, part, try)}}
					last = r.send(step, p, a, 0, 0)
					ok = last == codes.OK
					if !ok {
						time.Sleep(time.Second)
					}
				}
				if !ok {
					r.liveErr = append(r.liveErr, fmt.Sprintf("%s refused every durable write to %s/%d after everything healed (5 tries, 1s apart; last: %v); see the notes of the final step", p.Name, t.spec.name, part, last))
				}
			}
		}
	}
}

// drain reads every partition of every topic from fresh brokers: the
// first produces one record to each partition (so that it owns it and
// recovers every earlier owner's WAL), reads everything, and closes
// (sealing); the second reads everything again, now all from segments.
func (r *runner) drain() {
	d1, err := r.w.StartFresh("drain1")
	if err != nil {
		r.drainErr = append(r.drainErr, err.Error())
		return
	}
	ctx := context.Background()
	for ti, t := range r.topics {
		if !r.w.ConfigExists(t.spec.name) {
			_, err := d1.B.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: t.spec.name, Partitions: t.spec.parts}})
			if !r.w.ConfigExists(t.spec.name) {
				r.drainErr = append(r.drainErr, fmt.Sprintf("topic %s: create on a fresh broker failed: %v", t.spec.name, err))
				continue
			}
		}
		t.era = r.w.Era(t.spec.name)
		for p := range t.spec.parts {
			r.sentinel(d1, ti, p)
			r.readAll(d1, ti, p)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := d1.Core.Close(cctx); err != nil {
		r.drainErr = append(r.drainErr, fmt.Sprintf("close drain1: %v", err))
	}
	cancel()
	d2, err := r.w.StartFresh("drain2")
	if err != nil {
		r.drainErr = append(r.drainErr, err.Error())
		return
	}
	for ti, t := range r.topics {
		if t.era%2 == 1 {
			for p := range t.spec.parts {
				r.readAll(d2, ti, p)
			}
		}
	}
	d2.Core.Close(ctx)
}

// sentinel produces one idempotent record to a partition through d,
// retrying until it is acked.
func (r *runner) sentinel(d *Process, t int, p int32) {
	ctx := context.Background()
	init, err := d.B.InitProducer(ctx, &stratapb.InitProducerRequest{})
	if err != nil {
		r.drainErr = append(r.drainErr, fmt.Sprintf("%s/%d: InitProducer on a fresh broker: %v", topicSpecs[t].name, p, err))
		return
	}
	a := &attempt{step: len(r.plan), proc: d.Name, topic: t, part: p, values: []string{fmt.Sprintf("drain.%s.%d", topicSpecs[t].name, p)}}
	var code codes.Code
	for try := 0; try < 10; try++ {
		b := *a
		b.retry = try > 0
		code = r.send(len(r.plan), d, &b, init.ProducerId, 0)
		if code == codes.OK {
			return
		}
		time.Sleep(time.Second)
	}
	r.drainErr = append(r.drainErr, fmt.Sprintf("%s/%d: a fresh broker could not produce to it in 10 tries (last: %v); see the notes of step %d", topicSpecs[t].name, p, code, len(r.plan)))
}

// readAll reads a partition from its log start to its high watermark.
func (r *runner) readAll(d *Process, t int, p int32) {
	name := topicSpecs[t].name
	era := r.topics[t].era
	req := &stratapb.FetchRequest{Topic: name, Partition: p, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: 1 << 20, MaxWaitMs: 1}
	hwm, stuck := int64(-1), 0
	for rounds := 0; rounds < 10000; rounds++ {
		s := &fetchStream{ctx: context.Background()}
		err := d.B.Fetch(req, s)
		if err != nil {
			r.drainErr = append(r.drainErr, fmt.Sprintf("%s/%d: read on %s failed: %v", name, p, d.Name, err))
			return
		}
		recs := r.records(s, t, p)
		if len(recs) > 0 {
			r.reads = append(r.reads, readRec{proc: d.Name, topic: t, eras: [2]int{era, era}, part: p, recs: recs})
		}
		last := s.out[len(s.out)-1]
		hwm = last.HighWatermark
		if last.NextOffset >= hwm {
			r.hwms = append(r.hwms, history.Event{Type: history.TypeHWM, Topic: r.label(t, era), Partition: p, HWM: hwm})
			return
		}
		if len(recs) == 0 {
			if stuck++; stuck > 3 {
				r.drainErr = append(r.drainErr, fmt.Sprintf("%s/%d: read on %s stuck at offset %d below the high watermark %d", name, p, d.Name, last.NextOffset, hwm))
				return
			}
		}
		req.Start = &stratapb.FetchRequest_Offset{Offset: last.NextOffset}
	}
}

// check builds the history and checks it.
//
// Topics: every era of a topic name is its own topic for the checker
// (label). An operation that overlapped a delete or create of its topic
// may belong to more than one era: its values count as sent, with an
// unknown outcome, in each; its reads are dropped. Acks of eras that
// ended (their topic was deleted) become unknown: only the final era is
// drained.
//
// Acks: a durable ack must never be lost. A local ack may be lost only
// if its broker was killed, or ownership of the partition moved to
// another broker, before the record reached the bucket; and a move
// counts only while the broker could not have known of it (see excuse).
func (r *runner) check(res *Result) {
	var ev []history.Event
	excused := 0
	ackMode := map[string]string{}
	for _, a := range r.attempts {
		a.eras = r.attemptEras(a)
		if a.eras[0] != a.eras[1] {
			for era := a.eras[0]; era <= a.eras[1]; era++ {
				for _, v := range a.values {
					ev = append(ev,
						history.Event{Type: history.TypeSend, Process: a.proc, Topic: r.label(a.topic, era), Value: v},
						history.Event{Type: history.TypeUnknown, Process: a.proc, Topic: r.label(a.topic, era), Value: v, Error: "its topic was deleted or created while the request was in flight"})
				}
			}
			continue
		}
		topic := r.label(a.topic, a.eras[0])
		final := a.eras[0] == r.topics[a.topic].era
		for j, v := range a.values {
			ev = append(ev, history.Event{Type: history.TypeSend, Process: a.proc, Topic: topic, Value: v})
			out := history.Event{Process: a.proc, Topic: topic, Value: v, Error: a.err}
			switch a.res {
			case outFail:
				out.Type = history.TypeFail
			case outUnknown:
				out.Type = history.TypeUnknown
			case outAck:
				out.Type, out.Partition, out.Offset = history.TypeAck, a.part, a.offsets[j]
				switch {
				case !final:
					out.Type, out.Error = history.TypeUnknown, "acked, but its topic was deleted later"
				case a.local:
					if why := r.excuse(a, a.offsets[j]); why != "" {
						out.Type, out.Error = history.TypeUnknown, "local ack that may be lost: "+why
						excused++
					} else {
						ackMode[topic+"\x00"+v] = "local"
					}
				default:
					ackMode[topic+"\x00"+v] = "durable"
				}
			}
			ev = append(ev, out)
		}
	}
	for _, rd := range r.reads {
		if eras := r.readEras(rd); eras[0] == eras[1] {
			ev = append(ev, history.Event{Type: history.TypeRead, Process: rd.proc, Topic: r.label(rd.topic, eras[0]), Partition: rd.part, Records: rd.recs})
		}
	}
	ev = append(ev, r.hwms...)
	res.Report = history.Check(ev)
	res.Excused = excused
	res.Drain = r.drainErr
	res.Liveness = r.liveErr
	r.w.obs.mu.Lock()
	for _, e := range r.w.obs.readClaims {
		res.ReadClaims = append(res.ReadClaims, fmt.Sprintf("a %s on %s wrote the manifest of %s/%d (t%d)", e.what, e.proc, e.topic, e.part, e.at))
	}
	r.w.obs.mu.Unlock()
	res.Classes = classify(res.Report, ackMode, res.Drain)
	if len(res.ReadClaims) > 0 {
		res.Classes = append(res.Classes, "a read claimed ownership")
	}
	if len(res.Liveness) > 0 {
		res.Classes = append(res.Classes, "a fenced broker never writes again")
	}
	res.ShareStats = r.shareStats()
	for _, a := range r.checkShare() {
		res.Share = append(res.Share, a.msg)
		if !slices.Contains(res.Classes, "share: "+a.class) {
			res.Classes = append(res.Classes, "share: "+a.class)
		}
	}
	res.schedule = r.schedule()
}

// attemptEras is the range of eras a produce attempt may belong to. A
// broker resolves a topic name to the identity it has cached, and one
// that has not noticed a delete (it refreshes every
// TopicRefreshInterval) writes to the deleted topic: its acks belong to
// that topic and go with it (docs/durability.md, "Topic identity"). So:
//   - the record that the attempt's broker stored in a WAL object while
//     the request was in flight (the entry with its value at its offset) (every durable ack but an idempotent
//     retry's "stored before") names the identity it was written to: that
//     identity's era, and nothing else;
//   - otherwise, the eras the client saw during the request and the eras
//     the broker had seen from before the request to its end (known).
func (r *runner) attemptEras(a *attempt) [2]int {
	name := topicSpecs[a.topic].name
	o := &r.w.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if a.res == outAck {
		for _, e := range o.walStored {
			if e.proc == a.proc && e.topic == name && e.part == a.part && e.at > a.sent && e.at < a.done && e.holds(a.offsets[0], a.values[0]) {
				if era, ok := o.idEra[e.storage]; ok {
					return [2]int{era, era}
				}
				break
			}
		}
	}
	k, ok := r.knownLocked(a.proc, name, a.sent, a.done)
	return widen(a.eras, k, ok)
}

// readEras is the range of eras a read may have seen: the client's and
// its broker's (see attemptEras).
func (r *runner) readEras(rd readRec) [2]int {
	if rd.sent == 0 { // the drain's reads
		return rd.eras
	}
	r.w.obs.mu.Lock()
	defer r.w.obs.mu.Unlock()
	k, ok := r.knownLocked(rd.proc, topicSpecs[rd.topic].name, rd.sent, rd.done)
	return widen(rd.eras, k, ok)
}

// knownLocked is the range of eras of topic name that proc had seen
// between from and to (the last one before from, and every one up to
// to); ok is false when it had seen none by to (it loads the topic fresh,
// in the client's era). The caller holds obs.mu.
func (r *runner) knownLocked(proc, name string, from, to int64) (k [2]int, ok bool) {
	for _, kn := range r.w.obs.knows[proc+"\x00"+name] {
		switch {
		case kn.at < from:
			k, ok = [2]int{kn.era, kn.era}, true
		case kn.at <= to:
			if !ok {
				k, ok = [2]int{kn.era, kn.era}, true
			}
			k[0], k[1] = min(k[0], kn.era), max(k[1], kn.era)
		}
	}
	return k, ok
}

// widen is the smallest range holding a and, when ok, k.
func widen(a, k [2]int, ok bool) [2]int {
	if !ok {
		return a
	}
	return [2]int{min(a[0], k[0]), max(a[1], k[1])}
}

// excuse says why a local ack of offset off by attempt a may be lost, or
// "" if it may not. The rule ("a local ack may be lost only if its broker
// was killed or fenced before the record reached the bucket"; a record
// reached the bucket when a WAL object holding it was stored, and every
// lower object of that incarnation too: above a hole, a sequence number
// whose PUT never landed, recovery drops a partition's records where
// its offsets jump, committedLocked):
//   - a's broker was killed before the record was in a stored WAL object
//     (one stored after the request came: the same offset of an older era
//     does not count); or
//   - ownership of the partition moved (another process wrote its
//     manifest after a's broker last did) when a's broker could not know
//     yet: between the move and the request it had no stored WAL PUT
//     carrying the partition (with working fences there can be none), no
//     read of a fence under its own prefix and no manifest precondition
//     failure for the partition; and the record was not in a stored WAL
//     object before the move; or
//   - another process fenced an incarnation of a's broker when a's broker
//     could not know yet (between the fence and the request no stored WAL
//     PUT of it and no read of its fence), and the record was not in a
//     stored WAL object before the fence;
//
// (a read of a fence counts unless a read-only request's bucket view made
// it: that tells the broker's WAL writer nothing; see observe)
//
// and, for a move or a fence, only while the broker's local-ack lease held
// (it had stored a WAL object within LocalAckLease before the request):
// otherwise it must have waited for its WAL, and learned of the move.
//
// Moves and fences after the cutoff (the liveness writes' and the drain's
// claims, once everything healed and every request ended) do not count:
// by then every record should have reached the bucket.
func (r *runner) excuse(a *attempt, off int64) string {
	o := &r.w.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	same := func(e event) bool {
		return e.proc == a.proc && e.topic == topicSpecs[a.topic].name && e.part == a.part
	}
	storedBefore := func(at int64) bool {
		for _, e := range o.walStored {
			if same(e) && e.holds(off, a.values[off-a.offsets[0]]) && e.at > a.sent && e.at < at && o.committedLocked(e, at) {
				return true
			}
		}
		return false
	}
	if at, ok := o.kills[a.proc]; ok && !storedBefore(at) {
		return fmt.Sprintf("%s was killed (t%d) before it was in a stored WAL object", a.proc, at)
	}
	// The local-ack lease (docs/durability.md): a broker gives a local ack
	// at the fsync only while its WAL stored an object within
	// LocalAckLease; otherwise it waits for the WAL, which tells it of a
	// fence. So a move or a fence excuses a lost local ack only if the
	// lease held when the request was handled.
	lease := ingest.DefaultPartitionConfig().LocalAckLease
	leaseHeld := slices.ContainsFunc(o.walStored, func(e event) bool {
		return e.proc == a.proc && e.at < a.done && !e.when.Before(a.sentAt.Add(-lease))
	})
	if !leaseHeld {
		return ""
	}
	var claim int64
	for _, e := range o.manifestWrites {
		if same(e) && e.at < a.sent {
			claim = max(claim, e.at)
		}
	}
	for _, m := range o.manifestWrites {
		if m.proc == a.proc || m.topic != topicSpecs[a.topic].name || m.part != a.part || m.at <= claim || m.at >= r.cutoff {
			continue
		}
		knew := slices.ContainsFunc(o.reveals, func(e event) bool {
			return e.proc == a.proc && e.at > m.at && e.at < a.sent && (e.what == "fence" || same(e))
		})
		if knew || storedBefore(m.at) {
			continue
		}
		return fmt.Sprintf("ownership moved to %s (t%d) before the record reached the bucket, and %s could not know yet", m.proc, m.at, a.proc)
	}
	for _, f := range o.fences {
		if o.incs[f.what] != a.proc || f.at >= r.cutoff {
			continue
		}
		knew := slices.ContainsFunc(o.reveals, func(e event) bool {
			return e.proc == a.proc && e.at > f.at && e.at < a.sent && (e.what == "wal" || e.what == "fence")
		})
		if knew || storedBefore(f.at) {
			continue
		}
		return fmt.Sprintf("%s fenced its incarnation %s (t%d) before the record reached the bucket, and %s could not know yet", f.proc, f.what, f.at, a.proc)
	}
	return ""
}

// classify names the kinds of failure a report shows.
func classify(rep *history.Report, ackMode map[string]string, drain []string) []string {
	set := map[string]bool{}
	for _, l := range rep.Lost {
		set["lost "+ackMode[l.Topic+"\x00"+l.Value]+" ack"] = true
	}
	if len(rep.Inconsistent) > 0 {
		set["one offset, two values"] = true
	}
	if len(rep.Duplicates) > 0 {
		set["duplicate"] = true
	}
	for _, u := range rep.Unexpected {
		if strings.HasPrefix(u.Value, "s") {
			set["phantom: a record of another era of the topic"] = true
		} else {
			set["phantom: never sent"] = true
		}
	}
	if len(rep.AckMismatches) > 0 {
		set["read at another offset than acked"] = true
	}
	if len(rep.Gaps) > 0 {
		set["gap"] = true
	}
	if len(rep.FailedButPresent) > 0 {
		set["refused but stored"] = true
	}
	if len(drain) > 0 {
		set["drain failed"] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// schedule is the plan with what happened at each step.
func (r *runner) schedule() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i, st := range r.plan {
		fmt.Fprintf(&b, "%4d %8.3fs  %v\n", i, r.stepAt[i].Seconds(), st)
		for _, n := range r.notes[i] {
			fmt.Fprintf(&b, "                 -> %s\n", n)
		}
	}
	fmt.Fprintf(&b, "     final: heal, resume, wait 10s, a durable write to every partition on every broker, close every broker, drain from fresh brokers, drain the share group from a fresh broker\n")
	for _, n := range r.notes[len(r.plan)] {
		fmt.Fprintf(&b, "                 -> %s\n", n)
	}
	return b.String()
}

// Result is the outcome of one run.
type Result struct {
	Seed     uint64
	Plan     []Step
	Report   *history.Report
	Drain    []string // what went wrong in the final drain
	Liveness []string // brokers that refused every write after everything healed
	// ReadClaims are manifest writes made for a read-only request
	// (Fetch, DescribeTopic, ListOffsets): a read must never claim.
	ReadClaims []string
	// Share are the broken queue guarantees of the share group
	// (checkShare).
	Share      []string
	ShareStats string   // what the share group went through
	Classes    []string // kinds of failure found
	Excused    int      // local acks the checker allowed to be lost
	schedule   string
	flags      string // replays the run
}

// OK reports whether the run found nothing wrong.
func (r *Result) OK() bool {
	return r.Report != nil && r.Report.OK() && len(r.Drain) == 0 && len(r.Liveness) == 0 && len(r.ReadClaims) == 0 && len(r.Share) == 0
}

// Summary is one line: the seed and what was found.
func (r *Result) Summary() string {
	if r.OK() {
		return fmt.Sprintf("seed %d: ok (%d steps, %d local acks excused; share group: %s)", r.Seed, len(r.Plan), r.Excused, r.ShareStats)
	}
	counts := ""
	if r.Report != nil {
		counts = fmt.Sprintf(" (lost=%d inconsistent=%d duplicate=%d unexpected=%d ack-mismatch=%d gap=%d refused-but-stored=%d)",
			len(r.Report.Lost), len(r.Report.Inconsistent), len(r.Report.Duplicates), len(r.Report.Unexpected),
			len(r.Report.AckMismatches), len(r.Report.Gaps), len(r.Report.FailedButPresent))
	}
	if len(r.Share) > 0 {
		counts += fmt.Sprintf(" (share findings: %d)", len(r.Share))
	}
	return fmt.Sprintf("seed %d: FAIL: %s%s", r.Seed, strings.Join(r.Classes, "; "), counts)
}

// Replay is the command that replays the run.
func (r *Result) Replay() string {
	return fmt.Sprintf("go test ./internal/sim -run 'TestSim$' %s -v", r.flags)
}

// Detail is the checker's findings, the drain's errors and the annotated
// schedule.
func (r *Result) Detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nreplay: %s\n", r.Summary(), r.Replay())
	if r.Report != nil {
		fmt.Fprintf(&b, "%v\n", r.Report)
	}
	for _, d := range r.Drain {
		fmt.Fprintf(&b, "drain: %s\n", d)
	}
	for _, l := range r.Liveness {
		fmt.Fprintf(&b, "liveness: %s\n", l)
	}
	for i, c := range r.ReadClaims {
		if i == 10 {
			fmt.Fprintf(&b, "  ... and %d more reads that claimed\n", len(r.ReadClaims)-10)
			break
		}
		fmt.Fprintf(&b, "read claimed: %s\n", c)
	}
	for i, s := range r.Share {
		if i == 30 {
			fmt.Fprintf(&b, "  ... and %d more share-group findings\n", len(r.Share)-30)
			break
		}
		fmt.Fprintf(&b, "share: %s\n", s)
	}
	fmt.Fprintf(&b, "schedule (step, fake time, what, then what happened; t<n> is the logical clock):\n%s", r.schedule)
	return b.String()
}
