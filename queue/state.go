package queue

import (
	"container/heap"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Record is what the state keeps of a record of the partition.
type Record struct {
	Offset    int64
	Timestamp int64  // ms since the epoch
	Priority  int8   // 0 (lowest, the default) to 9
	DeliverAt int64  // ms since the epoch; 0: no delay (a record with one, even past, leaves its key's order)
	KeyHash   uint64 // hash of the key (ordered groups); records without a key have HasKey false
	HasKey    bool
	// Failed, in a run only: the delivery state of a record spilled while
	// in backoff (nil for one never delivered).
	Failed *Failed
}

// Failed is the delivery state a spilled record in backoff keeps.
type Failed struct {
	Count       int32
	First, Last int64
	Until       int64 // end of its backoff
	Reason      string
}

// Due is when a spilled record comes back: its deliver-at, or the end of
// its backoff.
func (r *Record) Due() int64 {
	if r.Failed != nil {
		return r.Failed.Until
	}
	return r.DeliverAt
}

// Status is where an unsettled record is.
type Status uint8

const (
	Available         Status = iota + 1 // may be handed out now
	Leased                              // handed out, until Until
	Backoff                             // failed; available again at Until
	Delayed                             // waits for its deliver-at time (Until)
	KeyBlocked                          // ordered group: waits for its key's previous record
	DeadLetterPending                   // to be stored in the dead-letter topic
)

func (s Status) String() string {
	switch s {
	case Available:
		return "available"
	case Leased:
		return "leased"
	case Backoff:
		return "backoff"
	case Delayed:
		return "delayed"
	case KeyBlocked:
		return "key-blocked"
	case DeadLetterPending:
		return "dead-letter-pending"
	}
	return fmt.Sprintf("status(%d)", s)
}

// Entry is an unsettled record held in memory.
type Entry struct {
	Record
	Status Status
	Count  int32  // deliveries so far
	Token  uint64 // the current lease's token (Leased)
	Until  int64  // lease end (Leased), end of backoff (Backoff), deliver-at (Delayed)
	Since  int64  // available since (Available): for aging
	First  int64  // first delivery time, ms (0: never delivered)
	Last   int64  // last delivery time, ms
	Reason string // the last nack's reason
	// DLQSeq is the dead-letter producer sequence assigned to the move
	// (DeadLetterPending), or -1 before one is assigned.
	DLQSeq int32
	gen    uint32 // bumped at every status change: invalidates list and heap items
}

// ErrReceipt is wrapped by every error about a receipt that cannot settle.
var ErrReceipt = errors.New("receipt cannot settle")

// ReceiptError says why a receipt settled nothing.
type ReceiptError struct {
	Offset int64
	Why    string
}

func (e *ReceiptError) Error() string {
	return fmt.Sprintf("receipt for offset %d settled nothing: %s", e.Offset, e.Why)
}

func (e *ReceiptError) Unwrap() error { return ErrReceipt }

// Counts are a state's sizes, for describing a share group.
type Counts struct {
	Available, Leased, Backoff, Delayed, KeyBlocked, DeadLetterPending int64
	Acked, DeadLettered                                                int64 // settled since the group was created
	Gone                                                               int64 // dropped by retention before they were settled
	OldestUnsettled                                                    int64 // timestamp (ms) of the oldest unsettled record not delayed; 0: none
}

// State is one share group's queue state on one partition. It is not safe
// for concurrent use: the broker serializes calls.
type State struct {
	cfg     Config
	cursor  int64 // every record below was offered (or is gone)
	now     int64 // latest time seen, ms: time never moves back
	entries map[int64]*Entry
	timers  timerHeap
	avail   [MaxPriority + 1]availList
	keys    map[uint64]*keyQueue // OrderedByKey only
	runs    []*Run               // spilled, not fully loaded, in creation order
	held    int                  // entries that are not Delayed (bounded by Window)
	delayed int                  // Delayed entries in memory
	acked   int64
	dead    int64
	gone    int64  // records retention dropped before they were settled
	version uint64 // counts status changes (Version)
	// dlqPending counts the DeadLetterPending entries (kept by setStatus
	// and settled), so the broker's frequent DeadLetters is free when none.
	dlqPending int
	// producer is the dead-letter producer id (0: none yet); nextSeq its
	// next sequence.
	producer int64
	nextSeq  int32
}

type keyQueue struct {
	has     bool    // a record of the key is in flight: holder
	holder  int64   // its offset
	waiting []int64 // offsets of KeyBlocked records, in order
}

// New returns an empty state whose first record is at offset start.
func New(cfg Config, start int64) *State {
	return &State{cfg: cfg.Defaults(), cursor: start, entries: map[int64]*Entry{}, keys: map[uint64]*keyQueue{}}
}

// Config returns the state's settings (defaults applied).
func (s *State) Config() Config { return s.cfg }

// SetConfig changes the settings (a group altered); what is in flight keeps
// its lease.
// An ordered group made unordered lets every record waiting for its key
// go.
func (s *State) SetConfig(cfg Config) {
	was := s.cfg.OrderedByKey
	s.cfg = cfg.Defaults()
	if was && !s.cfg.OrderedByKey {
		var blocked []*Entry
		for _, e := range s.entries {
			if e.Status == KeyBlocked {
				blocked = append(blocked, e)
			}
		}
		sort.Slice(blocked, func(i, j int) bool { return blocked[i].Offset < blocked[j].Offset })
		clear(s.keys)
		for _, e := range blocked {
			s.makeAvailable(e, s.now)
		}
	}
}

// Cursor is the next offset to offer.
func (s *State) Cursor() int64 { return s.cursor }

// Producer returns the dead-letter producer id (0: none yet) and its next
// sequence.
func (s *State) Producer() (int64, int32) { return s.producer, s.nextSeq }

// Entry returns the unsettled entry at offset, if held in memory.
func (s *State) Entry(offset int64) (Entry, bool) {
	e, ok := s.entries[offset]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Floor is the lowest offset that may be unsettled: every record below it
// is acked or dead-lettered (retention by consumption drops below it).
func (s *State) Floor() int64 {
	f := s.cursor
	for off := range s.entries {
		f = min(f, off)
	}
	for _, r := range s.runs {
		f = min(f, r.MinOffset)
	}
	return f
}

// SkipTo moves the cursor to off when the records before it are gone
// (retention dropped them before the group settled them).
func (s *State) SkipTo(off int64) {
	if off > s.cursor {
		s.cursor = off
	}
}

// Version changes whenever a record changes status: a broker wakes its
// waiting receivers only when it moved.
func (s *State) Version() uint64 { return s.version }

// CanOffer reports whether the state takes another record now (the
// window of records held is not full).
func (s *State) CanOffer() bool { return s.held < s.cfg.Window }

// Offer adds the next record of the partition. Offsets must grow; a gap
// (records gone to retention) is skipped.
func (s *State) Offer(r Record, now int64) error {
	if r.Offset < s.cursor {
		return fmt.Errorf("queue: record %d offered again (cursor %d)", r.Offset, s.cursor)
	}
	s.advance(now)
	r.Priority = min(max(r.Priority, 0), MaxPriority)
	s.cursor = r.Offset + 1
	e := &Entry{Record: r, DLQSeq: -1}
	s.entries[r.Offset] = e
	if r.DeliverAt > s.now {
		s.setDelayed(e, r.DeliverAt)
		return nil
	}
	s.held++
	s.makeAvailable(e, s.now)
	return nil
}

// Advance moves the clock to now (never back) and applies what time
// decides; Receive, Settle and Apply do it first themselves.
func (s *State) Advance(now int64) { s.advance(now) }

// advance moves the clock to now (never back) and applies what time
// decides: leases that ran out, backoffs and delays that ended.
func (s *State) advance(now int64) {
	if now > s.now {
		s.now = now
	}
	if len(s.timers) > 2*len(s.entries)+1024 {
		s.compactTimers() // stale timers of settled records: bounded memory
	}
	for len(s.timers) > 0 && s.timers[0].at <= s.now {
		it := heap.Pop(&s.timers).(timerItem)
		e := s.entries[it.off]
		if e == nil || e.gen != it.gen {
			continue
		}
		// A record whose backoff or delay ended is available since then,
		// not since the call that noticed: a rebuilt state, which notices
		// at other times (the event times), must age and order it alike.
		switch e.Status {
		case Leased: // ran out: a nack without reason
			s.failed(e, e.Until+s.cfg.Backoff(e.Offset, e.Count).Milliseconds())
		case Backoff:
			s.makeAvailable(e, it.at)
		case Delayed:
			s.delayed--
			s.held++
			s.makeAvailable(e, it.at)
		}
	}
}

// failed handles a failed delivery (nack or lease end): back after
// backoff (available at `at`), or to the dead-letter topic once the
// delivery count reached MaxDeliveries.
func (s *State) failed(e *Entry, at int64) {
	if e.Count >= s.cfg.MaxDeliveries {
		s.setStatus(e, DeadLetterPending)
		return
	}
	s.setStatus(e, Backoff)
	e.Until = at
	heap.Push(&s.timers, timerItem{at: at, off: e.Offset, gen: e.gen})
	if at <= s.now {
		s.advance(s.now)
	}
}

func (s *State) setStatus(e *Entry, st Status) {
	switch {
	case e.Status == DeadLetterPending && st != DeadLetterPending:
		s.dlqPending--
	case e.Status != DeadLetterPending && st == DeadLetterPending:
		s.dlqPending++
	}
	e.Status = st
	e.gen++
	s.version++
}

func (s *State) setDelayed(e *Entry, at int64) {
	s.setStatus(e, Delayed)
	e.Until = at
	s.delayed++
	heap.Push(&s.timers, timerItem{at: at, off: e.Offset, gen: e.gen})
}

// makeAvailable makes e available since the time since (at most now),
// or key-blocked behind its key's record in flight (ordered groups).
func (s *State) makeAvailable(e *Entry, since int64) {
	if s.keyed(e) {
		k := s.keys[e.KeyHash]
		if k == nil {
			k = &keyQueue{}
			s.keys[e.KeyHash] = k
		}
		if k.has && k.holder != e.Offset {
			if e.Status != KeyBlocked {
				k.waiting = append(k.waiting, e.Offset)
			}
			s.setStatus(e, KeyBlocked)
			return
		}
		k.has, k.holder = true, e.Offset
	}
	s.setStatus(e, Available)
	e.Since = since
	s.avail[e.Priority].push(listItem{off: e.Offset, gen: e.gen, since: e.Since})
}

// keyed reports whether e takes part in its key's order: in an ordered
// group, a record with a key and without a deliver-at time. That is
// decided by the record alone, so a rebuild agrees; and a keyed record is
// never Delayed. (A rule that kept a deliver-at not after the record's
// timestamp in the order let a record whose producer's clock ran ahead be
// keyed and Delayed at once: later records of its key were handed out
// before it, and the key's order then depended on when it was offered,
// so a rebuilt state ordered the key differently.)
func (s *State) keyed(e *Entry) bool {
	return s.cfg.OrderedByKey && e.HasKey && e.DeliverAt == 0
}

// Lease is one record handed out.
type Lease struct {
	Offset int64
	Count  int32 // its delivery count, this delivery included
	Token  uint64
	Until  int64 // ms
}

// Receive hands out up to max available records, highest effective
// priority first, leased for visibility (0: the group's), and returns the
// events to log (already applied). token makes each lease's random token.
func (s *State) Receive(now int64, max int, visibility time.Duration, token func() uint64) []Event {
	s.advance(now)
	if visibility <= 0 {
		visibility = s.cfg.Visibility
	}
	var evs []Event
	for len(evs) < max {
		e := s.pick()
		if e == nil {
			break
		}
		ev := Event{Kind: KindLease, Offset: e.Offset, Token: token(), Until: s.now + visibility.Milliseconds(), Time: s.now}
		s.lease(e, ev)
		evs = append(evs, ev)
	}
	return evs
}

// pick takes the available record with the highest effective priority
// (priority + waiting/PriorityAging), ties to the longest waiting, then
// the lowest offset; nil when none is available.
func (s *State) pick() *Entry {
	aging := max(s.cfg.PriorityAging.Milliseconds(), 1) // Check refuses less than 1ms; SetConfig does not check
	best, bestEff := -1, int64(-1)
	var bestItem listItem
	for p := MaxPriority; p >= 0; p-- {
		it, ok := s.avail[p].head(func(it listItem) bool {
			e := s.entries[it.off]
			return e != nil && e.gen == it.gen && e.Status == Available
		})
		if !ok {
			continue
		}
		eff := int64(p) + (s.now-it.since)/aging
		if eff > bestEff || eff == bestEff && (it.since < bestItem.since || it.since == bestItem.since && it.off < bestItem.off) {
			best, bestEff, bestItem = p, eff, it
		}
	}
	if best < 0 {
		return nil
	}
	s.avail[best].pop()
	return s.entries[bestItem.off]
}

func (s *State) lease(e *Entry, ev Event) {
	s.setStatus(e, Leased)
	e.Count++
	e.Token, e.Until = ev.Token, ev.Until
	if e.First == 0 {
		e.First = ev.Time
	}
	e.Last = ev.Time
	heap.Push(&s.timers, timerItem{at: e.Until, off: e.Offset, gen: e.gen})
}

// SettleKind is how a receipt settles.
type SettleKind uint8

const (
	Ack     SettleKind = iota + 1 // done
	Nack                          // failed: back after backoff or the given delay
	Release                       // back now, no penalty
	Reject                        // to the dead-letter topic now
	Extend                        // the lease runs on
)

func (k SettleKind) String() string {
	switch k {
	case Ack:
		return "ack"
	case Nack:
		return "nack"
	case Release:
		return "release"
	case Reject:
		return "reject"
	case Extend:
		return "extend"
	}
	return fmt.Sprintf("settle(%d)", k)
}

// Settle settles the lease of receipt (offset, count, token) at now and
// returns the event to log (already applied). delay is a Nack's explicit
// delay (0: backoff) or how far an Extend moves the lease end from now.
func (s *State) Settle(kind SettleKind, offset int64, count int32, token uint64, now int64, delay time.Duration, reason string) (Event, error) {
	s.advance(now)
	if err := s.check(offset, count, token); err != nil {
		return Event{}, err
	}
	if delay < 0 || delay > MaxDelay {
		return Event{}, fmt.Errorf("delay %v is out of range: use 0 to %v", delay, MaxDelay)
	}
	ev := Event{Offset: offset, Time: s.now, Reason: cutReason(reason)}
	e := s.entries[offset]
	switch kind {
	case Ack:
		ev.Kind = KindAck
	case Nack:
		ev.Kind = KindNack
		ev.Until = s.now + s.cfg.Backoff(offset, e.Count).Milliseconds()
		if delay > 0 {
			ev.Until = s.now + delay.Milliseconds()
		}
	case Release:
		ev.Kind = KindRelease
	case Reject:
		ev.Kind = KindReject
	case Extend:
		if delay < MinVisibility || delay > MaxVisibility {
			return Event{}, fmt.Errorf("extension %v is out of range: use %v to %v from now", delay, MinVisibility, MaxVisibility)
		}
		ev.Kind = KindExtend
		ev.Until = s.now + delay.Milliseconds()
	default:
		return Event{}, fmt.Errorf("unknown settle kind %d", kind)
	}
	return ev, s.Apply(ev)
}

// check finds the lease a receipt names, or says why it is gone.
func (s *State) check(offset int64, count int32, token uint64) error {
	if offset >= s.cursor {
		return &ReceiptError{offset, "this group never handed out that offset (a forged or corrupted receipt)"}
	}
	e, ok := s.entries[offset]
	if !ok {
		return &ReceiptError{offset, "the record is already settled (acked or dead-lettered)"}
	}
	if e.Status != Leased || e.Count != count || e.Token != token {
		if count < e.Count || e.Status != Leased {
			return &ReceiptError{offset, fmt.Sprintf("the lease of delivery %d ended (it ran out or was settled); the record is %s now, at delivery %d", count, e.Status, e.Count)}
		}
		return &ReceiptError{offset, "the receipt does not match the record's current lease (a forged receipt)"}
	}
	return nil
}

// Apply applies a logged event: the live path applies what it logs, and a
// rebuild applies the events after a snapshot. Apply first moves the
// clock to the event's time. An event about a record the state does not
// hold (settled since, or never offered) changes nothing.
func (s *State) Apply(ev Event) error {
	s.advance(ev.Time)
	switch ev.Kind {
	case KindProducer:
		// A new dead-letter producer: sequences start again, and moves
		// assigned under the old one are assigned anew.
		s.producer, s.nextSeq = ev.Producer, 0
		for _, e := range s.entries {
			if e.Status == DeadLetterPending {
				e.DLQSeq = -1
			}
		}
		return nil
	case KindTick:
		return nil // the clock moved: advance did what time decides
	case KindSpill:
		if ev.Run == nil {
			return fmt.Errorf("queue: spill event without a run")
		}
		s.spill(ev.Run)
		return nil
	case KindLoadRun:
		return fmt.Errorf("queue: a run load is applied with ApplyLoad")
	}
	e := s.entries[ev.Offset]
	if e == nil {
		return nil
	}
	switch ev.Kind {
	case KindLease:
		s.unlist(e)
		s.lease(e, ev)
	case KindAck:
		s.settled(e)
		s.acked++
	case KindNack:
		e.Reason = cutReason(ev.Reason)
		s.failed(e, ev.Until)
	case KindRelease:
		e.Count = max(e.Count-1, 0)
		s.makeAvailable(e, s.now)
	case KindReject:
		e.Reason = cutReason(ev.Reason)
		s.setStatus(e, DeadLetterPending)
	case KindExtend:
		if e.Status == Leased {
			e.Until = ev.Until
			e.gen++
			heap.Push(&s.timers, timerItem{at: e.Until, off: e.Offset, gen: e.gen})
		}
	case KindDeadLetterAssign:
		// The sequence is used, whatever the record's state decides now
		// (a group altered since may not count it as a dead letter): it
		// is never handed out twice.
		s.nextSeq = max(s.nextSeq, ev.Seq+1)
		if e.Status == DeadLetterPending && e.DLQSeq < 0 {
			e.DLQSeq = ev.Seq
		}
	case KindGone:
		s.settled(e)
		s.gone++
	case KindDeadLettered:
		s.settled(e)
		s.dead++
	default:
		return fmt.Errorf("queue: unknown event kind %d", ev.Kind)
	}
	return nil
}

// unlist takes e out of whatever waits for time or a key (a lenient apply).
func (s *State) unlist(e *Entry) {
	switch e.Status {
	case Delayed:
		s.delayed--
		s.held++
	case KeyBlocked:
		if k := s.keys[e.KeyHash]; k != nil {
			k.waiting = removeOffset(k.waiting, e.Offset)
		}
	}
}

// settled forgets e (acked or dead-lettered) and frees its key.
func (s *State) settled(e *Entry) {
	s.unlist(e)
	if e.Status == DeadLetterPending {
		s.dlqPending--
	}
	delete(s.entries, e.Offset)
	s.held--
	e.gen++
	k := s.keys[e.KeyHash]
	if !s.keyed(e) || k == nil || !k.has || k.holder != e.Offset {
		return
	}
	k.has = false
	for len(k.waiting) > 0 && !k.has {
		next := s.entries[k.waiting[0]]
		k.waiting = k.waiting[1:]
		if next != nil && next.Status == KeyBlocked {
			s.makeAvailable(next, s.now)
		}
	}
	if !k.has && len(k.waiting) == 0 {
		delete(s.keys, e.KeyHash)
	}
}

// DeadLetters returns the records waiting for the dead-letter move, in
// offset order: first those with a sequence assigned (to be stored again,
// in sequence order), then up to max without one.
func (s *State) DeadLetters(max int) (assigned, unassigned []Entry) {
	if s.dlqPending == 0 {
		return nil, nil // the common case: no scan of the window
	}
	for _, e := range s.entries {
		if e.Status != DeadLetterPending {
			continue
		}
		if e.DLQSeq >= 0 {
			assigned = append(assigned, *e)
		} else {
			unassigned = append(unassigned, *e)
		}
	}
	sort.Slice(assigned, func(i, j int) bool { return assigned[i].DLQSeq < assigned[j].DLQSeq })
	sort.Slice(unassigned, func(i, j int) bool { return unassigned[i].Offset < unassigned[j].Offset })
	if len(unassigned) > max {
		unassigned = unassigned[:max]
	}
	return assigned, unassigned
}

// Counts returns the state's sizes.
func (s *State) Counts() Counts {
	c := Counts{Acked: s.acked, DeadLettered: s.dead, Gone: s.gone}
	for _, e := range s.entries {
		switch e.Status {
		case Available:
			c.Available++
		case Leased:
			c.Leased++
		case Backoff:
			c.Backoff++
		case Delayed:
			c.Delayed++
		case KeyBlocked:
			c.KeyBlocked++
		case DeadLetterPending:
			c.DeadLetterPending++
		}
		if e.Status != Delayed && (c.OldestUnsettled == 0 || e.Timestamp < c.OldestUnsettled) {
			c.OldestUnsettled = e.Timestamp
		}
	}
	for _, r := range s.runs {
		c.Delayed += int64(r.Count - r.Loaded)
	}
	return c
}

// NextWake is the earliest time (ms) at which time alone changes what is
// available, or 0 when nothing waits for time.
func (s *State) NextWake() int64 {
	for len(s.timers) > 0 {
		it := s.timers[0]
		if e := s.entries[it.off]; e != nil && e.gen == it.gen {
			return it.at
		}
		heap.Pop(&s.timers)
	}
	return 0
}

func removeOffset(offs []int64, off int64) []int64 {
	for i, o := range offs {
		if o == off {
			return append(offs[:i:i], offs[i+1:]...)
		}
	}
	return offs
}

// timerHeap orders leases, backoffs and delays by time.
type timerItem struct {
	at  int64
	off int64
	gen uint32
}

type timerHeap []timerItem

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].off < h[j].off
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerItem)) }
func (h *timerHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// availList is one priority level's available records, ordered by the
// time they became available, then by offset (the order pick hands them
// out in); stale items (gen changed) are dropped lazily. A heap, not a
// queue in the order records arrived: records that became available at
// the same time arrive in no particular offset order (a run's records
// read back, releases), and a restored state, which knows only Since,
// must hand them out as the live one would.
type listItem struct {
	off   int64
	gen   uint32
	since int64
}

type availList []listItem

func (l availList) Len() int { return len(l) }
func (l availList) Less(i, j int) bool {
	return l[i].since < l[j].since || l[i].since == l[j].since && l[i].off < l[j].off
}
func (l availList) Swap(i, j int) { l[i], l[j] = l[j], l[i] }
func (l *availList) Push(x any)   { *l = append(*l, x.(listItem)) }
func (l *availList) Pop() any {
	old := *l
	it := old[len(old)-1]
	*l = old[:len(old)-1]
	return it
}

func (l *availList) push(it listItem) { heap.Push(l, it) }

// head drops stale items and returns the first live one.
func (l *availList) head(live func(listItem) bool) (listItem, bool) {
	for len(*l) > 0 {
		if it := (*l)[0]; live(it) {
			return it, true
		}
		heap.Pop(l)
	}
	return listItem{}, false
}

func (l *availList) pop() { heap.Pop(l) }
