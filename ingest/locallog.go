package ingest

// The local log: a partition's recent data on local disk.
//
// Layout: one directory per partition holding files named by the base
// offset of their first record ("%020d.log"). A file is a sequence of
// frames: u32 payload length | u32 CRC32C of the payload | payload, where
// the payload is one batch in segment.AppendBatch encoding. Offsets are
// dense across frames and files. The last file is the active one; the
// others are closed ("rolled") and never change again, except that
// recovery may cut one at damage (it then becomes the active one).
//
// Invariants:
//   - Readers see only frames that were completely written (each file's
//     visible size advances after a whole frame is written).
//   - After a write or fsync error the log refuses further appends
//     (ErrLogFailed): the file may hold a partial frame, and after a failed
//     fsync the kernel may have dropped dirty pages. Reopening recovers.
//   - Recovery (OpenLocalLog) never fails on damaged data and never drops
//     it silently: it keeps the run of whole, valid, dense frames that
//     covers the sealed end (the offset below which the object store holds
//     everything), truncates the file it ends in at the first bad frame
//     (fsynced), removes every file outside the run (directory fsynced),
//     and reports each cut with the records and bytes it dropped and how
//     many of them were unsealed. A torn tail after a crash is the common
//     case of this.
//   - With FsyncAlways, Append returns only after its frame is fsynced;
//     concurrent appenders share fsyncs (group commit).
//   - No lock is held across a read from disk: Read and ReadFile take
//     the frames' positions and a reference to their files under the lock
//     and read outside it, so a slow read never blocks Append. A file stays
//     open until its last reference goes: DropBefore and Close remove it
//     from the log at once, and the last read in progress closes it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/vfs"
)

// FsyncPolicy says when the local log fsyncs.
type FsyncPolicy int

const (
	// FsyncInterval fsyncs in the background every FsyncInterval.
	FsyncInterval FsyncPolicy = iota
	// FsyncAlways fsyncs before Append returns.
	FsyncAlways
	// FsyncNever leaves flushing to the operating system.
	FsyncNever
)

func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncNever:
		return "never"
	}
	return "interval"
}

// ParseFsyncPolicy parses "always", "interval" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval", "":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("ingest: unknown fsync policy %q: use always, interval or never", s)
}

var (
	// ErrCorrupt is wrapped when a frame fails its check on a read after
	// the open (damage found by recovery is repaired, not returned).
	ErrCorrupt = errors.New("ingest: local log corrupt")
	// ErrLogFailed is wrapped by appends after a write or fsync error.
	ErrLogFailed = errors.New("ingest: local log failed after an I/O error; reopen it to recover")
	// ErrBelowLocalStart is returned by Read below the oldest local offset.
	ErrBelowLocalStart = errors.New("ingest: offset below the local log start")
	// ErrLogClosed is returned by calls on a closed LocalLog.
	ErrLogClosed = errors.New("ingest: local log closed")
)

const (
	frameHeader  = 8
	maxFrameSize = 64 << 20 // a batch larger than this is refused
	logSuffix    = ".log"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LocalLogOptions configures a LocalLog.
type LocalLogOptions struct {
	FS            vfs.FS           // default vfs.Default
	Dir           string           // required
	Fsync         FsyncPolicy      // default FsyncInterval
	FsyncInterval time.Duration    // default 50ms
	Clock         func() time.Time // default time.Now
}

// RecoveryReport says what OpenLocalLog found and what it repaired. The
// caller logs it (it implements slog.LogValuer; String is one sentence)
// and refills from its WAL the records that Cuts dropped at or past
// SealedEnd.
type RecoveryReport struct {
	Files          int   // files the log holds after recovery
	ValidBytes     int64 // bytes in those files
	TruncatedBytes int64 // damaged bytes cut from the end of the file the log now ends in
	// TruncatedFile is that file, when TruncatedBytes > 0.
	TruncatedFile string
	// DroppedStale counts undamaged files removed whole because everything
	// in them is below SealedEnd (the bucket holds it) and the log no
	// longer reaches them: the whole log ended below SealedEnd, or damage
	// cut them off from the rest.
	DroppedStale int
	SealedEnd    int64 // as given to OpenLocalLog
	NextOffset   int64 // where the log continues after recovery
	// Cuts lists each place where recovery found damage and cut the log,
	// in file order; empty when the log was intact.
	Cuts []Cut
}

// A Cut is one place where recovery found damage (a torn or corrupt frame,
// offsets that do not continue, a missing file) and what cutting the log
// there removed from local disk. Every removed byte and record is counted
// in exactly one Cut (or in DroppedStale): the Cut just before it in file
// order, or the first Cut when none is before it.
type Cut struct {
	File   string // the file where the damage is
	Pos    int64  // byte position of the damage in File
	Reason string // what is wrong there
	At     int64  // offset where good data stops: the first offset the damage took
	// From is the lowest offset this cut dropped (below At when a damaged
	// file below SealedEnd was removed whole).
	From int64
	// Records counts the offsets the local log no longer holds because of
	// this cut: records removed, and records found missing (a missing file,
	// or frames after the damaged one that still check out). The records
	// of a damaged frame at the very end of the log cannot be counted.
	Records int64
	Bytes   int64 // bytes truncated or removed
	// Unsealed counts the Records at or past SealedEnd: they are in no
	// segment, and only the WAL can restore those that were durable.
	Unsealed int64
}

func (c Cut) String() string {
	return fmt.Sprintf("%s in %s at byte %d (offset %d): dropped %d records (%d bytes) from offset %d, %d of them unsealed",
		c.Reason, c.File, c.Pos, c.At, c.Records, c.Bytes, c.From, c.Unsealed)
}

// Repaired reports whether recovery cut damaged data.
func (r RecoveryReport) Repaired() bool { return len(r.Cuts) > 0 }

// Dropped sums the Cuts: records, bytes, unsealed records, and the lowest
// offset dropped (-1 when nothing was).
func (r RecoveryReport) Dropped() (records, bytes, unsealed, from int64) {
	from = -1
	for _, c := range r.Cuts {
		records += c.Records
		bytes += c.Bytes
		unsealed += c.Unsealed
		if from < 0 || c.From < from {
			from = c.From
		}
	}
	return records, bytes, unsealed, from
}

// String is one sentence for a log line: what was dropped, how much of it
// is unsealed, and where the log now continues.
func (r RecoveryReport) String() string {
	if !r.Repaired() {
		return fmt.Sprintf("local log intact: %d files, %d bytes, next offset %d", r.Files, r.ValidBytes, r.NextOffset)
	}
	records, bytes, unsealed, from := r.Dropped()
	var why []string
	for _, c := range r.Cuts {
		why = append(why, fmt.Sprintf("%s in %s at byte %d", c.Reason, c.File, c.Pos))
	}
	return fmt.Sprintf("dropped %d records (%d bytes) of damaged local data from offset %d; %d of them unsealed (at or past the sealed end %d: the WAL holds those that were durable); the local log now continues at %d (%s)",
		records, bytes, from, unsealed, r.SealedEnd, r.NextOffset, strings.Join(why, "; "))
}

// LogValue makes the report a group of attributes for log/slog.
func (r RecoveryReport) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int("files", r.Files),
		slog.Int64("valid_bytes", r.ValidBytes),
		slog.Int64("sealed_end", r.SealedEnd),
		slog.Int64("next_offset", r.NextOffset),
	}
	if r.DroppedStale > 0 {
		attrs = append(attrs, slog.Int("dropped_stale_files", r.DroppedStale))
	}
	if r.Repaired() {
		records, bytes, unsealed, from := r.Dropped()
		cuts := make([]string, len(r.Cuts))
		for i, c := range r.Cuts {
			cuts[i] = c.String()
		}
		attrs = append(attrs,
			slog.Int64("dropped_records", records),
			slog.Int64("dropped_bytes", bytes),
			slog.Int64("dropped_unsealed", unsealed),
			slog.Int64("dropped_from", from),
			slog.Any("cuts", cuts))
	}
	return slog.GroupValue(attrs...)
}

var _ slog.LogValuer = RecoveryReport{}

// FileInfo describes one local file.
type FileInfo struct {
	Name        string
	BaseOffset  int64
	EndOffset   int64 // exclusive
	Bytes       int64
	Active      bool
	FirstAppend time.Time // zero when empty or unknown (recovered files)
}

type indexEntry struct {
	offset int64 // base offset of the batch
	pos    int64 // frame position in the file
}

type logFile struct {
	name  string
	base  int64
	end   int64 // exclusive; guarded by LocalLog.mu
	size  int64 // visible bytes; guarded by LocalLog.mu
	index []indexEntry
	f     vfs.File
	first time.Time
	// synced is the size known to be fsynced; guarded by LocalLog.syncMu.
	synced int64
	// refs counts the holders of f: one for the log while the file is in
	// LocalLog.files, one for each read in progress. The last release
	// closes f.
	refs atomic.Int32
}

// newLogFile returns f holding the log's reference.
func newLogFile(f *logFile) *logFile {
	f.refs.Store(1)
	return f
}

// acquire takes a reference for a read. Call it only under LocalLog.mu
// while f is in LocalLog.files (so the log's reference is still held).
func (f *logFile) acquire() { f.refs.Add(1) }

// release drops a reference and closes the file when it was the last.
func (f *logFile) release() error {
	if f.refs.Add(-1) == 0 {
		return f.f.Close()
	}
	return nil
}

// LocalLog is a partition's local log. Safe for concurrent use.
type LocalLog struct {
	opts LocalLogOptions

	// syncMu serializes fsyncs and file removal.
	syncMu sync.Mutex
	mu     sync.RWMutex // guards files, failed, closed, and logFile fields (not refs, which is atomic)
	files  []*logFile
	failed error
	closed bool

	// dirty: appended since the last interval fsync (FsyncInterval). The
	// first append that makes the log dirty arms syncTimer, which fsyncs
	// once FsyncInterval later: a log nobody appends to has no timer and
	// no goroutine.
	dirty atomic.Bool
	timer struct {
		sync.Mutex
		t       *time.Timer    // created at the first arming
		stopped bool           // Close began: never armed again
		running sync.WaitGroup // an armed or running interval fsync
	}
	once sync.Once
}

// frameBufs holds the scratch buffers appends encode frames in, shared by
// every LocalLog of the process: a log holds a buffer only while one of
// its appends is encoding and writing a frame, so an idle partition holds
// none (a buffer per log, grown to its largest batch, is what made memory
// grow with the partition count). Buffers over maxPooledFrame are left to
// the garbage collector.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

const maxPooledFrame = 4 << 20

func fileName(base int64) string { return fmt.Sprintf("%020d%s", base, logSuffix) }

// OpenLocalLog opens (creating if needed) the log in opts.Dir and recovers
// it. sealedEnd is where the sealed log ends: every offset below it is in
// the object store, so local data below it may be dropped (readers go to
// the bucket). The recovered log covers sealedEnd: it starts at or below it
// and continues at or past it.
//
// Recovery never fails because of damaged data, only on I/O errors (then
// the files are left as they are and a retry may succeed). It keeps the
// run of whole, valid, dense frames that covers sealedEnd and removes the
// rest, durably (a truncated file is fsynced, removals are made durable by
// a directory fsync), so a crash during repair only repeats it:
//   - Damage at or past sealedEnd cuts the log at the last good frame: that
//     file is truncated there and every later file is removed. The records
//     removed at or past sealedEnd are reported (Cut.Unsealed) for the
//     caller to refill from its WAL.
//   - Damage below sealedEnd drops the damaged file and every earlier one:
//     the bucket has their data. The log continues with the later files
//     when they reach back to sealedEnd.
//   - When no run of good data covers sealedEnd (the whole log ends below
//     it, or data is missing right after it), the log restarts empty at
//     sealedEnd.
func OpenLocalLog(opts LocalLogOptions, sealedEnd int64) (*LocalLog, RecoveryReport, error) {
	rep := RecoveryReport{SealedEnd: sealedEnd}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 50 * time.Millisecond
	}
	if opts.Dir == "" {
		return nil, rep, errors.New("ingest: local log: Dir is required")
	}
	if sealedEnd < 0 {
		return nil, rep, fmt.Errorf("ingest: local log %s: sealed end %d is negative", opts.Dir, sealedEnd)
	}
	if err := opts.FS.MkdirAll(opts.Dir); err != nil {
		return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
	}
	names, err := opts.FS.List(opts.Dir)
	if err != nil {
		return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
	}
	var bases []int64
	for _, n := range names {
		b, err := strconv.ParseInt(strings.TrimSuffix(n, logSuffix), 10, 64)
		if err != nil || b < 0 || n != fileName(b) {
			continue // not a log file of ours
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	var scans []*fileScan
	closeAll := func() {
		for _, s := range scans {
			s.f.Close()
		}
	}
	for _, base := range bases {
		s, err := scanFile(opts.FS, opts.Dir, base)
		if err != nil {
			closeAll()
			return nil, rep, fmt.Errorf("%w; nothing was changed in the local log: check the disk, then open it again", err)
		}
		scans = append(scans, s)
	}
	plan := planRepair(scans, sealedEnd)
	if err := plan.apply(opts.FS, opts.Dir, scans); err != nil {
		closeAll()
		return nil, rep, fmt.Errorf("ingest: repair local log %s: %w; the repair runs again at the next open", opts.Dir, err)
	}
	l := &LocalLog{opts: opts}
	rep.Cuts, rep.DroppedStale = plan.cuts, plan.stale
	if plan.kept >= 0 {
		for _, s := range scans[plan.first : plan.last+1] {
			l.files = append(l.files, newLogFile(&logFile{name: s.name, base: s.base, end: s.end, size: s.good, synced: s.good, index: s.index, f: s.f}))
			rep.Files++
			rep.ValidBytes += s.good
		}
		if last := scans[plan.last]; last.good < last.size {
			rep.TruncatedBytes, rep.TruncatedFile = last.size-last.good, last.name
		}
	} else {
		name := fileName(sealedEnd)
		f, err := opts.FS.Create(filepath.Join(opts.Dir, name))
		if err != nil {
			return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
		}
		l.files = []*logFile{newLogFile(&logFile{name: name, base: sealedEnd, end: sealedEnd, f: f})}
	}
	fail := func(err error) (*LocalLog, RecoveryReport, error) {
		for _, f := range l.files {
			f.f.Close()
		}
		return nil, rep, err
	}
	if err := opts.FS.SyncDir(opts.Dir); err != nil {
		return fail(fmt.Errorf("ingest: local log %s: %w", opts.Dir, err))
	}
	rep.NextOffset = l.files[len(l.files)-1].end
	return l, rep, nil
}

// fileScan is what recovery learned about one local file.
type fileScan struct {
	name  string
	base  int64
	f     vfs.File
	size  int64 // bytes in the file
	good  int64 // bytes of whole, valid, dense frames from the start
	end   int64 // offset after the last of them
	index []indexEntry
	bad   string // why the frame at byte `good` is not valid; "" when good == size
	// seen is the highest offset + 1 that a valid frame of the file shows,
	// looking past the damage too (>= end): the file held at least up to it.
	seen int64
}

// scanFile opens one file and checks its frames. Damage is recorded in the
// scan; only I/O errors are returned.
func scanFile(fs vfs.FS, dir string, base int64) (*fileScan, error) {
	name := fileName(base)
	path := filepath.Join(dir, name)
	f, err := fs.OpenAppend(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: open %s: %w", path, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ingest: open %s: %w", path, err)
	}
	s := &fileScan{name: name, base: base, f: f, size: size, end: base}
	var pos, badLen int64
	for pos < size {
		n, b, bad, err := frameAt(f, pos, size)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ingest: read %s at byte %d: %w", path, pos, err)
		}
		if bad == "" && b.BaseOffset != s.end {
			bad = fmt.Sprintf("batch at offset %d where %d was expected", b.BaseOffset, s.end)
		}
		if bad != "" {
			s.bad, badLen = bad, n
			break
		}
		s.index = append(s.index, indexEntry{offset: b.BaseOffset, pos: pos})
		s.end = b.LastOffset() + 1
		pos += frameHeader + n
	}
	s.good, s.seen = pos, s.end
	if s.bad == "" {
		return s, nil
	}
	// Past the bad frame, frames whose length is sane are stepped over,
	// and those that still check out show how far the file went (for the
	// report only: nothing past the damage is kept).
	if badLen == 0 {
		return s, nil
	}
	for pos += frameHeader + badLen; pos < size; {
		n, b, bad, err := frameAt(f, pos, size)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ingest: read %s at byte %d: %w", path, pos, err)
		}
		if n == 0 {
			break
		}
		if bad == "" && b.BaseOffset >= s.seen && b.LastOffset() >= b.BaseOffset {
			s.seen = b.LastOffset() + 1
		}
		pos += frameHeader + n
	}
	return s, nil
}

// frameAt checks the frame at pos of a file of size bytes. It returns the
// payload length when the header's length is plausible (0 otherwise), the
// decoded batch, and why the frame is not valid ("" when it is); err is
// for read errors only.
func frameAt(f vfs.File, pos, size int64) (n int64, b segment.Batch, bad string, err error) {
	if size-pos < frameHeader {
		return 0, b, fmt.Sprintf("short frame header (%d bytes)", size-pos), nil
	}
	var hdr [frameHeader]byte
	if _, err := f.ReadAt(hdr[:], pos); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, b, "file ends inside a frame header", nil
		}
		return 0, b, "", err
	}
	n = int64(binary.LittleEndian.Uint32(hdr[:]))
	if n == 0 || n > maxFrameSize || n > size-pos-frameHeader {
		return 0, b, fmt.Sprintf("frame length %d with %d bytes left in the file", n, size-pos-frameHeader), nil
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, pos+frameHeader); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, b, "file ends inside a frame", nil
		}
		return 0, b, "", err
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
		return n, b, "crc mismatch", nil
	}
	b, used, derr := segment.DecodeBatch(payload)
	if derr != nil || int64(used) != n || len(b.Records) == 0 {
		return n, segment.Batch{}, fmt.Sprintf("undecodable batch (%v)", derr), nil
	}
	return n, b, "", nil
}

// repairPlan is what recovery keeps: files first..last (of the scans),
// the last one truncated at its first bad frame, or nothing (kept < 0:
// the log restarts empty at sealedEnd).
type repairPlan struct {
	kept        int // index of the kept run, -1 for none
	first, last int // its files
	cuts        []Cut
	stale       int
	remove      []int // scans to remove
}

// planRepair splits the files into runs of good, dense data (a run ends at
// a bad frame or where the next file does not continue it), keeps the run
// that covers sealedEnd, and counts what the rest held.
func planRepair(scans []*fileScan, sealedEnd int64) repairPlan {
	type run struct{ first, last, cutBefore, cutAfter int }
	var runs []run
	for i, s := range scans {
		if i == 0 || scans[i-1].bad != "" || s.base != scans[i-1].end {
			runs = append(runs, run{first: i, last: i, cutBefore: -1, cutAfter: -1})
		} else {
			runs[len(runs)-1].last = i
		}
	}
	p := repairPlan{kept: -1}
	covering := -1 // the first run that reaches sealedEnd
	for j, r := range runs {
		if scans[r.last].end >= sealedEnd {
			covering = j
			if scans[r.first].base <= sealedEnd {
				p.kept, p.first, p.last = j, r.first, r.last
			}
			break
		}
	}
	if covering == 0 && p.kept < 0 {
		// Data is missing right after sealedEnd.
		s := scans[0]
		p.cuts = append(p.cuts, Cut{File: s.name, Reason: fmt.Sprintf("local data starts at offset %d, after the sealed end %d", s.base, sealedEnd), At: sealedEnd, From: sealedEnd})
		runs[0].cutBefore = 0
	}
	for j := range runs {
		r := &runs[j]
		if j > 0 {
			r.cutBefore = runs[j-1].cutAfter
		}
		if last := scans[r.last]; last.bad != "" {
			p.cuts = append(p.cuts, Cut{File: last.name, Pos: last.good, Reason: last.bad, At: last.end, From: last.end})
			r.cutAfter = len(p.cuts) - 1
		} else if j+1 < len(runs) {
			next := scans[runs[j+1].first]
			p.cuts = append(p.cuts, Cut{File: next.name, Reason: fmt.Sprintf("file starts at offset %d but the previous file ends at %d", next.base, last.end), At: last.end, From: last.end})
			r.cutAfter = len(p.cuts) - 1
		}
	}
	// drop counts offsets [lo, hi) and bytes in cut c. Offsets missing
	// between files count like removed ones; counted keeps overlapping
	// files from being counted twice.
	counted := int64(math.MinInt64)
	drop := func(c int, lo, hi, bytes int64) {
		lo = max(lo, counted)
		cut := &p.cuts[c]
		if hi > lo {
			cut.Records += hi - lo
			cut.Unsealed += max(0, hi-max(lo, sealedEnd))
			cut.From = min(cut.From, lo)
			counted = hi
		}
		cut.Bytes += bytes
	}
	if covering == 0 && p.kept < 0 {
		drop(0, sealedEnd, scans[0].base, 0)
	}
	for j, r := range runs {
		for i := r.first; i <= r.last; i++ {
			s := scans[i]
			known := s.seen // the file held at least up to here
			if i+1 < len(scans) {
				known = max(known, scans[i+1].base)
			}
			switch {
			case j == p.kept:
				counted = max(counted, s.end)
				if i == r.last && (s.good < s.size || known > s.end) {
					drop(r.cutAfter, s.end, known, s.size-s.good)
				}
			case s.bad == "" && known <= sealedEnd:
				p.stale++
				p.remove = append(p.remove, i)
				counted = max(counted, known)
			default:
				c := r.cutBefore
				if c < 0 {
					c = r.cutAfter
				}
				p.remove = append(p.remove, i)
				if c < 0 { // not reached: a lone, intact run is kept or stale
					p.stale++
					continue
				}
				drop(c, s.base, known, s.size)
			}
		}
	}
	return p
}

// apply carries the plan out: the kept run's last file is truncated at its
// first bad frame and fsynced, then every other file is closed and removed.
// The caller fsyncs the directory. A crash at any step leaves files that
// the next open repairs to the same log.
func (p repairPlan) apply(fs vfs.FS, dir string, scans []*fileScan) error {
	if p.kept >= 0 {
		if s := scans[p.last]; s.good < s.size {
			if err := s.f.Truncate(s.good); err != nil {
				return fmt.Errorf("truncate %s at byte %d: %w", s.name, s.good, err)
			}
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("fsync %s after truncating it: %w", s.name, err)
			}
		}
	}
	for _, i := range p.remove {
		s := scans[i]
		s.f.Close()
		if err := fs.Remove(filepath.Join(dir, s.name)); err != nil {
			return fmt.Errorf("remove %s: %w", s.name, err)
		}
	}
	return nil
}

// armSync schedules the interval fsync of a log that just became dirty.
func (l *LocalLog) armSync() {
	l.timer.Lock()
	defer l.timer.Unlock()
	if l.timer.stopped {
		return
	}
	l.timer.running.Add(1)
	if l.timer.t == nil {
		l.timer.t = time.AfterFunc(l.opts.FsyncInterval, l.intervalSync)
	} else {
		l.timer.t.Reset(l.opts.FsyncInterval)
	}
}

// intervalSync is the timer's fsync. An append during it makes the log
// dirty again and arms the timer anew.
func (l *LocalLog) intervalSync() {
	defer l.timer.running.Done()
	l.dirty.Store(false)
	l.Sync() // an error fails the log (ErrLogFailed): the next append reports it
}

// stopSync stops the interval fsync and waits for one in progress.
func (l *LocalLog) stopSync() {
	l.timer.Lock()
	l.timer.stopped = true
	if l.timer.t != nil && l.timer.t.Stop() {
		l.timer.running.Done() // armed, and now never runs
	}
	l.timer.Unlock()
	l.timer.running.Wait()
}

// BufferBytes is the memory the log holds for appends between them: 0, as
// frames are encoded in buffers shared by every log (frameBufs) and held
// only during an append (and, for appendShared, until the WAL has copied
// the encoding, within the same Partition.Write). Tests check it stays so.
func (l *LocalLog) BufferBytes() int { return 0 }

func (l *LocalLog) active() *logFile { return l.files[len(l.files)-1] }

// Append assigns the batch the next offsets (setting b.BaseOffset and each
// record's Offset), writes it as one frame, and fsyncs per the policy.
func (l *LocalLog) Append(b *segment.Batch) (int64, error) {
	base, _, release, err := l.append(b, true)
	release()
	return base, err
}

// appendShared is Append that also hands back the batch's encoding
// (segment.AppendBatch of b with its offsets, the frame's payload) so the
// WAL can copy it instead of encoding the batch a second time. enc lies
// in a buffer shared by every log (frameBufs): it is valid only until
// release, which the caller must call exactly once, error or not, and
// soon (the buffer is held, not counted in BufferBytes).
func (l *LocalLog) appendShared(b *segment.Batch) (base int64, enc []byte, release func(), err error) {
	return l.append(b, true)
}

// AppendAt appends a batch that already has its offsets (recovery copies
// a tail from elsewhere); it must start at NextOffset.
func (l *LocalLog) AppendAt(b *segment.Batch) error {
	_, _, release, err := l.append(b, false)
	release()
	return err
}

func noRelease() {}

// append writes b as one frame and returns, with its base offset, the
// frame's payload (b's encoding) in a pooled buffer that is valid until
// release; release is never nil.
func (l *LocalLog) append(b *segment.Batch, assign bool) (int64, []byte, func(), error) {
	if len(b.Records) == 0 {
		return 0, nil, noRelease, errors.New("ingest: empty batch")
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, nil, noRelease, ErrLogClosed
	}
	if l.failed != nil {
		l.mu.Unlock()
		return 0, nil, noRelease, l.failed
	}
	a := l.active()
	base := a.end
	if !assign && b.BaseOffset != base {
		l.mu.Unlock()
		return 0, nil, noRelease, fmt.Errorf("ingest: batch at offset %d appended where the log continues at %d", b.BaseOffset, base)
	}
	b.BaseOffset = base
	for i := range b.Records {
		b.Records[i].Offset = base + int64(i)
	}
	bp := frameBufs.Get().(*[]byte)
	buf := append((*bp)[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	buf = segment.AppendBatch(buf, b)
	*bp = buf
	putBuf := func() {
		if bp != nil && cap(*bp) <= maxPooledFrame {
			frameBufs.Put(bp)
		}
		bp = nil // a second call must not pool the buffer twice
	}
	payload := buf[frameHeader:]
	if len(payload) > maxFrameSize {
		l.mu.Unlock()
		putBuf()
		return 0, nil, noRelease, fmt.Errorf("ingest: batch of %d bytes is over the %d-byte limit", len(payload), maxFrameSize)
	}
	binary.LittleEndian.PutUint32(buf, uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(payload, castagnoli))
	_, err := a.f.Write(buf)
	frame := int64(len(buf))
	if err != nil {
		putBuf()
		l.failed = fmt.Errorf("%w: write %s: %v", ErrLogFailed, a.name, err)
		l.mu.Unlock()
		return 0, nil, noRelease, l.failed
	}
	a.index = append(a.index, indexEntry{offset: base, pos: a.size})
	a.size += frame
	a.end = base + int64(len(b.Records))
	if a.first.IsZero() {
		a.first = l.opts.Clock()
	}
	end := a.size
	l.mu.Unlock()

	switch l.opts.Fsync {
	case FsyncAlways:
		if err := l.syncTo(a, end); err != nil {
			putBuf()
			return 0, nil, noRelease, err
		}
	case FsyncInterval:
		if !l.dirty.Swap(true) {
			l.armSync()
		}
	}
	return base, payload, putBuf, nil
}

// syncTo fsyncs f unless a concurrent fsync already covered `end`.
func (l *LocalLog) syncTo(f *logFile, end int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if f.synced >= end {
		return nil // another appender's fsync covered us
	}
	l.mu.RLock()
	size, failed := f.size, l.failed
	l.mu.RUnlock()
	if failed != nil {
		return failed
	}
	if err := f.f.Sync(); err != nil {
		l.mu.Lock()
		l.failed = fmt.Errorf("%w: fsync %s: %v", ErrLogFailed, f.name, err)
		err = l.failed
		l.mu.Unlock()
		return err
	}
	f.synced = size
	return nil
}

// Sync fsyncs the active file.
func (l *LocalLog) Sync() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrLogClosed
	}
	a := l.active()
	end := a.size
	l.mu.RUnlock()
	return l.syncTo(a, end)
}

// NextOffset is the offset the next appended record gets.
func (l *LocalLog) NextOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().end
}

// StartOffset is the oldest offset on local disk.
func (l *LocalLog) StartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.files[0].base
}

// Bytes is the total size of the local files.
func (l *LocalLog) Bytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, f := range l.files {
		n += f.size
	}
	return n
}

// Files describes the local files in offset order; the last is active.
func (l *LocalLog) Files() []FileInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]FileInfo, len(l.files))
	for i, f := range l.files {
		out[i] = FileInfo{Name: f.name, BaseOffset: f.base, EndOffset: f.end, Bytes: f.size, Active: i == len(l.files)-1, FirstAppend: f.first}
	}
	return out
}

// readFrame reads and decodes the frame at pos of f, whose visible size is
// size.
func readFrame(f *logFile, pos, size int64) (segment.Batch, int64, error) {
	var hdr [frameHeader]byte
	if _, err := f.f.ReadAt(hdr[:], pos); err != nil {
		return segment.Batch{}, 0, fmt.Errorf("ingest: read %s at %d: %w", f.name, pos, err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[:]))
	if n > size-pos-frameHeader {
		return segment.Batch{}, 0, fmt.Errorf("%w: %s at %d: frame runs past the end", ErrCorrupt, f.name, pos)
	}
	payload := make([]byte, n)
	if _, err := f.f.ReadAt(payload, pos+frameHeader); err != nil && !(errors.Is(err, io.EOF) && int64(len(payload)) == n) {
		return segment.Batch{}, 0, fmt.Errorf("ingest: read %s at %d: %w", f.name, pos, err)
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
		return segment.Batch{}, 0, fmt.Errorf("%w: %s at %d: crc mismatch", ErrCorrupt, f.name, pos)
	}
	b, _, err := segment.DecodeBatch(payload)
	if err != nil {
		return segment.Batch{}, 0, fmt.Errorf("%w: %s at %d: %v", ErrCorrupt, f.name, pos, err)
	}
	return b, pos + frameHeader + n, nil
}

// Read returns whole batches from the one holding `from` on, until about
// maxBytes of frames (always at least one batch when data >= from exists).
// It holds the log's lock only to pick the frames; it reads them after
// releasing it, so it never blocks Append, and the files it reads stay open
// until it is done even when DropBefore or Close removes them meanwhile.
func (l *LocalLog) Read(from int64, maxBytes int) ([]segment.Batch, error) {
	frames, err := l.pickFrames(from, maxBytes)
	defer func() {
		for i, fr := range frames {
			if i == 0 || frames[i-1].f != fr.f {
				fr.f.release() // a read-only handle by now: nothing to lose
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	var out []segment.Batch
	for _, fr := range frames {
		b, _, err := readFrame(fr.f, fr.pos, fr.size)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// frameRef is a frame that Read will read: its file (holding a reference
// for the read), its position, and the file's visible size when picked.
type frameRef struct {
	f         *logFile
	pos, size int64
}

// pickFrames chooses, under the lock, the frames Read returns, and takes
// one reference on each file they are in (frames of a file are adjacent).
func (l *LocalLog) pickFrames(from int64, maxBytes int) ([]frameRef, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrLogClosed
	}
	if from < l.files[0].base {
		return nil, fmt.Errorf("%w: %d < %d", ErrBelowLocalStart, from, l.files[0].base)
	}
	fi := sort.Search(len(l.files), func(i int) bool { return l.files[i].end > from })
	var frames []frameRef
	read := 0
	for ; fi < len(l.files); fi++ {
		f := l.files[fi]
		// Last batch starting at or before from.
		bi := sort.Search(len(f.index), func(i int) bool { return f.index[i].offset > from }) - 1
		bi = max(bi, 0)
		if bi < len(f.index) {
			f.acquire()
		}
		for ; bi < len(f.index); bi++ {
			pos, next := f.index[bi].pos, f.size
			if bi+1 < len(f.index) {
				next = f.index[bi+1].pos
			}
			frames = append(frames, frameRef{f: f, pos: pos, size: f.size})
			read += int(next - pos)
			if read >= maxBytes {
				return frames, nil
			}
		}
	}
	return frames, nil
}

// ReadFile calls fn for every batch of the file that starts at base.
func (l *LocalLog) ReadFile(base int64, fn func(b *segment.Batch) error) error {
	l.mu.RLock()
	var f *logFile
	for _, c := range l.files {
		if c.base == base {
			f = c
		}
	}
	if f == nil {
		l.mu.RUnlock()
		return fmt.Errorf("ingest: no local file starts at %d", base)
	}
	idx, size := f.index, f.size
	f.acquire()
	l.mu.RUnlock()
	defer f.release() // a read-only handle by now: nothing to lose
	// Closed files never change; the active one only grows, and the
	// snapshot of index and size covers whole frames.
	for _, e := range idx {
		b, _, err := readFrame(f, e.pos, size)
		if err != nil {
			return err
		}
		if err := fn(&b); err != nil {
			return err
		}
	}
	return nil
}

// Roll fsyncs and closes the active file to appends and starts a new one at
// NextOffset. It does nothing when the active file is empty.
func (l *LocalLog) Roll() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrLogClosed
	}
	if l.failed != nil {
		return l.failed
	}
	a := l.active()
	if a.size == 0 {
		return nil
	}
	if err := a.f.Sync(); err != nil {
		l.failed = fmt.Errorf("%w: fsync %s: %v", ErrLogFailed, a.name, err)
		return l.failed
	}
	a.synced = a.size
	name := fileName(a.end)
	f, err := l.opts.FS.Create(filepath.Join(l.opts.Dir, name))
	if err != nil {
		return fmt.Errorf("ingest: roll: %w", err)
	}
	if err := l.opts.FS.SyncDir(l.opts.Dir); err != nil {
		f.Close()
		l.failed = fmt.Errorf("%w: fsync dir %s: %v", ErrLogFailed, l.opts.Dir, err)
		return l.failed
	}
	l.files = append(l.files, newLogFile(&logFile{name: name, base: a.end, end: a.end, f: f}))
	return nil
}

// DropBefore deletes closed files that end at or below offset, oldest
// first, and returns how many it deleted.
func (l *LocalLog) DropBefore(offset int64) (int, error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrLogClosed
	}
	n := 0
	for len(l.files) > 1 && l.files[0].end <= offset {
		f := l.files[0]
		f.release() // a read in progress keeps it open until it is done
		if err := l.opts.FS.Remove(filepath.Join(l.opts.Dir, f.name)); err != nil {
			return n, fmt.Errorf("ingest: drop %s: %w", f.name, err)
		}
		l.files = l.files[1:]
		n++
	}
	if n > 0 {
		if err := l.opts.FS.SyncDir(l.opts.Dir); err != nil {
			return n, fmt.Errorf("ingest: drop: fsync dir: %w", err)
		}
	}
	return n, nil
}

// Close fsyncs the active file (unless the policy is FsyncNever) and closes
// every file. It is idempotent.
func (l *LocalLog) Close() error {
	var err error
	l.once.Do(func() {
		l.stopSync()
		if l.opts.Fsync != FsyncNever {
			if e := l.Sync(); e != nil && !errors.Is(e, ErrLogFailed) {
				err = e
			}
		}
		l.syncMu.Lock()
		l.mu.Lock()
		l.closed = true
		for _, f := range l.files {
			// A read in progress closes the file when it is done.
			if e := f.release(); e != nil && err == nil {
				err = e
			}
		}
		l.mu.Unlock()
		l.syncMu.Unlock()
	})
	return err
}
