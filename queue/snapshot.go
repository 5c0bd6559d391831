package queue

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"sort"
)

// snapshot is a state's stored form.
type snapshot struct {
	V        int         `json:"v"`
	Cursor   int64       `json:"cursor"`
	Now      int64       `json:"now"`
	Acked    int64       `json:"acked"`
	Dead     int64       `json:"dead"`
	Gone     int64       `json:"gone,omitempty"`
	Producer int64       `json:"producer,omitempty"`
	NextSeq  int32       `json:"next_seq,omitempty"`
	Entries  []snapEntry `json:"entries"`
	Runs     []Run       `json:"runs,omitempty"`
}

type snapEntry struct {
	Offset    int64  `json:"o"`
	Timestamp int64  `json:"ts"`
	Priority  int8   `json:"pr,omitempty"`
	DeliverAt int64  `json:"da,omitempty"`
	KeyHash   uint64 `json:"kh,omitempty"`
	HasKey    bool   `json:"hk,omitempty"`
	Status    Status `json:"st"`
	Count     int32  `json:"n,omitempty"`
	Token     uint64 `json:"t,omitempty"`
	Until     int64  `json:"u,omitempty"`
	Since     int64  `json:"si,omitempty"`
	First     int64  `json:"f,omitempty"`
	Last      int64  `json:"l,omitempty"`
	Reason    string `json:"r,omitempty"`
	DLQSeq    int32  `json:"dq"`
}

// Snapshot is the state's stored form (restored by Restore).
func (s *State) Snapshot() []byte {
	sn := snapshot{V: 1, Cursor: s.cursor, Now: s.now, Acked: s.acked, Dead: s.dead, Gone: s.gone, Producer: s.producer, NextSeq: s.nextSeq, Runs: s.Runs(), Entries: make([]snapEntry, 0, len(s.entries))}
	for _, e := range s.entries {
		sn.Entries = append(sn.Entries, snapEntry{e.Offset, e.Timestamp, e.Priority, e.DeliverAt, e.KeyHash, e.HasKey, e.Status, e.Count, e.Token, e.Until, e.Since, e.First, e.Last, e.Reason, e.DLQSeq})
	}
	sort.Slice(sn.Entries, func(i, j int) bool { return sn.Entries[i].Offset < sn.Entries[j].Offset })
	data, _ := json.Marshal(&sn)
	return data
}

// Restore rebuilds a state from its snapshot, with settings cfg.
func Restore(cfg Config, data []byte) (*State, error) {
	var sn snapshot
	if err := json.Unmarshal(data, &sn); err != nil {
		return nil, fmt.Errorf("queue: undecodable snapshot: %w", err)
	}
	if sn.V != 1 || sn.Cursor < 0 || sn.Acked < 0 || sn.Dead < 0 || sn.Gone < 0 || sn.NextSeq < 0 {
		return nil, fmt.Errorf("queue: snapshot version %d or counters out of range", sn.V)
	}
	s := New(cfg, sn.Cursor)
	s.now, s.acked, s.dead, s.gone, s.producer, s.nextSeq = sn.Now, sn.Acked, sn.Dead, sn.Gone, sn.Producer, sn.NextSeq
	for i := range sn.Runs {
		r := sn.Runs[i]
		if err := r.check(); err != nil {
			return nil, err
		}
		s.runs = append(s.runs, &r)
	}
	// Key holders are settled before the waiting ones rejoin.
	var blocked []*Entry
	for _, x := range sn.Entries {
		if x.Offset < 0 || x.Offset >= sn.Cursor || x.Priority < 0 || x.Priority > MaxPriority || x.Status < Available || x.Status > DeadLetterPending || x.Count < 0 || x.DLQSeq < -1 {
			return nil, fmt.Errorf("queue: snapshot entry out of range: %+v", x)
		}
		if _, dup := s.entries[x.Offset]; dup {
			return nil, fmt.Errorf("queue: snapshot holds offset %d twice", x.Offset)
		}
		e := &Entry{Record: Record{Offset: x.Offset, Timestamp: x.Timestamp, Priority: x.Priority, DeliverAt: x.DeliverAt, KeyHash: x.KeyHash, HasKey: x.HasKey}, Status: x.Status, Count: x.Count, Token: x.Token, Until: x.Until, Since: x.Since, First: x.First, Last: x.Last, Reason: x.Reason, DLQSeq: x.DLQSeq}
		s.entries[e.Offset] = e
		if e.Status == DeadLetterPending {
			s.dlqPending++
		}
		switch e.Status {
		case Delayed:
			s.delayed++
			heap.Push(&s.timers, timerItem{at: e.Until, off: e.Offset, gen: e.gen})
			continue
		case KeyBlocked:
			blocked = append(blocked, e)
		case Available:
			s.avail[e.Priority].push(listItem{off: e.Offset, gen: e.gen, since: e.Since})
		case Leased, Backoff:
			heap.Push(&s.timers, timerItem{at: e.Until, off: e.Offset, gen: e.gen})
		}
		s.held++
		if e.Status != KeyBlocked && s.keyed(e) {
			s.keys[e.KeyHash] = &keyQueue{has: true, holder: e.Offset}
		}
	}
	sort.Slice(blocked, func(i, j int) bool { return blocked[i].Offset < blocked[j].Offset })
	for _, e := range blocked {
		k := s.keys[e.KeyHash]
		if k == nil {
			k = &keyQueue{}
			s.keys[e.KeyHash] = k
		}
		if !k.has { // its holder settled: it is next
			e.Status = 0
			s.makeAvailable(e, s.now)
			continue
		}
		k.waiting = append(k.waiting, e.Offset)
	}
	return s, nil
}
