package export

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// ErrOutOfRange is wrapped when a run is asked to start below a
// partition's log start: those records were deleted by retention.
var ErrOutOfRange = errors.New("export: offset out of range")

// ErrBusy is wrapped when a partition was skipped because another
// exporter claimed its next range less than TakeOverAfter ago.
var ErrBusy = errors.New("export: partition busy")

// Bounds limit what one Export call exports. With no bounds, it exports
// every partition from its log start to its sealed end. Ranges already
// committed in the export manifest are never exported again; a pending
// claim (a run that was killed) is finished first, whatever its bounds.
type Bounds struct {
	// Partitions limits the run to these partitions (nil: every one).
	Partitions []int32
	// FromOffset starts a partition at an offset (inclusive). One below
	// the log start is an error (ErrOutOfRange). A partition not named
	// starts at FromTime, else at its log start.
	FromOffset map[int32]int64
	// ToOffset ends a partition before an offset (exclusive). A partition
	// not named ends at ToTime, else at its sealed end; nothing past the
	// sealed end is exported.
	ToOffset map[int32]int64
	// FromTime starts each partition at its first record whose timestamp
	// is at or after it (zero: no bound).
	FromTime time.Time
	// ToTime ends each partition before its first record whose timestamp
	// is at or after it (zero: no bound).
	ToTime time.Time
}

// Progress is what a run has done so far, reported after every row group
// and every committed file. Bytes are sealed segment bytes (what the
// source holds); TotalRecords and TotalSegmentBytes are what the run
// found to export when it started (offsets, so an estimate when records
// are missing).
type Progress struct {
	Records, TotalRecords           int64
	SegmentBytes, TotalSegmentBytes int64
	ParquetBytes                    int64 // bytes of the files committed
	Files                           int   // files committed
}

// PartitionResult is what a run did to one partition.
type PartitionResult struct {
	Partition int32
	// From and To are the bounds the run resolved ([From, To)); SealedEnd
	// is the partition's sealed end when it started (nothing past it is
	// exported), LogStart its log start.
	From, To, SealedEnd, LogStart int64
	Files                         int   // files committed by this run
	Adopted                       int   // of which another exporter had stored
	Records                       int64 // rows in them
	ParquetBytes                  int64
	SegmentBytes                  int64
	Misfits                       int64 // rows whose value did not fit the value schema
	// Skipped counts offsets below the log start the run could not
	// export: retention deleted them before they were exported.
	Skipped int64
	// Lost counts the offsets of pending claims committed as lost
	// (their records were deleted before any exporter stored the file).
	Lost int64
	// Busy is set when another exporter's fresh claim made the run skip
	// the partition (TakeOverAfter).
	Busy bool
}

// Result is what one Export call did.
type Result struct {
	Topic      string
	TopicID    string
	Partitions []PartitionResult
}

// Totals sums the partitions.
func (r *Result) Totals() (files int, records, parquetBytes, segmentBytes int64) {
	for _, p := range r.Partitions {
		files += p.Files
		records += p.Records
		parquetBytes += p.ParquetBytes
		segmentBytes += p.SegmentBytes
	}
	return
}

// Exporter exports topics from Config.Source to Config.Target. It is safe
// for concurrent use.
type Exporter struct {
	cfg      Config
	cache    *fetch.Cache
	ownCache bool
	id       string // this Exporter's claims' By: Name plus a random suffix
	cas      meta.CAS
}

// New returns an Exporter. Close it when done.
func New(cfg Config) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Exporter{cfg: cfg, cache: cfg.Cache, id: cfg.Name + "-" + randomHex(4),
		cas: meta.CAS{Store: cfg.Target, Retry: cfg.Retry, Limit: maxManifestBytes}}
	if e.cache == nil {
		c, err := fetch.NewCache(cfg.CacheConfig)
		if err != nil {
			return nil, err
		}
		e.cache, e.ownCache = c, true
	}
	return e, nil
}

// Close releases the read cache the Exporter made. It is idempotent; the
// stores are the caller's.
func (e *Exporter) Close() error {
	if e.ownCache {
		return e.cache.Close()
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("export: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// job is one partition of one run.
type job struct {
	t         *Topic
	layout    *columnar.Layout
	p         int32
	manifests *fetch.BucketManifests
	reader    *fetch.PartitionReader
	mkey      string // the export manifest
	from, to  int64
	res       *PartitionResult
}

// tracker sums progress over the partitions of a run and reports it.
type tracker struct {
	mu sync.Mutex
	p  Progress
	fn func(Progress)
}

func (t *tracker) add(records, segBytes, parquetBytes int64, files int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Records += records
	t.p.SegmentBytes += segBytes
	t.p.ParquetBytes += parquetBytes
	t.p.Files += files
	if t.fn != nil {
		t.fn(t.p)
	}
}

// Export exports topic within b, and reports progress to fn (nil: none;
// fn is never called concurrently). It returns what it did, also when it
// fails part way: everything committed before the error stays committed,
// and a new run continues from there.
func (e *Exporter) Export(ctx context.Context, topic string, b Bounds, fn func(Progress)) (*Result, error) {
	t, err := ReadTopic(ctx, e.cfg.Source, topic)
	if err != nil {
		return nil, err
	}
	parts := b.Partitions
	if parts == nil {
		for p := range t.Partitions {
			parts = append(parts, p)
		}
	}
	for _, m := range []map[int32]int64{b.FromOffset, b.ToOffset} {
		for p := range m {
			if !slices.Contains(parts, p) {
				return nil, fmt.Errorf("export: topic %q: an offset bound names partition %d, which the run does not export", topic, p)
			}
		}
	}
	res := &Result{Topic: t.Name, TopicID: t.ID}
	var jobs []*job
	tr := &tracker{fn: fn}
	for _, p := range parts {
		if p < 0 || p >= t.Partitions {
			return nil, fmt.Errorf("export: topic %q has partitions 0 to %d; there is no partition %d", topic, t.Partitions-1, p)
		}
		j, err := e.prepare(ctx, t, nil, p, b)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
		if fn == nil {
			continue // totals are only for progress reports
		}
		total, totalBytes, err := e.remaining(ctx, j)
		if err != nil {
			return nil, err
		}
		tr.p.TotalRecords += total
		tr.p.TotalSegmentBytes += totalBytes
	}
	layout, err := layoutFor(ctx, e.cfg.Source, t)
	nothingSealed := errors.Is(err, core.ErrFailedPrecondition) || errors.Is(err, tier.ErrNotFound)
	if nothingSealed && !slices.ContainsFunc(jobs, func(j *job) bool { return j.to > j.from }) {
		// A json topic whose schema is inferred from its first sealed
		// records, and nothing sealed yet (core.TopicLayout says so, or
		// fails on a partition never written): nothing to export.
		for _, j := range jobs {
			res.Partitions = append(res.Partitions, *j.res)
		}
		return res, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: topic %q: its row layout: %w", topic, err)
	}
	for _, j := range jobs {
		j.layout = layout
	}
	if fn != nil {
		fn(tr.p)
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, e.cfg.Parallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = e.run(ctx, j, tr)
		}()
	}
	wg.Wait()
	for _, j := range jobs {
		res.Partitions = append(res.Partitions, *j.res)
	}
	return res, errors.Join(errs...)
}

// prepare resolves partition p's bounds against its manifest.
func (e *Exporter) prepare(ctx context.Context, t *Topic, layout *columnar.Layout, p int32, b Bounds) (*job, error) {
	ms := fetch.NewBucketManifests(e.cfg.Source, t.StorageName(), p, e.cfg.ManifestTTL)
	j := &job{t: t, layout: layout, p: p, manifests: ms,
		reader: fetch.NewPartitionReader(e.cache, e.cfg.Source, ms, nil),
		mkey:   ManifestKey(e.cfg.Prefix, t.Name, t.ID, p),
		res:    &PartitionResult{Partition: p}}
	m, err := ms.Manifest(ctx)
	if errors.Is(err, tier.ErrNotFound) {
		return j, nil // nothing written to it yet: nothing to export
	}
	if err != nil {
		return nil, fmt.Errorf("export: topic %q partition %d: %w", t.Name, p, err)
	}
	logStart, end := m.LogStartOffset, m.NextOffset()
	j.res.LogStart, j.res.SealedEnd = logStart, end
	j.from, j.to = logStart, end
	if o, ok := b.FromOffset[p]; ok {
		if o < logStart {
			return nil, fmt.Errorf("%w: topic %q partition %d: from offset %d is below the log start %d (retention deleted the records before it); start at %d or later",
				ErrOutOfRange, t.Name, p, o, logStart, logStart)
		}
		j.from = o
	} else if !b.FromTime.IsZero() {
		o, err := j.reader.OffsetForTime(ctx, b.FromTime.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("export: topic %q partition %d: the offset of %s: %w", t.Name, p, b.FromTime.UTC().Format(time.RFC3339), err)
		}
		j.from = max(o, logStart)
	}
	if o, ok := b.ToOffset[p]; ok {
		if o < j.from {
			return nil, fmt.Errorf("export: topic %q partition %d: to offset %d is before the from offset %d", t.Name, p, o, j.from)
		}
		j.to = min(o, end)
	} else if !b.ToTime.IsZero() {
		o, err := j.reader.OffsetForTime(ctx, b.ToTime.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("export: topic %q partition %d: the offset of %s: %w", t.Name, p, b.ToTime.UTC().Format(time.RFC3339), err)
		}
		j.to = min(o, end)
	}
	j.to = max(j.to, j.from)
	j.res.From, j.res.To = j.from, j.to
	return j, nil
}

// remaining estimates what the run has to do on j: offsets not yet
// committed, and their share of segment bytes.
func (e *Exporter) remaining(ctx context.Context, j *job) (records, segBytes int64, err error) {
	if j.to <= j.from {
		return 0, 0, nil
	}
	_, man, err := e.readManifest(ctx, j)
	if err != nil {
		return 0, 0, err
	}
	records = j.to - j.from - man.Covered(j.from, j.to)
	m, err := j.manifests.Manifest(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range m.Segments {
		lo, hi := max(s.BaseOffset, j.from), min(s.LastOffset+1, j.to)
		if hi > lo {
			segBytes += s.Size * (hi - lo) / (s.LastOffset - s.BaseOffset + 1)
		}
	}
	if span := j.to - j.from; span > 0 {
		segBytes = segBytes * records / span
	}
	return records, segBytes, nil
}

// readManifest reads j's export manifest; an absent one is an empty
// manifest at the zero Version.
func (e *Exporter) readManifest(ctx context.Context, j *job) (meta.Version, *Manifest, error) {
	v, err := e.cas.Read(ctx, j.mkey)
	if err != nil {
		return meta.Version{}, nil, fmt.Errorf("export: read the export manifest: %w (is the --to store reachable and readable?)", err)
	}
	if !v.Exists() {
		return v, &Manifest{Version: ManifestVersion, Topic: j.t.Name, TopicID: j.t.ID, Partition: j.p}, nil
	}
	m, err := DecodeManifest(v.Data)
	if err != nil {
		return meta.Version{}, nil, fmt.Errorf("export: export manifest %s: %w; nothing was changed: restore or delete it (deleting it exports everything again)", j.mkey, err)
	}
	if m.Topic != j.t.Name || m.TopicID != j.t.ID || m.Partition != j.p {
		return meta.Version{}, nil, fmt.Errorf("export: export manifest %s is of topic %q (id %q) partition %d, not of topic %q (id %q) partition %d; nothing was changed",
			j.mkey, m.Topic, m.TopicID, m.Partition, j.t.Name, j.t.ID, j.p)
	}
	return v, m, nil
}

// errConflict: another exporter changed the manifest first; read it again.
var errConflict = errors.New("export: the export manifest changed meanwhile")

// swap stores next in place of the version v by CAS.
func (e *Exporter) swap(ctx context.Context, j *job, v meta.Version, next *Manifest) error {
	next.Version, next.UpdateID = ManifestVersion, randomHex(8)
	data, err := EncodeManifest(next)
	if err != nil {
		return fmt.Errorf("export: export manifest %s: %w (a bug: nothing was stored)", j.mkey, err)
	}
	_, err = e.cas.Swap(ctx, j.mkey, v.ETag, data)
	var cerr *meta.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &cerr), errors.Is(err, meta.ErrOutcomeUnknown):
		// Either way the manifest's current version decides: read it.
		return errConflict
	default:
		return fmt.Errorf("export: write the export manifest %s: %w (the files committed so far stay; run again to continue)", j.mkey, err)
	}
}

// maxIdleRounds bounds the loop turns in a row that commit nothing (each
// lost a CAS to another exporter, or could not settle a write): past it
// the store is too contended or too faulty to go on.
const maxIdleRounds = 64

// run exports j: the loop of the package doc.
func (e *Exporter) run(ctx context.Context, j *job, tr *tracker) error {
	cursor, idle := j.from, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if idle++; idle > maxIdleRounds {
			return fmt.Errorf("export: topic %q partition %d: %d turns in a row lost the export manifest %s to other writers or could not settle a write; run again later",
				j.t.Name, j.p, maxIdleRounds, j.mkey)
		}
		v, man, err := e.readManifest(ctx, j)
		if err != nil {
			return err
		}
		if c := man.Pending; c != nil {
			if c.By != e.id && e.cfg.TakeOverAfter > 0 && e.cfg.Now().Sub(time.UnixMilli(c.ClaimedMs)) < e.cfg.TakeOverAfter {
				j.res.Busy = true
				return fmt.Errorf("%w: topic %q partition %d: %s claimed offsets %d to %d at %s; left to it for up to %s",
					ErrBusy, j.t.Name, j.p, c.By, c.First, c.Last, time.UnixMilli(c.ClaimedMs).UTC().Format(time.RFC3339), e.cfg.TakeOverAfter)
			}
			r, adopted, err := e.finish(ctx, j, c, tr)
			if err != nil {
				return err
			}
			err = e.swap(ctx, j, v, man.commit(*r))
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return err
			}
			idle = 0
			e.account(j, r, adopted, tr)
			continue
		}
		s, gapEnd, ok := man.nextGap(cursor, j.to)
		if !ok {
			return nil
		}
		c, skipTo, err := e.plan(ctx, j, s, gapEnd)
		if err != nil {
			return err
		}
		if c == nil {
			cursor = skipTo // nothing to claim below skipTo
			idle = 0
			continue
		}
		err = e.swap(ctx, j, v, &Manifest{Version: ManifestVersion, Topic: man.Topic, TopicID: man.TopicID,
			Partition: man.Partition, Ranges: man.Ranges, Pending: c})
		if err != nil && !errors.Is(err, errConflict) {
			return err
		}
	}
}

// account adds a committed range to the run's result and progress.
func (e *Exporter) account(j *job, r *Range, adopted bool, tr *tracker) {
	if r.Lost != "" {
		j.res.Lost += r.Last - r.First + 1
		e.cfg.Logger.Warn("export: a claimed range was lost to retention", "topic", j.t.Name, "partition", j.p, "first", r.First, "last", r.Last, "why", r.Lost)
		return
	}
	j.res.Files++
	if adopted {
		j.res.Adopted++
	}
	j.res.Records += r.Rows
	j.res.ParquetBytes += r.Bytes
	j.res.SegmentBytes += r.SegmentBytes
	j.res.Misfits += r.Misfits
	tr.add(0, 0, r.Bytes, 1)
	e.cfg.Logger.Debug("export: file committed", "topic", j.t.Name, "partition", j.p, "key", r.Key, "rows", r.Rows, "bytes", r.Bytes)
}

// finish writes (or adopts) the file of claim c, and returns its range
// to commit. A claim whose records are gone becomes a lost range unless
// its file is stored.
func (e *Exporter) finish(ctx context.Context, j *job, c *Claim, tr *tracker) (*Range, bool, error) {
	if want := FileKey(e.cfg.Prefix, j.t.Name, c.Date, j.p, c.First, c.Last); c.Key != want {
		return nil, false, fmt.Errorf("export: export manifest %s claims key %q for offsets %d to %d; this export writes them to %q: refusing to write (was the manifest copied from another prefix?)",
			j.mkey, c.Key, c.First, c.Last, want)
	}
	r, adopted, err := e.writeFile(ctx, j, c, tr)
	if !errors.Is(err, errSourceGone) {
		return r, adopted, err
	}
	// Retention deleted the records. Whoever read them in time may have
	// stored the file: commit it then; else the range is lost.
	r, err = e.storedFile(ctx, j, c)
	if err != nil || r != nil {
		return r, r != nil, err
	}
	m, _ := j.manifests.Manifest(ctx)
	why := "retention deleted the records before their file was stored"
	if m != nil {
		why = fmt.Sprintf("retention deleted the records before their file was stored (the log starts at %d)", m.LogStartOffset)
	}
	return &Range{First: c.First, Last: c.Last, Date: c.Date, Claim: c.ID, CommittedMs: e.cfg.Now().UnixMilli(), Lost: why}, false, nil
}
