package queue

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// sim drives a live State the way the broker does (offers while
// CanOffer, receives, settles, spills to and loads from a run store,
// moves dead letters, snapshots), logs every event in its encoded form,
// and checks after every step what receivers may rely on. Its log and
// snapshots are then rebuilt and compared with the live state.
type sim struct {
	tb    testing.TB
	cfg   Config
	rng   *rand.Rand
	s     *State
	now   int64
	start int64
	tok   func() uint64

	recs     []Record // the partition's records, in offset order (with gaps)
	nextOff  int64
	offerIdx int // recs[offerIdx:] are not offered yet

	log     [][]byte            // every event, encoded, in order
	store   map[string][]Record // stored runs
	nextRun int
	snaps   []simSnap

	// What receivers saw.
	leases    map[int64]Lease // the latest lease of each record not settled through it
	settled   map[int64]bool  // acked or stored in the dead-letter topic
	count     map[int64]int32 // delivery count the record's next lease must have, minus one
	notBefore map[int64]int64 // the record is not handed out before this (nack, reject)
	stale     []Lease         // receipts of earlier deliveries

	noProduce bool // no more records are produced
	far       int  // in 20 records produced, how many are delayed far (spilled)
}

// settleEvent is the event kind each settle logs.
var settleEvent = map[SettleKind]Kind{Ack: KindAck, Nack: KindNack, Release: KindRelease, Reject: KindReject, Extend: KindExtend}

type simSnap struct {
	data []byte
	pos  int // events logged before it
}

func newSim(tb testing.TB, cfg Config, seed uint64) *sim {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	start := int64(rng.IntN(1000))
	m := &sim{
		tb: tb, cfg: cfg.Defaults(), rng: rng, now: 1_700_000_000_000 + int64(rng.IntN(1e6)), start: start,
		tok: tokens(seed), nextOff: start, store: map[string][]Record{},
		leases: map[int64]Lease{}, settled: map[int64]bool{}, count: map[int64]int32{}, notBefore: map[int64]int64{},
	}
	m.far = 2 + rng.IntN(10)
	m.s = New(cfg, start)
	return m
}

func (m *sim) fatalf(format string, args ...any) {
	m.tb.Helper()
	m.tb.Fatalf("at %d (%d events): %s", m.now, len(m.log), fmt.Sprintf(format, args...))
}

// step does one random operation and checks the state.
func (m *sim) step() {
	m.tb.Helper()
	m.do(m.rng.IntN(100))
}

// do does operation x (0 to 99: the operations' odds in step) and checks
// the state.
func (m *sim) do(x int) {
	m.tb.Helper()
	switch {
	case x < 15 && !m.noProduce:
		m.produce(1 + m.rng.IntN(8))
	case x < 15:
		m.advance()
	case x < 35:
		m.receive()
	case x < 60:
		for range 1 + m.rng.IntN(3) {
			m.settle()
		}
	case x < 72:
		m.advance()
	case x < 74:
		m.poll()
	case x < 75:
		m.skip()
	case x < 83:
		m.spill()
	case x < 91:
		m.load()
	case x < 97:
		m.deadLetters()
	default:
		m.snapshot()
	}
	m.offer()
	m.check()
}

func (m *sim) produce(n int) {
	for range n {
		if m.rng.IntN(10) == 0 {
			m.nextOff += int64(1 + m.rng.IntN(3)) // records gone to retention
		}
		r := Record{Offset: m.nextOff, Timestamp: m.now, Priority: int8(m.rng.IntN(MaxPriority + 1))}
		m.nextOff++
		if m.rng.IntN(10) == 0 {
			r.Timestamp += int64(m.rng.IntN(600_000)) // a producer's clock ahead of the broker's
		}
		switch x := m.rng.IntN(20); {
		case x < 3: // a short delay
			r.DeliverAt = m.now + 1 + int64(m.rng.IntN(30_000))
		case x < 3+m.far: // a far one: spilled
			r.DeliverAt = m.now + 3*ms(m.cfg.Horizon) + int64(m.rng.IntN(2*86_400_000))
		case x < 4+m.far: // a deliver-at that is not after the record's time
			r.DeliverAt = r.Timestamp - int64(m.rng.IntN(1000))
		}
		if m.rng.IntN(2) == 0 {
			r.HasKey, r.KeyHash = true, uint64(1+m.rng.IntN(4))
		}
		m.recs = append(m.recs, r)
	}
}

// offer offers the records produced while the state takes them.
func (m *sim) offer() {
	for m.offerIdx < len(m.recs) && m.s.CanOffer() {
		if err := m.s.Offer(m.recs[m.offerIdx], m.now); err != nil {
			m.fatalf("offer: %v", err)
		}
		m.offerIdx++
	}
}

func (m *sim) record(off int64) Record {
	i, ok := slices.BinarySearchFunc(m.recs, off, func(r Record, off int64) int { return int(r.Offset - off) })
	if !ok {
		m.fatalf("no record at offset %d", off)
	}
	return m.recs[i]
}

// logEvent logs ev as the broker does and checks that the logged form
// decodes to the event the state applied.
func (m *sim) logEvent(ev Event) {
	m.tb.Helper()
	data := EncodeEvent(ev)
	back, err := DecodeEvent(data)
	if err != nil {
		m.fatalf("logged event %s does not decode: %v", short(ev), err)
	}
	if !reflect.DeepEqual(back, ev) {
		m.fatalf("logged event %s decodes to %s: a rebuild would apply another event", short(ev), short(back))
	}
	m.log = append(m.log, data)
}

// short prints an event with its reason cut short.
func short(ev Event) string {
	r := ev.Reason
	if len(r) > 40 {
		r = fmt.Sprintf("%.40q... (%d bytes)", r, len(r))
	}
	ev.Reason = ""
	return fmt.Sprintf("%+v reason %q", ev, r)
}

func (m *sim) apply(ev Event) {
	m.tb.Helper()
	m.logEvent(ev)
	if err := m.s.Apply(ev); err != nil {
		m.fatalf("apply %+v: %v", ev, err)
	}
}

func (m *sim) receive() {
	m.tb.Helper()
	max := 1 + m.rng.IntN(5)
	var vis time.Duration
	if m.rng.IntN(2) == 0 {
		vis = time.Duration(1+m.rng.IntN(60)) * time.Second
	}
	evs := m.s.Receive(m.now, max, vis, m.tok)
	if len(evs) > max {
		m.fatalf("receive of %d handed out %d", max, len(evs))
	}
	for _, ev := range evs {
		e, _ := m.s.Entry(ev.Offset)
		if vis == 0 {
			vis = m.cfg.Visibility
		}
		if ev.Kind != KindLease || ev.Time != m.now || ev.Until != m.now+ms(vis) || e.Status != Leased || e.Token != ev.Token {
			m.fatalf("lease %+v, entry %+v", ev, e)
		}
		m.checkLease(ev.Offset, e.Count)
		m.logEvent(ev)
		if old, ok := m.leases[ev.Offset]; ok {
			m.stale = append(m.stale, old)
		}
		m.leases[ev.Offset] = Lease{Offset: ev.Offset, Count: e.Count, Token: ev.Token, Until: ev.Until}
		m.count[ev.Offset] = e.Count
	}
}

// checkLease checks, from what receivers saw alone, that handing out off
// now (delivery count) breaks no promise.
func (m *sim) checkLease(off int64, count int32) {
	m.tb.Helper()
	r := m.record(off)
	switch {
	case m.settled[off]:
		m.fatalf("offset %d handed out after it was settled", off)
	case r.DeliverAt > m.now:
		m.fatalf("offset %d handed out before its deliver-at %d", off, r.DeliverAt)
	case m.now < m.notBefore[off]:
		m.fatalf("offset %d handed out before %d (its nack's end, or never after a reject)", off, m.notBefore[off])
	case count != m.count[off]+1:
		m.fatalf("offset %d handed out with delivery count %d, want %d", off, count, m.count[off]+1)
	}
	if l, ok := m.leases[off]; ok { // the previous delivery's lease must have run out
		switch {
		case l.Until > m.now:
			m.fatalf("offset %d handed out while leased until %d", off, l.Until)
		case l.Count >= m.cfg.MaxDeliveries:
			m.fatalf("offset %d handed out again after its lease %d of %d ran out", off, l.Count, m.cfg.MaxDeliveries)
		case m.now < l.Until+ms(m.cfg.Backoff(off, l.Count)):
			m.fatalf("offset %d handed out at %d, before the backoff after its lease ran out at %d", off, m.now, l.Until)
		}
	}
	if m.s.keyed(&Entry{Record: r}) {
		for _, o := range m.recs {
			if o.Offset >= off {
				break
			}
			if o.KeyHash == r.KeyHash && m.s.keyed(&Entry{Record: o}) && !m.settled[o.Offset] {
				m.fatalf("offset %d (key %d) handed out before offset %d of its key was settled", off, r.KeyHash, o.Offset)
			}
		}
	}
}

// reason returns a nack or reject reason: empty, short, long, or not
// UTF-8.
func (m *sim) reason() string {
	switch m.rng.IntN(8) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("é", MaxReasonBytes) // longer than the bound, cut inside a rune
	case 2:
		return "bad \xff\xfe utf-8"
	}
	return fmt.Sprintf("reason %d", m.rng.IntN(100))
}

func (m *sim) settle() {
	m.tb.Helper()
	if len(m.leases) == 0 && len(m.stale) == 0 {
		return
	}
	var l Lease
	bad := false
	switch offs := sortedOffsets(m.leases); {
	case len(m.stale) > 0 && (len(offs) == 0 || m.rng.IntN(8) == 0):
		l, bad = m.stale[m.rng.IntN(len(m.stale))], true
	default:
		l = m.leases[offs[m.rng.IntN(len(offs))]]
		if m.rng.IntN(10) == 0 {
			l.Token ^= 1 << m.rng.IntN(64)
			bad = true
		}
	}
	kind := SettleKind(1 + m.rng.IntN(5))
	var delay time.Duration
	switch {
	case kind == Nack && m.rng.IntN(2) == 0:
		delay = time.Duration(1+m.rng.IntN(600_000)) * time.Millisecond
	case kind == Extend:
		delay = time.Duration(1+m.rng.IntN(600)) * time.Second
	}
	reason := m.reason()
	expired := l.Until <= m.now || m.settled[l.Offset]
	var before []byte
	compare := (bad || expired) && m.rng.IntN(3) == 0 // a snapshot is the whole state: not every time
	if compare {
		m.s.Receive(m.now, 0, 0, nil) // what time alone decides, first
		before = m.s.Snapshot()
	}
	ev, err := m.s.Settle(kind, l.Offset, l.Count, l.Token, m.now, delay, reason)
	if bad || expired {
		var re *ReceiptError
		if !errors.Is(err, ErrReceipt) || !errors.As(err, &re) || re.Offset != l.Offset {
			m.fatalf("%v of a stale or forged receipt %+v (lease until %d): %v, want a receipt error", kind, l, l.Until, err)
		}
		if after := m.s.Snapshot(); compare && string(after) != string(before) {
			m.fatalf("%v of a stale receipt %+v changed the state", kind, l)
		}
		return
	}
	if err != nil {
		m.fatalf("%v of %+v: %v", kind, l, err)
	}
	if ev.Offset != l.Offset || ev.Time != m.now || ev.Kind != settleEvent[kind] {
		m.fatalf("%v of %+v gave event %+v", kind, l, ev)
	}
	m.logEvent(ev)
	e, _ := m.s.Entry(l.Offset)
	switch kind {
	case Ack:
		if _, ok := m.s.Entry(l.Offset); ok {
			m.fatalf("acked offset %d still held", l.Offset)
		}
		m.settled[l.Offset] = true
	case Nack:
		want := m.now + ms(m.cfg.Backoff(l.Offset, l.Count))
		if delay > 0 {
			want = m.now + ms(delay)
		}
		if ev.Until != want {
			m.fatalf("nack of %+v (delay %v) until %d, want %d", l, delay, ev.Until, want)
		}
		m.notBefore[l.Offset] = want
		if l.Count >= m.cfg.MaxDeliveries {
			if e.Status != DeadLetterPending {
				m.fatalf("nack of the last delivery %+v left it %v", l, e.Status)
			}
			m.notBefore[l.Offset] = math.MaxInt64
		}
	case Release:
		m.notBefore[l.Offset] = 0
		m.count[l.Offset]--
	case Reject:
		if e.Status != DeadLetterPending {
			m.fatalf("rejected %+v is %v", l, e.Status)
		}
		m.notBefore[l.Offset] = math.MaxInt64
	case Extend:
		if ev.Until != m.now+ms(delay) || e.Until != ev.Until {
			m.fatalf("extend of %+v by %v: until %d, entry %+v", l, delay, ev.Until, e)
		}
		l.Until = ev.Until
		m.leases[l.Offset] = l
		return
	}
	if (kind == Nack || kind == Reject) && e.Reason != ev.Reason {
		m.fatalf("%v kept reason %q, logged %q", kind, e.Reason, ev.Reason)
	}
	m.stale = append(m.stale, l)
	delete(m.leases, l.Offset)
}

func (m *sim) advance() {
	switch x := m.rng.IntN(20); {
	case x < 10:
		m.now += int64(1 + m.rng.IntN(2000))
	case x < 18:
		m.now += int64(1 + m.rng.IntN(120_000))
	default:
		m.now += int64(1 + m.rng.IntN(2*86_400_000))
	}
}

// poll lets time act: a receive that wants nothing, or Advance.
func (m *sim) poll() {
	if m.rng.IntN(2) == 0 {
		m.s.Advance(m.now)
		return
	}
	if evs := m.s.Receive(m.now, 0, 0, m.tok); len(evs) > 0 {
		m.fatalf("a receive of 0 handed out %d", len(evs))
	}
}

// skip drops records not produced yet to retention (none that was: a
// record is offered before retention could drop it, here).
func (m *sim) skip() {
	if m.offerIdx < len(m.recs) {
		return
	}
	m.nextOff += int64(1 + m.rng.IntN(5))
	m.s.SkipTo(m.nextOff)
}

func (m *sim) spill() {
	m.tb.Helper()
	run, recs := m.s.SpillPlan(m.now)
	if run == nil {
		return
	}
	if run.Count != len(recs) || run.Cursor != m.s.Cursor() || run.Loaded != 0 || len(recs) == 0 {
		m.fatalf("spill plan %+v of %d records", *run, len(recs))
	}
	for i, r := range recs {
		e, ok := m.s.Entry(r.Offset)
		plain := r
		plain.Failed = nil
		delayed := ok && e.Status == Delayed && e.Count == 0 && r.Failed == nil && r.DeliverAt > m.now+2*ms(m.cfg.Horizon)
		backoff := ok && e.Status == Backoff && r.Failed != nil && *r.Failed == Failed{Count: e.Count, First: e.First, Last: e.Last, Until: e.Until, Reason: e.Reason} && e.Until > m.now+2*ms(m.cfg.Horizon)
		if !ok || e.Record != plain || !delayed && !backoff {
			m.fatalf("spill plan holds %+v, entry %+v", r, e)
		}
		if i > 0 && !before(recs[i-1], r) {
			m.fatalf("spill plan out of order at %d", i)
		}
		if r.Offset < run.MinOffset || r.Due() < run.SplitAt {
			m.fatalf("spill plan %+v holds %+v", *run, r)
		}
	}
	back, err := DecodeRun(EncodeRun(recs))
	if err != nil || !reflect.DeepEqual(back, recs) {
		m.fatalf("run does not decode to its records: %v", err)
	}
	run.Key = fmt.Sprintf("run-%d", m.nextRun)
	m.nextRun++
	m.store[run.Key] = back
	m.apply(Event{Kind: KindSpill, Time: m.now, Run: run})
	for _, r := range recs {
		if _, ok := m.s.Entry(r.Offset); ok {
			m.fatalf("spilled offset %d still in memory", r.Offset)
		}
	}
}

func (m *sim) load() {
	m.tb.Helper()
	for range 1 + m.rng.IntN(4) {
		run, n := m.s.LoadPlan(m.now)
		if run == nil {
			return
		}
		all := m.store[run.Key]
		if n <= 0 || run.Loaded+n > len(all) || all[run.Loaded].Due() != run.NextDue || run.NextDue > m.now+ms(m.cfg.Horizon) {
			m.fatalf("load plan %+v, %d of %d", *run, n, len(all))
		}
		if n > max(m.cfg.MemTimers/4, 1) {
			m.fatalf("load plan of %d records, more than MemTimers/4", n)
		}
		var next int64
		if run.Loaded+n < len(all) {
			next = all[run.Loaded+n].Due()
		}
		ev := LoadEvent(run, n, next, m.now)
		if ev.Run.Loaded != run.Loaded+n || ev.Run.NextDue != next || ev.Time != m.now {
			m.fatalf("load of %d of %+v: event %+v", n, *run, *ev.Run)
		}
		m.logEvent(ev)
		done, err := m.s.ApplyLoad(ev, all[run.Loaded:run.Loaded+n])
		if err != nil {
			m.fatalf("load of %+v: %v", *run, err)
		}
		if (done != "") != (run.Loaded+n == len(all)) || done != "" && done != run.Key {
			m.fatalf("load of %d of %+v said done %q", n, *run, done)
		}
	}
}

// deadLetters moves records to the dead-letter topic as the broker does:
// a producer id first, then sequences, then the stored ones.
func (m *sim) deadLetters() {
	m.tb.Helper()
	assigned, unassigned := m.s.DeadLetters(1 + m.rng.IntN(3))
	for i, e := range append(slices.Clone(assigned), unassigned...) {
		if e.Status != DeadLetterPending || m.settled[e.Offset] || m.notBefore[e.Offset] != math.MaxInt64 {
			m.fatalf("dead letter %+v (not before %d)", e, m.notBefore[e.Offset])
		}
		if (i < len(assigned)) != (e.DLQSeq >= 0) || i > 0 && i < len(assigned) && assigned[i-1].DLQSeq >= e.DLQSeq {
			m.fatalf("dead letters out of order: %+v, %+v", assigned, unassigned)
		}
	}
	if p, _ := m.s.Producer(); p == 0 && len(unassigned) > 0 || p != 0 && m.rng.IntN(10) == 0 {
		// The first producer, or a new one (the old one fenced): what the
		// old one was given is assigned anew.
		m.apply(Event{Kind: KindProducer, Time: m.now, Producer: int64(1 + m.rng.IntN(1000))})
		assigned, unassigned = m.s.DeadLetters(1 + m.rng.IntN(3))
		if len(assigned) > 0 {
			m.fatalf("a new producer left %v assigned", moves(assigned))
		}
	}
	for _, e := range unassigned {
		_, seq := m.s.Producer()
		m.apply(Event{Kind: KindDeadLetterAssign, Time: m.now, Offset: e.Offset, Seq: seq})
		if got, _ := m.s.Entry(e.Offset); got.DLQSeq != seq {
			m.fatalf("offset %d assigned sequence %d has %d", e.Offset, seq, got.DLQSeq)
		}
		assigned = append(assigned, e)
	}
	for _, e := range assigned {
		if m.rng.IntN(3) == 0 {
			return // the store failed: the rest waits
		}
		m.apply(Event{Kind: KindDeadLettered, Time: m.now, Offset: e.Offset})
		m.settled[e.Offset] = true
		delete(m.leases, e.Offset)
	}
}

func (m *sim) snapshot() {
	m.tb.Helper()
	data := m.s.Snapshot()
	r, err := Restore(m.cfg, data)
	if err != nil {
		m.fatalf("restore of a snapshot: %v", err)
	}
	if again := r.Snapshot(); string(again) != string(data) {
		m.fatalf("a restored snapshot snapshots differently:\n%s\n%s", data, again)
	}
	m.snaps = append(m.snaps, simSnap{data: data, pos: len(m.log)})
}

// check checks the live state against what receivers saw and its own
// bookkeeping.
func (m *sim) check() {
	m.tb.Helper()
	s := m.s
	if d := checkInternal(s); d != "" {
		m.fatalf("%s", d)
	}
	spilled := m.spilled(s)
	c := s.Counts()
	if c.Acked+c.DeadLettered != int64(len(m.settled)) {
		m.fatalf("counts %+v, %d settled", c, len(m.settled))
	}
	if sum := c.Available + c.Leased + c.Backoff + c.Delayed + c.KeyBlocked + c.DeadLetterPending; sum != int64(len(s.entries)+len(spilled)) {
		m.fatalf("counts %+v add up to %d; %d entries and %d spilled", c, sum, len(s.entries), len(spilled))
	}
	// Every record offered is settled, held or spilled: exactly one.
	floor := s.Cursor()
	for _, r := range m.recs[:m.offerIdx] {
		_, held := s.entries[r.Offset]
		n := 0
		for _, b := range []bool{m.settled[r.Offset], held, spilled[r.Offset]} {
			if b {
				n++
			}
		}
		if n != 1 {
			m.fatalf("offset %d: settled %v, held %v, spilled %v", r.Offset, m.settled[r.Offset], held, spilled[r.Offset])
		}
		if !m.settled[r.Offset] {
			floor = min(floor, r.Offset)
		}
	}
	if f := s.Floor(); f > floor {
		m.fatalf("floor %d above the unsettled offset %d", f, floor)
	}
	// Leases as receivers hold them.
	for off, l := range m.leases {
		e, ok := s.entries[off]
		live := l.Until > s.now
		if live != (ok && e.Status == Leased && e.Token == l.Token) || live && (e.Count != l.Count || e.Until != l.Until) {
			m.fatalf("lease %+v (now %d), entry %v", l, s.now, describe(e))
		}
	}
	for off, e := range s.entries {
		if e.Status == Leased {
			if l, ok := m.leases[off]; !ok || l.Token != e.Token {
				m.fatalf("entry %+v leased, receivers hold %+v", *e, l)
			}
		}
		if e.Status == DeadLetterPending && m.notBefore[off] != math.MaxInt64 {
			l := m.leases[off]
			if l.Count < m.cfg.MaxDeliveries || l.Until > s.now {
				m.fatalf("entry %+v waits for the dead-letter topic, not rejected nor out of deliveries (%+v)", *e, l)
			}
			m.notBefore[off] = math.MaxInt64
		}
	}
}

// spilled returns the offsets in s's runs not read back yet.
func (m *sim) spilled(s *State) map[int64]bool {
	out := map[int64]bool{}
	for _, r := range s.runs {
		recs, ok := m.store[r.Key]
		if !ok || len(recs) != r.Count {
			m.fatalf("run %+v not stored (%d records)", *r, len(recs))
		}
		for _, rec := range recs[r.Loaded:] {
			if out[rec.Offset] {
				m.fatalf("offset %d in two runs", rec.Offset)
			}
			out[rec.Offset] = true
		}
	}
	return out
}

// How a rebuild offers the records again.
const (
	offerLazily    = iota // before the event that needs them, at its time
	offerLazilyAt0        // the same at time 0 (the clock left to the events)
	offerFirst            // all of them first, at time 0
	offerModes
)

// rebuild rebuilds the state from snapshot i (-1: from nothing) and the
// events logged after it, offering the records again as mode says, then
// offers what the live state holds beyond and brings the clock to the
// live one's.
func (m *sim) rebuild(i, mode int) *State {
	m.tb.Helper()
	var r *State
	pos := 0
	if i < 0 {
		r = New(m.cfg, m.start)
	} else {
		var err error
		if r, err = Restore(m.cfg, m.snaps[i].data); err != nil {
			m.fatalf("restore: %v", err)
		}
		pos = m.snaps[i].pos
	}
	idx, _ := slices.BinarySearchFunc(m.recs, r.Cursor(), func(rec Record, off int64) int { return int(rec.Offset - off) })
	offerTo := func(last, now int64) {
		if mode != offerLazily {
			now = 0
		}
		for idx < len(m.recs) && m.recs[idx].Offset <= last {
			if err := r.Offer(m.recs[idx], now); err != nil {
				m.fatalf("rebuild: %v", err)
			}
			idx++
		}
	}
	if mode == offerFirst {
		offerTo(m.s.Cursor()-1, 0)
	}
	for _, data := range m.log[pos:] {
		ev, err := DecodeEvent(data)
		if err != nil {
			m.fatalf("rebuild: %v", err)
		}
		switch ev.Kind {
		case KindSpill:
			offerTo(ev.Run.Cursor-1, ev.Time)
		case KindLoadRun, KindProducer:
		default:
			offerTo(ev.Offset, ev.Time)
		}
		if ev.Kind != KindLoadRun {
			if err := r.Apply(ev); err != nil {
				m.fatalf("rebuild: apply %+v: %v", ev, err)
			}
			continue
		}
		var recs []Record
		if j := r.findRun(ev.Run.Key); j >= 0 {
			recs = m.store[ev.Run.Key][r.runs[j].Loaded:ev.Run.Loaded]
		}
		if _, err := r.ApplyLoad(ev, recs); err != nil {
			m.fatalf("rebuild: load %+v: %v", ev, err)
		}
	}
	offerTo(m.s.Cursor()-1, m.s.now)
	r.SkipTo(m.s.Cursor()) // the broker sees the log start
	r.Advance(m.s.now)
	return r
}
