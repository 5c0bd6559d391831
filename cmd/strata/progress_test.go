package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	p := newProgressOn(&bytes.Buffer{}, 1000, true)
	p.records, p.bytes = 250, 3<<20
	if got, want := p.line(5*time.Second), "[=======>                      ] 250/1000 records  3.0 MiB  50.0/s  614.4 KiB/s  ETA 15s "; got != want {
		t.Errorf("with a total:\n got %q\nwant %q", got, want)
	}
	// No total: the fraction done (consume --until's, by record time).
	p = newProgressOn(&bytes.Buffer{}, 0, false)
	p.records = 100
	p.SetFraction(0.5)
	if got, want := p.line(10*time.Second), "[===============>              ] 100 records  10.0/s  ETA 10s "; got != want {
		t.Errorf("with a fraction:\n got %q\nwant %q", got, want)
	}
	// Neither: no bar, no ETA.
	p = newProgressOn(&bytes.Buffer{}, 0, false)
	p.records = 7
	if got, want := p.line(time.Second), "7 records  7.0/s  ETA - "; got != want {
		t.Errorf("without a goal:\n got %q\nwant %q", got, want)
	}
	// Done.
	p = newProgressOn(&bytes.Buffer{}, 10, false)
	p.records = 10
	if got := p.line(time.Second); !strings.HasPrefix(got, "["+strings.Repeat("=", 30)+"] 10/10") || !strings.HasSuffix(got, "ETA 0s ") {
		t.Errorf("done: %q", got)
	}
}

// The bar redraws in place (\r) and ends with a newline; none at all
// when stderr is not a terminal, and a nil bar is safe to use.
func TestProgressDrawsOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressOn(&buf, 3, true)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { return clock }
	p.begin, p.last = clock, clock
	p.Add(1, 10) // within progressEvery of the start: not drawn
	if buf.Len() != 0 {
		t.Fatalf("drew before progressEvery passed: %q", buf.String())
	}
	clock = clock.Add(progressEvery)
	p.Add(1, 10)
	clock = clock.Add(progressEvery)
	p.Add(1, 10)
	p.Done()
	out := buf.String()
	if strings.Count(out, "\r") != 3 || !strings.HasSuffix(out, "\n") || !strings.Contains(out, "3/3 records") {
		t.Fatalf("drawn: %q", out)
	}

	old := errOut
	defer func() { errOut = old }()
	errOut = &buf
	if p := newProgress(10, true); p != nil {
		t.Fatal("a bar on a stderr that is not a terminal")
	}
	var none *progress
	none.Add(1, 1)
	none.Set(1, 2)
	none.SetFraction(0.5)
	none.Done()
}
