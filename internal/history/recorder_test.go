package history

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRecorderConcurrent(t *testing.T) {
	const (
		goroutines = 16
		perG       = 400
	)
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			proc := fmt.Sprint("g", g)
			for i := range perG {
				v := fmt.Sprintf("%s-%06d", proc, i)
				switch i % 6 {
				case 0:
					r.Send(proc, "t", v)
				case 1:
					r.Ack(proc, "t", int32(g), int64(i), v)
				case 2:
					r.Fail(proc, "t", v, errors.New("nope"))
				case 3:
					r.Unknown(proc, "t", v, nil)
				case 4:
					r.Read(proc, "t", int32(g), []Rec{{Offset: int64(i), Value: v}, {Offset: int64(i + 1), Value: v + "+"}})
				case 5:
					r.HighWatermark("t"+v, int32(g), int64(i))
				}
				if i%97 == 0 {
					if err := r.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	if n := strings.Count(buf.String(), "\n"); n != goroutines*perG {
		t.Fatalf("%d lines, want %d", n, goroutines*perG)
	}
	events, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Every event, identified by what it carries, exactly once.
	seen := make(map[string]int)
	var lastTime int64
	for _, e := range events {
		if e.Time < lastTime {
			t.Errorf("time went backwards: %d after %d", e.Time, lastTime)
		}
		lastTime = e.Time
		var key string
		switch e.Type {
		case TypeSend, TypeUnknown:
			key = fmt.Sprint(e.Type, e.Process, e.Topic, e.Value, e.Error)
		case TypeAck:
			key = fmt.Sprint(e.Type, e.Process, e.Topic, e.Value, e.Partition, "@", e.Offset)
		case TypeFail:
			key = fmt.Sprint(e.Type, e.Process, e.Topic, e.Value, e.Error)
		case TypeRead:
			key = fmt.Sprint(e.Type, e.Process, e.Topic, e.Partition, e.Records)
		case TypeHWM:
			key = fmt.Sprint(e.Type, e.Topic, e.Partition, "=", e.HWM)
		}
		seen[key]++
	}
	for g := range goroutines {
		proc := fmt.Sprint("g", g)
		for i := range perG {
			v := fmt.Sprintf("%s-%06d", proc, i)
			var key string
			switch i % 6 {
			case 0:
				key = fmt.Sprint(TypeSend, proc, "t", v, "")
			case 1:
				key = fmt.Sprint(TypeAck, proc, "t", v, int32(g), "@", int64(i))
			case 2:
				key = fmt.Sprint(TypeFail, proc, "t", v, "nope")
			case 3:
				key = fmt.Sprint(TypeUnknown, proc, "t", v, "")
			case 4:
				key = fmt.Sprint(TypeRead, proc, "t", int32(g), []Rec{{Offset: int64(i), Value: v}, {Offset: int64(i + 1), Value: v + "+"}})
			case 5:
				key = fmt.Sprint(TypeHWM, "t"+v, int32(g), "=", int64(i))
			}
			if n := seen[key]; n != 1 {
				t.Errorf("event %s recorded %d times", key, n)
			}
			delete(seen, key)
		}
	}
	for key, n := range seen {
		t.Errorf("unexpected event %s (%d times)", key, n)
	}
}

// failWriter accepts n bytes, then fails.
type failWriter struct {
	n   int
	err error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestRecorderErrors(t *testing.T) {
	boom := errors.New("disk full")
	r := NewRecorder(&failWriter{n: 10, err: boom})
	r.Send("p1", "t", "a")
	if err := r.Err(); err != nil {
		t.Fatalf("Err before flushing = %v", err) // still buffered
	}
	if err := r.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want %v", err, boom)
	}
	r.Send("p1", "t", "b")
	if err := r.Err(); !errors.Is(err, boom) {
		t.Errorf("Err = %v, want the first error %v", err, boom)
	}
	if err := r.Close(); !errors.Is(err, boom) {
		t.Errorf("Close = %v, want %v", err, boom)
	}

	var buf bytes.Buffer
	r = NewRecorder(&buf)
	r.Send("p1", "t", "a")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
	r.Send("p1", "t", "late")
	if err := r.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err after recording past Close = %v, want ErrClosed", err)
	}
	if strings.Contains(buf.String(), "late") {
		t.Errorf("event recorded after Close was written: %s", buf.String())
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func TestRecorderFormat(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	r.Ack("p<1>", "t", 0, 0, "a&b")
	r.Fail("p1", "t", "c", nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	// omitempty: zero partition, offset and error are left out; no HTML
	// escaping.
	for _, bad := range []string{`"partition"`, `"offset"`, `"error"`, `"records"`, `"hwm"`, `\u003c`, `\u0026`} {
		if strings.Contains(buf.String(), bad) {
			t.Errorf("history contains %s:\n%s", bad, buf.String())
		}
	}
	if !strings.HasPrefix(lines[0], `{"type":"ack","process":"p<1>","time":`) || !strings.HasSuffix(lines[0], `"topic":"t","value":"a&b"}`) {
		t.Errorf("ack line = %s", lines[0])
	}
}

func TestCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := CreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Send("p1", "t", "a")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	events, err := ReadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Value != "a" || events[0].Time == 0 {
		t.Errorf("events = %+v", events)
	}
	if _, err := CreateFile(filepath.Join(t.TempDir(), "no", "such", "dir", "h.jsonl")); err == nil {
		t.Error("CreateFile in a missing directory: no error")
	}
}
