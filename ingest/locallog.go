package ingest

// The local log: a partition's recent data on local disk.
//
// Layout: one directory per partition holding files named by the base
// offset of their first record ("%020d.log"). A file is a sequence of
// frames: u32 payload length | u32 CRC32C of the payload | payload, where
// the payload is one batch in segment.AppendBatch encoding. Offsets are
// dense across frames and files. The last file is the active one; the
// others are closed ("rolled") and never change again.
//
// Invariants:
//   - Readers see only frames that were completely written (each file's
//     visible size advances after a whole frame is written).
//   - After a write or fsync error the log refuses further appends
//     (ErrLogFailed): the file may hold a partial frame, and after a failed
//     fsync the kernel may have dropped dirty pages. Reopening recovers.
//   - Recovery truncates the active file at its first torn or corrupt frame
//     and fsyncs the truncation; a bad frame in a closed file is reported
//     as corruption (ErrCorrupt), never silently dropped.
//   - With FsyncAlways, Append returns only after its frame is fsynced;
//     concurrent appenders share fsyncs (group commit).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
	// ErrCorrupt is wrapped when a closed local file holds a bad frame.
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

// RecoveryReport says what OpenLocalLog found.
type RecoveryReport struct {
	Files          int
	ValidBytes     int64
	TruncatedBytes int64  // torn or corrupt tail cut from the active file
	TruncatedFile  string // which file, when TruncatedBytes > 0
	DroppedStale   int    // files dropped because they ended below startOffset
	NextOffset     int64
}

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
}

// LocalLog is a partition's local log. Safe for concurrent use.
type LocalLog struct {
	opts LocalLogOptions

	// syncMu serializes fsyncs and file removal.
	syncMu sync.Mutex
	mu     sync.RWMutex // guards files, failed, closed, and logFile fields
	files  []*logFile
	failed error
	closed bool
	buf    []byte // frame scratch; guarded by mu

	dirty atomic.Bool
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func fileName(base int64) string { return fmt.Sprintf("%020d%s", base, logSuffix) }

// OpenLocalLog opens (creating if needed) the log in opts.Dir and recovers
// it. startOffset is where an empty log starts; a log whose data ends below
// it is stale (the bucket holds newer data) and is dropped.
func OpenLocalLog(opts LocalLogOptions, startOffset int64) (*LocalLog, RecoveryReport, error) {
	var rep RecoveryReport
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
	if err := opts.FS.MkdirAll(opts.Dir); err != nil {
		return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
	}
	names, err := opts.FS.List(opts.Dir)
	if err != nil {
		return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
	}
	l := &LocalLog{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	var bases []int64
	for _, n := range names {
		if !strings.HasSuffix(n, logSuffix) {
			continue
		}
		b, err := strconv.ParseInt(strings.TrimSuffix(n, logSuffix), 10, 64)
		if err != nil || b < 0 {
			continue
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	fail := func(err error) (*LocalLog, RecoveryReport, error) {
		for _, f := range l.files {
			f.f.Close()
		}
		return nil, rep, err
	}
	for i, base := range bases {
		last := i == len(bases)-1
		lf, err := l.recoverFile(base, last, &rep)
		if err != nil {
			return fail(err)
		}
		if len(l.files) > 0 && l.files[len(l.files)-1].end != lf.base {
			lf.f.Close()
			return fail(fmt.Errorf("%w: %s starts at %d but the previous file ends at %d", ErrCorrupt, lf.name, lf.base, l.files[len(l.files)-1].end))
		}
		l.files = append(l.files, lf)
		rep.Files++
		rep.ValidBytes += lf.size
	}
	// Reconcile with where the bucket says the log continues.
	if n := len(l.files); n > 0 && l.files[n-1].end < startOffset {
		rep.DroppedStale = n
		for _, f := range l.files {
			f.f.Close()
			if err := opts.FS.Remove(filepath.Join(opts.Dir, f.name)); err != nil {
				return nil, rep, fmt.Errorf("ingest: drop stale %s: %w", f.name, err)
			}
		}
		l.files = nil
	} else if n > 0 && l.files[0].base > startOffset {
		return fail(fmt.Errorf("%w: local data starts at %d but the sealed log ends at %d: records in between are missing", ErrCorrupt, l.files[0].base, startOffset))
	}
	if len(l.files) == 0 {
		f, err := opts.FS.Create(filepath.Join(opts.Dir, fileName(startOffset)))
		if err != nil {
			return nil, rep, fmt.Errorf("ingest: local log %s: %w", opts.Dir, err)
		}
		l.files = []*logFile{{name: fileName(startOffset), base: startOffset, end: startOffset, f: f}}
	}
	if err := opts.FS.SyncDir(opts.Dir); err != nil {
		return fail(fmt.Errorf("ingest: local log %s: %w", opts.Dir, err))
	}
	rep.NextOffset = l.files[len(l.files)-1].end
	if opts.Fsync == FsyncInterval {
		go l.syncLoop()
	} else {
		close(l.done)
	}
	return l, rep, nil
}

// recoverFile scans one file, building its index. In the last file a bad
// frame truncates the file; elsewhere it is corruption.
func (l *LocalLog) recoverFile(base int64, last bool, rep *RecoveryReport) (*logFile, error) {
	name := fileName(base)
	path := filepath.Join(l.opts.Dir, name)
	f, err := l.opts.FS.OpenAppend(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: open %s: %w", path, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ingest: open %s: %w", path, err)
	}
	lf := &logFile{name: name, base: base, end: base, f: f}
	var pos int64
	hdr := make([]byte, frameHeader)
	var bad string
	for pos < size {
		if size-pos < frameHeader {
			bad = "short frame header"
			break
		}
		if _, err := f.ReadAt(hdr, pos); err != nil {
			bad = err.Error()
			break
		}
		n := int64(binary.LittleEndian.Uint32(hdr))
		if n == 0 || n > maxFrameSize || n > size-pos-frameHeader {
			bad = fmt.Sprintf("frame length %d", n)
			break
		}
		payload := make([]byte, n)
		if _, err := f.ReadAt(payload, pos+frameHeader); err != nil && !errors.Is(err, io.EOF) {
			bad = err.Error()
			break
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			bad = "crc mismatch"
			break
		}
		b, used, err := segment.DecodeBatch(payload)
		if err != nil || int64(used) != n || len(b.Records) == 0 {
			bad = fmt.Sprintf("undecodable batch (%v)", err)
			break
		}
		if b.BaseOffset != lf.end {
			bad = fmt.Sprintf("batch at offset %d where %d was expected", b.BaseOffset, lf.end)
			break
		}
		lf.index = append(lf.index, indexEntry{offset: b.BaseOffset, pos: pos})
		lf.end = b.LastOffset() + 1
		pos += frameHeader + n
	}
	if bad != "" {
		if !last {
			f.Close()
			return nil, fmt.Errorf("%w: %s at byte %d: %s", ErrCorrupt, path, pos, bad)
		}
		if err := f.Truncate(pos); err != nil {
			f.Close()
			return nil, fmt.Errorf("ingest: truncate torn tail of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("ingest: truncate torn tail of %s: %w", path, err)
		}
		rep.TruncatedBytes += size - pos
		rep.TruncatedFile = name
	}
	lf.size, lf.synced = pos, pos
	return lf, nil
}

func (l *LocalLog) syncLoop() {
	defer close(l.done)
	t := time.NewTicker(l.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if l.dirty.Swap(false) {
				l.Sync()
			}
		}
	}
}

func (l *LocalLog) active() *logFile { return l.files[len(l.files)-1] }

// Append assigns the batch the next offsets (setting b.BaseOffset and each
// record's Offset), writes it as one frame, and fsyncs per the policy.
func (l *LocalLog) Append(b *segment.Batch) (int64, error) {
	return l.append(b, true)
}

// AppendAt appends a batch that already has its offsets (recovery copies
// a tail from elsewhere); it must start at NextOffset.
func (l *LocalLog) AppendAt(b *segment.Batch) error {
	_, err := l.append(b, false)
	return err
}

func (l *LocalLog) append(b *segment.Batch, assign bool) (int64, error) {
	if len(b.Records) == 0 {
		return 0, errors.New("ingest: empty batch")
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrLogClosed
	}
	if l.failed != nil {
		l.mu.Unlock()
		return 0, l.failed
	}
	a := l.active()
	base := a.end
	if !assign && b.BaseOffset != base {
		l.mu.Unlock()
		return 0, fmt.Errorf("ingest: batch at offset %d appended where the log continues at %d", b.BaseOffset, base)
	}
	b.BaseOffset = base
	for i := range b.Records {
		b.Records[i].Offset = base + int64(i)
	}
	l.buf = append(l.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	l.buf = segment.AppendBatch(l.buf, b)
	payload := l.buf[frameHeader:]
	if len(payload) > maxFrameSize {
		l.mu.Unlock()
		return 0, fmt.Errorf("ingest: batch of %d bytes is over the %d-byte limit", len(payload), maxFrameSize)
	}
	binary.LittleEndian.PutUint32(l.buf, uint32(len(payload)))
	binary.LittleEndian.PutUint32(l.buf[4:], crc32.Checksum(payload, castagnoli))
	if _, err := a.f.Write(l.buf); err != nil {
		l.failed = fmt.Errorf("%w: write %s: %v", ErrLogFailed, a.name, err)
		l.mu.Unlock()
		return 0, l.failed
	}
	a.index = append(a.index, indexEntry{offset: base, pos: a.size})
	a.size += int64(len(l.buf))
	a.end = base + int64(len(b.Records))
	if a.first.IsZero() {
		a.first = l.opts.Clock()
	}
	end := a.size
	l.mu.Unlock()

	switch l.opts.Fsync {
	case FsyncAlways:
		if err := l.syncTo(a, end); err != nil {
			return 0, err
		}
	case FsyncInterval:
		l.dirty.Store(true)
	}
	return base, nil
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
func (l *LocalLog) Read(from int64, maxBytes int) ([]segment.Batch, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrLogClosed
	}
	if from < l.files[0].base {
		return nil, fmt.Errorf("%w: %d < %d", ErrBelowLocalStart, from, l.files[0].base)
	}
	fi := sort.Search(len(l.files), func(i int) bool { return l.files[i].end > from })
	var out []segment.Batch
	read := 0
	for ; fi < len(l.files); fi++ {
		f := l.files[fi]
		// Last batch starting at or before from.
		bi := sort.Search(len(f.index), func(i int) bool { return f.index[i].offset > from }) - 1
		bi = max(bi, 0)
		for ; bi < len(f.index); bi++ {
			pos := f.index[bi].pos
			b, next, err := readFrame(f, pos, f.size)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
			read += int(next - pos)
			if read >= maxBytes {
				return out, nil
			}
		}
	}
	return out, nil
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
	l.mu.RUnlock()
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
	l.files = append(l.files, &logFile{name: name, base: a.end, end: a.end, f: f})
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
		f.f.Close()
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
		close(l.stop)
		<-l.done
		if l.opts.Fsync != FsyncNever {
			if e := l.Sync(); e != nil && !errors.Is(e, ErrLogFailed) {
				err = e
			}
		}
		l.syncMu.Lock()
		l.mu.Lock()
		l.closed = true
		for _, f := range l.files {
			if e := f.f.Close(); e != nil && err == nil {
				err = e
			}
		}
		l.mu.Unlock()
		l.syncMu.Unlock()
	})
	return err
}
