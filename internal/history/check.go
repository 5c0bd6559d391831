package history

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Position is where a record is in a topic.
type Position struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

func (p Position) String() string { return fmt.Sprintf("p%d@%d", p.Partition, p.Offset) }

func comparePositions(a, b Position) int {
	if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
		return c
	}
	return cmp.Compare(a.Offset, b.Offset)
}

// Lost is a value that was acked but never observed.
type Lost struct {
	Topic   string
	Value   string
	Process string   // the producer that got the ack
	Acked   Position // the first ack of the value
}

func (l Lost) String() string {
	return fmt.Sprintf("%s %q acked at %v (by %s), never read", l.Topic, l.Value, l.Acked, l.Process)
}

// Duplicate is a value observed at more than one position.
type Duplicate struct {
	Topic     string
	Value     string
	Positions []Position // sorted, at least two
}

func (d Duplicate) String() string {
	return fmt.Sprintf("%s %q read at %v", d.Topic, d.Value, d.Positions)
}

// Inconsistent is a position observed with different values.
type Inconsistent struct {
	Topic     string
	Partition int32
	Offset    int64
	Values    []string // distinct, in the order first observed; at least two
	Readers   []string // Readers[i] is the process that first read Values[i] there
}

func (c Inconsistent) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %v read as", c.Topic, Position{c.Partition, c.Offset})
	for i, v := range c.Values {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %q (by %s)", v, c.Readers[i])
	}
	return b.String()
}

// AckMismatch is a value acked at one position and observed, but not there.
type AckMismatch struct {
	Topic    string
	Value    string
	Process  string     // the producer that got the ack
	Acked    Position   // the acked position
	Observed []Position // sorted, where the value was read instead
}

func (m AckMismatch) String() string {
	return fmt.Sprintf("%s %q acked at %v (by %s), read at %v", m.Topic, m.Value, m.Acked, m.Process, m.Observed)
}

// Gap is a range of offsets [From, To) of a partition, below its high
// watermark, that no read observed.
type Gap struct {
	Topic     string
	Partition int32
	From, To  int64 // half-open: the offsets From..To-1 are missing
	HWM       int64 // the partition's high watermark
}

// Len is the number of missing offsets.
func (g Gap) Len() int64 { return g.To - g.From }

func (g Gap) String() string {
	return fmt.Sprintf("%s p%d offsets [%d,%d) never read (%d records, hwm %d)", g.Topic, g.Partition, g.From, g.To, g.Len(), g.HWM)
}

// Unexpected is a value observed that was never sent.
type Unexpected struct {
	Topic     string
	Value     string
	Reader    string     // the process that first read it
	Positions []Position // sorted
}

func (u Unexpected) String() string {
	return fmt.Sprintf("%s %q read at %v (first by %s), never sent", u.Topic, u.Value, u.Positions, u.Reader)
}

// FailedButPresent is a value recorded as definitely not written, yet
// observed.
type FailedButPresent struct {
	Topic     string
	Value     string
	Process   string     // the producer that recorded the failure
	Error     string     // the failure it recorded
	Positions []Position // sorted, where it was read
}

func (f FailedButPresent) String() string {
	return fmt.Sprintf("%s %q failed (by %s: %s), read at %v", f.Topic, f.Value, f.Process, f.Error, f.Positions)
}

// Report is the result of [Check]. The anomaly lists are sorted by topic,
// then by value (Lost, Duplicates, AckMismatches, Unexpected,
// FailedButPresent) or by partition and offset (Inconsistent, Gaps).
type Report struct {
	// Counts of events.
	Events, Sends, Acks, Fails, Unknowns, Reads, HWMs int
	// Records is how many records the reads returned, repeats included.
	Records int
	// Observed is how many distinct (topic, value) pairs were read.
	Observed int
	// UnknownPresent and UnknownAbsent count the distinct values with an
	// unknown event that were and were not observed (information only).
	UnknownPresent, UnknownAbsent int

	Lost             []Lost
	Duplicates       []Duplicate
	Inconsistent     []Inconsistent
	AckMismatches    []AckMismatch
	Gaps             []Gap
	Unexpected       []Unexpected
	FailedButPresent []FailedButPresent
}

// OK reports whether the history shows no anomaly.
func (r *Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Duplicates) == 0 && len(r.Inconsistent) == 0 &&
		len(r.AckMismatches) == 0 && len(r.Gaps) == 0 && len(r.Unexpected) == 0 &&
		len(r.FailedButPresent) == 0
}

// maxExamples is how many anomalies of each kind String shows.
const maxExamples = 10

// String summarizes the report: the verdict, the counts and the first few
// anomalies of each kind.
func (r *Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK() {
		verdict = "ANOMALIES"
	}
	fmt.Fprintf(&b, "history: %s: lost=%d duplicate=%d inconsistent=%d ack-mismatch=%d gap=%d unexpected=%d failed-but-present=%d\n",
		verdict, len(r.Lost), len(r.Duplicates), len(r.Inconsistent), len(r.AckMismatches),
		len(r.Gaps), len(r.Unexpected), len(r.FailedButPresent))
	fmt.Fprintf(&b, "events=%d sends=%d acks=%d fails=%d unknowns=%d (values present %d, absent %d) reads=%d records=%d observed=%d hwms=%d\n",
		r.Events, r.Sends, r.Acks, r.Fails, r.Unknowns, r.UnknownPresent, r.UnknownAbsent,
		r.Reads, r.Records, r.Observed, r.HWMs)
	writeExamples(&b, "lost", r.Lost)
	writeExamples(&b, "duplicate", r.Duplicates)
	writeExamples(&b, "inconsistent", r.Inconsistent)
	writeExamples(&b, "ack mismatch", r.AckMismatches)
	if len(r.Gaps) > 0 {
		var missing int64
		for _, g := range r.Gaps {
			missing += g.Len()
		}
		fmt.Fprintf(&b, "gaps: %d missing offsets in total\n", missing)
	}
	writeExamples(&b, "gap", r.Gaps)
	writeExamples(&b, "unexpected", r.Unexpected)
	writeExamples(&b, "failed but present", r.FailedButPresent)
	return strings.TrimSuffix(b.String(), "\n")
}

func writeExamples[T fmt.Stringer](b *strings.Builder, kind string, list []T) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintf(b, "%s (%d):\n", kind, len(list))
	for i, a := range list {
		if i == maxExamples {
			fmt.Fprintf(b, "  ... and %d more\n", len(list)-maxExamples)
			break
		}
		fmt.Fprintf(b, "  %v\n", a)
	}
}

// CheckFiles reads the histories in paths with [ReadFiles] and checks them.
func CheckFiles(paths ...string) (*Report, error) {
	events, err := ReadFiles(paths...)
	if err != nil {
		return nil, err
	}
	return Check(events), nil
}

type topicValue struct{ topic, value string }

type topicPartition struct {
	topic     string
	partition int32
}

type topicPosition struct {
	topic string
	pos   Position
}

type ack struct {
	process string
	pos     Position
}

type outcome struct {
	process, err string
}

// reading is the first observation of a position.
type reading struct {
	value, process string
}

type observation struct {
	positions []Position // distinct
	reader    string     // the process that first read the value
}

// Check checks a history for the anomalies defined in the package
// documentation. It does not modify events.
func Check(events []Event) *Report {
	r := &Report{Events: len(events)}
	var (
		sent     = make(map[topicValue]struct{})
		acks     = make(map[topicValue][]ack) // distinct positions, in order
		failed   = make(map[topicValue]outcome)
		unknown  = make(map[topicValue]struct{})
		hwms     = make(map[topicPartition]int64)
		at       = make(map[topicPosition]reading)       // first value read at each position
		conflict = make(map[topicPosition]*Inconsistent) // positions read with different values
		observed = make(map[topicValue]*observation)
	)
	// addPosition is called once per distinct (position, value) read, so
	// positions stay distinct without searching them.
	addPosition := func(k topicValue, pos Position, process string) {
		if o := observed[k]; o != nil {
			o.positions = append(o.positions, pos)
		} else {
			observed[k] = &observation{positions: []Position{pos}, reader: process}
		}
	}

	for i := range events {
		e := &events[i]
		k := topicValue{e.Topic, e.Value}
		switch e.Type {
		case TypeSend:
			r.Sends++
			sent[k] = struct{}{}
		case TypeAck:
			r.Acks++
			a := ack{e.Process, Position{e.Partition, e.Offset}}
			if !slices.ContainsFunc(acks[k], func(b ack) bool { return b.pos == a.pos }) {
				acks[k] = append(acks[k], a)
			}
		case TypeFail:
			r.Fails++
			if _, ok := failed[k]; !ok {
				failed[k] = outcome{e.Process, e.Error}
			}
		case TypeUnknown:
			r.Unknowns++
			unknown[k] = struct{}{}
		case TypeHWM:
			r.HWMs++
			tp := topicPartition{e.Topic, e.Partition}
			if h, ok := hwms[tp]; !ok || e.HWM > h {
				hwms[tp] = e.HWM
			}
		case TypeRead:
			r.Reads++
			r.Records += len(e.Records)
			for _, rec := range e.Records {
				pos := Position{e.Partition, rec.Offset}
				tpos := topicPosition{e.Topic, pos}
				vk := topicValue{e.Topic, rec.Value}
				first, seen := at[tpos]
				switch {
				case !seen:
					at[tpos] = reading{rec.Value, e.Process}
					addPosition(vk, pos, e.Process)
				case first.value == rec.Value:
					// A repeated read of the same record.
				default:
					c := conflict[tpos]
					if c == nil {
						c = &Inconsistent{
							Topic: e.Topic, Partition: pos.Partition, Offset: pos.Offset,
							Values: []string{first.value}, Readers: []string{first.process},
						}
						conflict[tpos] = c
					}
					if !slices.Contains(c.Values, rec.Value) {
						c.Values = append(c.Values, rec.Value)
						c.Readers = append(c.Readers, e.Process)
						addPosition(vk, pos, e.Process)
					}
				}
			}
		}
	}
	r.Observed = len(observed)

	for k, o := range observed {
		if len(o.positions) > 1 {
			r.Duplicates = append(r.Duplicates, Duplicate{Topic: k.topic, Value: k.value, Positions: sortedPositions(o.positions)})
		}
		if _, ok := sent[k]; !ok {
			r.Unexpected = append(r.Unexpected, Unexpected{Topic: k.topic, Value: k.value, Reader: o.reader, Positions: sortedPositions(o.positions)})
		}
		if f, ok := failed[k]; ok {
			r.FailedButPresent = append(r.FailedButPresent, FailedButPresent{
				Topic: k.topic, Value: k.value, Process: f.process, Error: f.err, Positions: sortedPositions(o.positions),
			})
		}
	}
	for k := range unknown {
		if observed[k] != nil {
			r.UnknownPresent++
		} else {
			r.UnknownAbsent++
		}
	}
	for k, as := range acks {
		o := observed[k]
		if o == nil {
			r.Lost = append(r.Lost, Lost{Topic: k.topic, Value: k.value, Process: as[0].process, Acked: as[0].pos})
			continue
		}
		for _, a := range as {
			if !slices.Contains(o.positions, a.pos) {
				r.AckMismatches = append(r.AckMismatches, AckMismatch{
					Topic: k.topic, Value: k.value, Process: a.process, Acked: a.pos, Observed: sortedPositions(o.positions),
				})
			}
		}
	}
	for _, c := range conflict {
		r.Inconsistent = append(r.Inconsistent, *c)
	}
	r.Gaps = gaps(hwms, at)

	byValue := func(t1, v1, t2, v2 string) int {
		if c := strings.Compare(t1, t2); c != 0 {
			return c
		}
		return strings.Compare(v1, v2)
	}
	slices.SortFunc(r.Lost, func(a, b Lost) int {
		if c := byValue(a.Topic, a.Value, b.Topic, b.Value); c != 0 {
			return c
		}
		return comparePositions(a.Acked, b.Acked)
	})
	slices.SortFunc(r.Duplicates, func(a, b Duplicate) int { return byValue(a.Topic, a.Value, b.Topic, b.Value) })
	slices.SortFunc(r.AckMismatches, func(a, b AckMismatch) int {
		if c := byValue(a.Topic, a.Value, b.Topic, b.Value); c != 0 {
			return c
		}
		return comparePositions(a.Acked, b.Acked)
	})
	slices.SortFunc(r.Unexpected, func(a, b Unexpected) int { return byValue(a.Topic, a.Value, b.Topic, b.Value) })
	slices.SortFunc(r.FailedButPresent, func(a, b FailedButPresent) int { return byValue(a.Topic, a.Value, b.Topic, b.Value) })
	slices.SortFunc(r.Inconsistent, func(a, b Inconsistent) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return comparePositions(Position{a.Partition, a.Offset}, Position{b.Partition, b.Offset})
	})
	return r
}

// gaps finds, for each partition with a high watermark, the ranges of
// offsets in [lowest observed, hwm) that were never observed.
func gaps(hwms map[topicPartition]int64, at map[topicPosition]reading) []Gap {
	if len(hwms) == 0 {
		return nil
	}
	offsets := make(map[topicPartition][]int64, len(hwms))
	for tpos := range at {
		tp := topicPartition{tpos.topic, tpos.pos.Partition}
		if _, ok := hwms[tp]; ok {
			offsets[tp] = append(offsets[tp], tpos.pos.Offset)
		}
	}
	var out []Gap
	for tp, hwm := range hwms {
		offs := offsets[tp] // distinct: they come from map keys
		slices.Sort(offs)
		next := int64(0) // the lowest offset not yet accounted for
		if len(offs) > 0 {
			next = offs[0]
		}
		for _, o := range offs {
			if o >= hwm {
				break
			}
			if o > next {
				out = append(out, Gap{Topic: tp.topic, Partition: tp.partition, From: next, To: o, HWM: hwm})
			}
			next = o + 1
		}
		if next < hwm {
			out = append(out, Gap{Topic: tp.topic, Partition: tp.partition, From: next, To: hwm, HWM: hwm})
		}
	}
	slices.SortFunc(out, func(a, b Gap) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
			return c
		}
		return cmp.Compare(a.From, b.From)
	})
	return out
}

func sortedPositions(ps []Position) []Position {
	out := slices.Clone(ps)
	slices.SortFunc(out, comparePositions)
	return out
}
