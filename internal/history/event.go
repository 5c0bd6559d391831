package history

import (
	"errors"
	"fmt"
)

// Type is the kind of an [Event].
type Type string

// The event types.
const (
	// TypeSend: a producer is about to attempt to produce Value.
	TypeSend Type = "send"
	// TypeAck: the broker acknowledged Value at Partition and Offset.
	TypeAck Type = "ack"
	// TypeFail: Value was definitely not written; Error says why.
	TypeFail Type = "fail"
	// TypeUnknown: Value may or may not have been written; Error says why.
	TypeUnknown Type = "unknown"
	// TypeRead: a consumer observed Records in Partition.
	TypeRead Type = "read"
	// TypeHWM: the final high watermark HWM of Partition, observed during
	// the final drain.
	TypeHWM Type = "hwm"
)

func (t Type) valid() bool {
	switch t {
	case TypeSend, TypeAck, TypeFail, TypeUnknown, TypeRead, TypeHWM:
		return true
	}
	return false
}

// needsValue reports whether events of type t identify a record by Value.
func (t Type) needsValue() bool {
	switch t {
	case TypeSend, TypeAck, TypeFail, TypeUnknown:
		return true
	}
	return false
}

// Event is one line of a history. Which fields are meaningful depends on
// Type; the others are left zero (and omitted from the JSON).
type Event struct {
	Type      Type   `json:"type"`
	Process   string `json:"process,omitempty"`   // producer or consumer name
	Time      int64  `json:"time,omitempty"`      // unix nanoseconds
	Topic     string `json:"topic,omitempty"`     // all types
	Partition int32  `json:"partition,omitempty"` // ack, read, hwm (unknown at send time)
	Value     string `json:"value,omitempty"`     // send, ack, fail, unknown
	Offset    int64  `json:"offset,omitempty"`    // ack
	Error     string `json:"error,omitempty"`     // fail, unknown
	Records   []Rec  `json:"records,omitempty"`   // read
	HWM       int64  `json:"hwm,omitempty"`       // hwm
}

// Rec is one record observed by a read.
type Rec struct {
	Offset int64  `json:"offset"`
	Value  string `json:"value"`
}

// validate reports what is wrong with e, or nil.
func (e *Event) validate() error {
	switch {
	case e.Type == "":
		return errors.New("missing type")
	case !e.Type.valid():
		return fmt.Errorf("unknown type %q", e.Type)
	case e.Type.needsValue() && e.Value == "":
		return fmt.Errorf("%s event with no value", e.Type)
	case e.Partition < 0:
		return fmt.Errorf("negative partition %d", e.Partition)
	case e.Offset < 0:
		return fmt.Errorf("negative offset %d", e.Offset)
	case e.HWM < 0:
		return fmt.Errorf("negative hwm %d", e.HWM)
	}
	for i, r := range e.Records {
		if r.Offset < 0 {
			return fmt.Errorf("record %d: negative offset %d", i, r.Offset)
		}
	}
	return nil
}
