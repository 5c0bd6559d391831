package export

import (
	"context"
	"fmt"

	"github.com/stratalog/strata/segment"
)

// plan fixes the next range to claim, starting at offset s and ending
// before gapEnd at the latest: up to the sealed end, cut where the UTC
// date of the records changes and once their segment bytes reach
// FileBytes. It reads segment footers (cached) and decodes only blocks
// whose records may span dates, and never reads past what it claims.
//
// It returns nil and the offset to continue from when there is nothing
// to claim at s: the records there are below the log start (counted as
// skipped) or there are none before gapEnd.
func (e *Exporter) plan(ctx context.Context, j *job, s, gapEnd int64) (*Claim, int64, error) {
	m, err := j.manifests.Manifest(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("export: topic %q partition %d: %w", j.t.Name, j.p, err)
	}
	if s < m.LogStartOffset {
		skip := min(m.LogStartOffset, gapEnd)
		j.res.Skipped += skip - s
		e.cfg.Logger.Warn("export: offsets deleted by retention before they were exported are skipped", "topic", j.t.Name, "partition", j.p, "from", s, "to", skip-1)
		return nil, skip, nil
	}
	end := min(gapEnd, m.NextOffset())
	var (
		date     string
		last     = int64(-1)
		segBytes int64
	)
	claim := func() (*Claim, int64, error) {
		if last < s {
			return nil, gapEnd, nil // no record in [s, end)
		}
		return &Claim{
			ID: randomHex(8), First: s, Last: last, Date: date,
			Key:           FileKey(e.cfg.Prefix, j.t.Name, date, j.p, s, last),
			RowGroupBytes: e.cfg.RowGroupBytes, RowGroupLimit: e.cfg.RowGroupLimit,
			SegmentBytes: segBytes, By: e.id, ClaimedMs: e.cfg.Now().UnixMilli(),
		}, 0, nil
	}
	// sameDate takes records lo..hi of one date d; it reports false when
	// d ends the file before them.
	sameDate := func(d string, lo, hi int64) bool {
		if date == "" {
			date = d
		}
		if d != date {
			return false
		}
		last = hi
		return true
	}
	for si := m.FindSegment(s); si < len(m.Segments) && m.Segments[si].BaseOffset < end; si++ {
		seg := m.Segments[si]
		f, err := e.cache.Footer(ctx, e.cfg.Source, seg)
		if err != nil {
			return nil, 0, fmt.Errorf("export: topic %q partition %d: %w", j.t.Name, j.p, err)
		}
		minDate := DateOf(f.MinTimestamp)
		for bi := range f.Blocks {
			blk := &f.Blocks[bi]
			lo, hi := max(blk.FirstOffset, s), min(blk.LastOffset, end-1)
			if blk.LastOffset < s || lo > hi {
				if blk.FirstOffset >= end {
					break
				}
				continue
			}
			if DateOf(blk.MaxTimestamp) == minDate {
				// Every record of blocks 0..bi lies between the
				// segment's min timestamp and this running max: one date.
				if !sameDate(minDate, lo, hi) {
					return claim()
				}
			} else {
				batches, err := e.cache.Batches(ctx, e.cfg.Source, seg.Key, f, bi)
				if err != nil {
					return nil, 0, fmt.Errorf("export: topic %q partition %d: %w", j.t.Name, j.p, err)
				}
				if !e.walkDates(batches, lo, hi, sameDate) {
					return claim()
				}
			}
			if blk.Records > 0 {
				segBytes += blk.Len * (hi - lo + 1) / blk.Records
			}
			if segBytes >= e.cfg.FileBytes {
				return claim()
			}
		}
	}
	return claim()
}

// walkDates feeds the records lo..hi of decoded batches to take in runs of
// one date, and reports false once take refuses one.
func (e *Exporter) walkDates(batches []segment.Batch, lo, hi int64, take func(d string, lo, hi int64) bool) bool {
	for bi := range batches {
		for ri := range batches[bi].Records {
			r := &batches[bi].Records[ri]
			if r.Offset < lo || r.Offset > hi {
				continue
			}
			if !take(DateOf(r.Timestamp), r.Offset, r.Offset) {
				return false
			}
		}
	}
	return true
}
