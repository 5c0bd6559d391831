package main

// A progress bar for long work (consume --max/--until, dlq redrive): one
// line on stderr, redrawn in place, with records, bytes, rate and ETA.
// Only on a terminal: newProgress returns nil otherwise, and every method
// of a nil *progress does nothing, so callers need no checks. Not safe
// for concurrent use: one goroutine reports.

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progressEvery is the least time between redraws.
const progressEvery = 200 * time.Millisecond

// progress draws the bar. Set total (records expected) when known, or a
// fraction done (SetFraction) when the goal is not a count (a time).
type progress struct {
	w     io.Writer
	begin time.Time
	now   func() time.Time

	total          int64   // records expected; 0: unknown
	frac           float64 // fraction done when total is 0; <0: unknown
	records, bytes int64   // done
	showBytes      bool    // bytes are counted (not by redrive)
	last           time.Time
	drawn          bool
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgress returns a bar on errOut when it is a terminal, else nil.
func newProgress(total int64, showBytes bool) *progress {
	f, ok := errOut.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return newProgressOn(f, total, showBytes)
}

// newProgressOn returns a bar on w, terminal or not (tests).
func newProgressOn(w io.Writer, total int64, showBytes bool) *progress {
	return &progress{w: w, begin: time.Now(), now: time.Now, total: total, frac: -1, showBytes: showBytes}
}

// Add counts records and bytes done, and redraws at most every
// progressEvery.
func (p *progress) Add(records, bytes int64) {
	if p == nil {
		return
	}
	p.records += records
	p.bytes += bytes
	p.maybeDraw()
}

// Set sets the records done and the total (redrive reports both).
func (p *progress) Set(records, total int64) {
	if p == nil {
		return
	}
	p.records, p.total = records, total
	p.maybeDraw()
}

// SetFraction sets the fraction done, 0 to 1, for a bar without a total.
func (p *progress) SetFraction(f float64) {
	if p == nil {
		return
	}
	p.frac = min(max(f, 0), 1)
}

func (p *progress) maybeDraw() {
	if now := p.now(); now.Sub(p.last) >= progressEvery {
		p.last = now
		p.draw()
	}
}

func (p *progress) draw() {
	fmt.Fprint(p.w, "\r"+p.line(p.now().Sub(p.begin)))
	p.drawn = true
}

// Done draws the final state and ends the line; nothing if nothing was
// drawn (the work was quick).
func (p *progress) Done() {
	if p == nil || !p.drawn {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
}

// line is the bar: [=====>    ] 1200/5000 records  3.1 MiB  400.0/s  ETA 10s
func (p *progress) line(took time.Duration) string {
	const width = 30
	frac := p.frac
	if p.total > 0 {
		frac = min(float64(p.records)/float64(p.total), 1)
	}
	var b strings.Builder
	if frac >= 0 {
		fill := int(frac * width)
		b.WriteString("[" + strings.Repeat("=", fill))
		if fill < width {
			b.WriteString(">" + strings.Repeat(" ", width-fill-1))
		}
		b.WriteString("] ")
	}
	if p.total > 0 {
		fmt.Fprintf(&b, "%d/%d records", p.records, p.total)
	} else {
		fmt.Fprintf(&b, "%d records", p.records)
	}
	secs := max(took.Seconds(), 1e-3)
	rate := float64(p.records) / secs
	if p.showBytes {
		fmt.Fprintf(&b, "  %s  %.1f/s  %s/s", byteText(p.bytes), rate, byteText(int64(float64(p.bytes)/secs)))
	} else {
		fmt.Fprintf(&b, "  %.1f/s", rate)
	}
	eta := "-"
	switch {
	case frac >= 1:
		eta = "0s"
	case p.total > 0 && rate > 0:
		eta = time.Duration(float64(p.total-p.records) / rate * float64(time.Second)).Round(time.Second).String()
	case frac > 0:
		eta = time.Duration(took.Seconds() * (1 - frac) / frac * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(&b, "  ETA %s ", eta)
	return b.String()
}

// byteText is n in B, KiB, MiB or GiB.
func byteText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
