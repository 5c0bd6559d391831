package queue

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is an event's kind.
type Kind uint8

const (
	KindLease            Kind = iota + 1 // Offset leased: Token, Until
	KindAck                              // Offset acked
	KindNack                             // Offset failed: available again at Until; Reason
	KindRelease                          // Offset back now, no penalty
	KindReject                           // Offset to the dead-letter topic; Reason
	KindExtend                           // Offset's lease now ends at Until
	KindDeadLetterAssign                 // Offset's dead-letter move has producer sequence Seq
	KindDeadLettered                     // Offset is stored in the dead-letter topic
	KindProducer                         // the dead-letter producer id is Producer
	KindSpill                            // delayed records moved to Run
	KindLoadRun                          // Run's entries up to Run.Loaded are back in memory
	KindTick                             // time passed (the broker logs one before a snapshot)
	KindGone                             // Offset is gone from the log (retention) before it was settled
	maxKind
)

// Event is one logged change of a state. Time is when it happened (ms);
// the fields used depend on Kind.
type Event struct {
	Kind     Kind   `json:"k"`
	Offset   int64  `json:"o,omitempty"`
	Time     int64  `json:"at"`
	Token    uint64 `json:"t,omitempty"`
	Until    int64  `json:"u,omitempty"`
	Seq      int32  `json:"s,omitempty"`
	Producer int64  `json:"p,omitempty"`
	Reason   string `json:"r,omitempty"`
	Run      *Run   `json:"run,omitempty"`
}

// MaxReasonBytes bounds a nack or reject reason; longer ones are cut.
const MaxReasonBytes = 1024

// cutReason is a reason as a state keeps and logs it: valid UTF-8 (the
// logged form, JSON, would replace other bytes, and a rebuilt state would
// keep another reason than the live one) and at most MaxReasonBytes, cut
// at a rune boundary (a cut inside a rune is not valid UTF-8 either).
func cutReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	cut := MaxReasonBytes
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// EncodeEvent is an event's logged form.
func EncodeEvent(ev Event) []byte {
	ev.Reason = cutReason(ev.Reason)
	data, _ := json.Marshal(ev)
	return data
}

// DecodeEvent parses a logged event and checks its fields.
func DecodeEvent(data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return Event{}, fmt.Errorf("queue: undecodable event: %w", err)
	}
	if ev.Kind == 0 || ev.Kind >= maxKind {
		return Event{}, fmt.Errorf("queue: event of unknown kind %d", ev.Kind)
	}
	if ev.Offset < 0 || ev.Time < 0 || ev.Until < 0 || ev.Seq < 0 {
		return Event{}, fmt.Errorf("queue: event with a negative field")
	}
	if len(ev.Reason) > MaxReasonBytes {
		return Event{}, fmt.Errorf("queue: event with a reason of %d bytes (EncodeEvent keeps at most %d)", len(ev.Reason), MaxReasonBytes)
	}
	if (ev.Kind == KindSpill || ev.Kind == KindLoadRun) != (ev.Run != nil) {
		return Event{}, fmt.Errorf("queue: %d event with a run %v", ev.Kind, ev.Run != nil)
	}
	if ev.Run != nil {
		if err := ev.Run.check(); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}
