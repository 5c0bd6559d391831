package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLineSize is the longest line, in bytes, [Decode] accepts.
const MaxLineSize = 64 << 20

// DecodeError is a malformed line of a history.
type DecodeError struct {
	File string // the file name, or "" when not known
	Line int    // 1-based line number
	Err  error  // what is wrong
}

func (e *DecodeError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("history: %s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("history: line %d: %v", e.Line, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineSize)

// Decode reads a history, one JSON [Event] per line, until EOF. Blank lines
// are skipped. On a malformed line it returns the events before it and a
// *[DecodeError] naming the line.
func Decode(r io.Reader) ([]Event, error) {
	return decode(r, "")
}

// ReadFiles reads the histories in paths (say, one per process) and merges
// them into one, ordered by time while keeping each file's own order of
// events. An error names the file.
func ReadFiles(paths ...string) ([]Event, error) {
	files := make([][]Event, 0, len(paths))
	for _, path := range paths {
		evs, err := readFile(path)
		if err != nil {
			return nil, err
		}
		files = append(files, evs)
	}
	// Merge pairwise, in rounds: O(n log k) for n events in k files. Merging
	// neighbours, earlier file first, keeps ties in the order of paths.
	for len(files) > 1 {
		next := files[:0]
		for i := 0; i < len(files); i += 2 {
			if i+1 == len(files) {
				next = append(next, files[i])
			} else {
				next = append(next, mergeByTime(files[i], files[i+1]))
			}
		}
		files = next
	}
	if len(files) == 0 {
		return nil, nil
	}
	return files[0], nil
}

func readFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return decode(f, path)
}

func decode(r io.Reader, file string) ([]Event, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		events  []Event
		scratch []byte
	)
	for lineNo := 1; ; lineNo++ {
		line, rerr := readLine(br, &scratch)
		if errors.Is(rerr, errLineTooLong) {
			return events, &DecodeError{File: file, Line: lineNo, Err: rerr}
		}
		if rerr != nil && rerr != io.EOF {
			// An I/O error, not a malformed line.
			if file != "" {
				return events, fmt.Errorf("history: reading %s at line %d: %w", file, lineNo, rerr)
			}
			return events, fmt.Errorf("history: reading line %d: %w", lineNo, rerr)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			ev, err := decodeLine(line)
			if err != nil {
				return events, &DecodeError{File: file, Line: lineNo, Err: err}
			}
			events = append(events, ev)
		}
		if rerr == io.EOF {
			return events, nil
		}
	}
}

// readLine returns the next line, without its newline, and io.EOF with the
// last one. The line is only valid until the next call.
func readLine(br *bufio.Reader, scratch *[]byte) ([]byte, error) {
	buf := (*scratch)[:0]
	defer func() { *scratch = buf[:0] }()
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(buf)+len(chunk) > MaxLineSize {
				return nil, errLineTooLong
			}
			buf = append(buf, chunk...)
			continue
		}
		line := chunk
		if len(buf) > 0 {
			buf = append(buf, chunk...)
			line = buf
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(line) > MaxLineSize {
			return nil, errLineTooLong
		}
		return line, err
	}
}

func decodeLine(line []byte) (Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Event{}, errors.New("bad JSON: data after the object")
	}
	if len(ev.Records) == 0 {
		ev.Records = nil // "records":[] means the same as no records
	}
	if err := ev.validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Encode writes events to w as a history, one JSON object per line, in the
// format [Decode] reads.
func Encode(w io.Writer, events []Event) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// mergeByTime merges two histories into a new one ordered by time, keeping
// the relative order of the events of each (even where its own times go
// backwards) and putting a's events first among equal times.
func mergeByTime(a, b []Event) []Event {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]Event, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].Time < a[0].Time {
			out = append(out, b[0])
			b = b[1:]
		} else {
			out = append(out, a[0])
			a = a[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}
