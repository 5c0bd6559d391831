package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// ErrClosed is the error [Recorder.Err] reports when an event was recorded
// after [Recorder.Close]; the event is dropped.
var ErrClosed = errors.New("history: recorder closed")

// Recorder writes a history, one JSON [Event] per line. It is safe for
// concurrent use: each event is stamped with the time and written as one
// whole line under a lock. Output is buffered until [Recorder.Flush] or
// [Recorder.Close]. Recording methods do not return errors; the first one is
// kept, later events are dropped, and [Recorder.Err] and [Recorder.Close]
// report it.
type Recorder struct {
	mu     sync.Mutex
	bw     *bufio.Writer
	enc    *json.Encoder // writes to bw
	file   *os.File      // owned by the recorder (CreateFile), or nil
	err    error
	closed bool
}

// NewRecorder returns a Recorder writing to w. Closing the Recorder flushes
// it but does not close w.
func NewRecorder(w io.Writer) *Recorder {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &Recorder{bw: bw, enc: enc}
}

// CreateFile creates (or truncates) the file at path and returns a Recorder
// writing to it. Close closes the file.
func CreateFile(path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	r := NewRecorder(f)
	r.file = f
	return r, nil
}

// Send records that process is about to attempt to produce value to topic.
func (r *Recorder) Send(process, topic, value string) {
	r.record(Event{Type: TypeSend, Process: process, Topic: topic, Value: value})
}

// Ack records that the broker acknowledged value at partition and offset.
func (r *Recorder) Ack(process, topic string, partition int32, offset int64, value string) {
	r.record(Event{Type: TypeAck, Process: process, Topic: topic, Partition: partition, Offset: offset, Value: value})
}

// Fail records that value was definitely not written, because of err.
func (r *Recorder) Fail(process, topic, value string, err error) {
	r.record(Event{Type: TypeFail, Process: process, Topic: topic, Value: value, Error: errString(err)})
}

// Unknown records that value may or may not have been written, because of err.
func (r *Recorder) Unknown(process, topic, value string, err error) {
	r.record(Event{Type: TypeUnknown, Process: process, Topic: topic, Value: value, Error: errString(err)})
}

// Read records that process observed recs in partition of topic. recs is
// not retained.
func (r *Recorder) Read(process, topic string, partition int32, recs []Rec) {
	r.record(Event{Type: TypeRead, Process: process, Topic: topic, Partition: partition, Records: recs})
}

// HighWatermark records the final high watermark of partition of topic,
// observed during the final drain.
func (r *Recorder) HighWatermark(topic string, partition int32, hwm int64) {
	r.record(Event{Type: TypeHWM, Topic: topic, Partition: partition, HWM: hwm})
}

func (r *Recorder) record(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	if r.closed {
		r.err = ErrClosed
		return
	}
	ev.Time = time.Now().UnixNano()
	// Encode writes the object and its newline in a single Write to bw.
	if err := r.enc.Encode(&ev); err != nil {
		r.err = err
	}
}

// Flush writes the buffered events to the underlying writer.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil && !r.closed {
		r.err = r.bw.Flush()
	}
	return r.err
}

// Err returns the first error met writing events, or nil.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close flushes the buffered events, closes the file if the Recorder owns
// it, and returns the first error met. Events recorded after Close are
// dropped and make Err report [ErrClosed]. Calling Close again returns
// what Err returns.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	if r.err == nil {
		r.err = r.bw.Flush()
	}
	if r.file != nil {
		if err := r.file.Close(); err != nil && r.err == nil {
			r.err = err
		}
	}
	return r.err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
