package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Names the file store keeps for itself in its root. Keys whose first
// segment starts with fileReserved are refused (ErrInvalidKey) and never
// listed.
const (
	fileReserved = ".strata-"
	fileTmpDir   = ".strata-tmp"  // temporary files being written
	fileLockName = ".strata-lock" // flock'ed by publishing writers
	// fileTmpMaxAge: temporary files older than this are left by crashed
	// writers and removed when a store is opened.
	fileTmpMaxAge = time.Hour
)

// FileStore is the embedded file:// object store: one file per object,
// at the key's path ('/' separated) under a root directory.
//
// Publishing: a write streams into a temporary file in the root's
// .strata-tmp directory, stamps it (see ETags), fsyncs it, and then
// publishes it: by rename (Put, PutIfMatch) or by link(2) (PutIfAbsent: the
// link fails atomically if the name exists, across processes), and fsyncs
// the parent directory (and any directory it had to create) before
// returning. A reader sees the whole old file or the whole new one.
//
// Serialization: publishes and deletes hold an in-process mutex and an
// flock on .strata-lock in the root, so the check-then-rename of PutIfMatch
// is linearizable across all processes sharing the directory on one machine
// (not across machines: do not share the directory over NFS). The body is
// written and fsynced before the lock is taken, so writers only serialize
// on the rename and the directory fsync.
//
// ETags: "<inode>-<size>-<mtime ns>" of the published file, in hex: no
// content is hashed. Inode numbers are reused after a delete, and kernel
// file timestamps are only as fine as the clock tick, so every temporary
// file's mtime is set explicitly to a nanosecond stamp that strictly
// increases within the process; a version that reuses a freed inode was
// stamped after the earlier one. This relies on a filesystem that keeps
// nanosecond mtimes (ext4 with 256-byte inodes, XFS, btrfs, ZFS, tmpfs) and
// on a wall clock that does not step back between two versions of one key.
//
// Differences from S3, inherent to a directory tree: a key cannot be both
// an object and a prefix of other keys ("a" and "a/b"); such a write fails
// with ErrInvalidKey. Keys starting with ".strata-" are reserved. Deleting
// the last object of a directory removes the empty directories above it.
//
// Reads work until and after Close; writes after Close fail. Safe for
// concurrent use.
type FileStore struct {
	root string
	tmp  string

	// mu serializes this process's publishes and deletes; the flock on
	// lock serializes them with other processes.
	mu struct {
		sync.Mutex
		lock   *os.File // the open .strata-lock; nil after Close
		closed bool
	}
}

var _ Store = (*FileStore)(nil)

// NewFileStore opens a file store rooted at dir, creating the directory if
// needed, and removes temporary files that crashed writers left behind
// more than an hour ago.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("tier: file store: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	s := &FileStore{root: abs, tmp: filepath.Join(abs, fileTmpDir)}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(abs, fileLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	s.mu.lock = lock
	s.removeStaleTemps()
	return s, nil
}

// removeStaleTemps deletes old temporary files; failures are ignored (the
// files are garbage, not data).
func (s *FileStore) removeStaleTemps() {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > fileTmpMaxAge {
			os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
}

// Root is the store's directory.
func (s *FileStore) Root() string { return s.root }

// Close releases the lock file. It is idempotent; later writes fail.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	s.mu.closed = true
	err := s.mu.lock.Close()
	s.mu.lock = nil
	return err
}

// path maps a key to its file.
func (s *FileStore) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(key, fileReserved) {
		return "", fmt.Errorf("%w %q: names starting with %q are reserved by the file store", ErrInvalidKey, key, fileReserved)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func etagOf(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.Size(), fi.ModTime().UnixNano())
}

func infoOf(key string, fi os.FileInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: fi.Size(), ETag: etagOf(fi), LastModified: fi.ModTime()}
}

// lastStamp is the last mtime given to a temporary file, in ns.
var lastStamp atomic.Int64

// nextStamp is the wall clock, made strictly increasing within the process.
func nextStamp() time.Time {
	for {
		last, now := lastStamp.Load(), time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if lastStamp.CompareAndSwap(last, now) {
			return time.Unix(0, now)
		}
	}
}

func notFound(op, key string) error { return fmt.Errorf("tier: %s %s: %w", op, key, ErrNotFound) }

// readErr maps an error of opening or stating an object's file.
func readErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return notFound(op, key) // ENOTDIR: an ancestor is an object
	}
	return fmt.Errorf("tier: %s %s: %w", op, key, err)
}

// open opens the object's file for reading.
func (s *FileStore) open(ctx context.Context, op, key string) (*os.File, os.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	p, err := s.path(key)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, readErr(op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, readErr(op, key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, notFound(op, key) // a directory: a prefix, not an object
	}
	return f, fi, nil
}

// Get implements BucketReader. The reader is the open file: it keeps
// reading the version that was current at the call, even if the key is
// replaced or deleted meanwhile.
func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	f, fi, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return f, infoOf(key, fi), nil
}

type sectionCloser struct {
	*io.SectionReader
	io.Closer
}

// GetRange implements BucketReader.
func (s *FileStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(key, off, length); err != nil {
		return nil, err
	}
	f, fi, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	if off > fi.Size() {
		f.Close()
		return nil, rangeErr(key, off, length, fi.Size())
	}
	return sectionCloser{io.NewSectionReader(f, off, min(length, fi.Size()-off)), f}, nil
}

// Stat implements BucketReader.
func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return ObjectInfo{}, readErr("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, notFound("stat", key)
	}
	return infoOf(key, fi), nil
}

// List implements BucketReader. It walks the directories the prefix can
// match, one directory's entries in memory at a time, in lexical key
// order, and sees each object as it is when its directory is read.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !listablePrefix(prefix) {
		return nil
	}
	// Start in the deepest directory the prefix names in full.
	dir, base := s.root, ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, base = filepath.Join(s.root, filepath.FromSlash(prefix[:i])), prefix[:i+1]
	}
	err := s.walk(ctx, dir, base, prefix, fn)
	var stop *stopWalk
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("tier: list %s: %w", prefix, err)
	}
	return err
}

// stopWalk carries fn's error out of the walk untouched.
type stopWalk struct{ err error }

func (e *stopWalk) Error() string { return e.err.Error() }

// walk lists dir, whose entries have keys base+name. Entries are visited
// in the order of their keys: a directory "a" sorts as "a/", so the file
// "a-x" ('-' < '/') comes before the objects under "a/" and "a0" after.
func (s *FileStore) walk(ctx context.Context, dir, base, prefix string, fn func(ObjectInfo) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // no such prefix, or removed while walking
		}
		return err
	}
	type entry struct {
		sortKey string
		ent     fs.DirEntry
	}
	sorted := make([]entry, 0, len(ents))
	for _, e := range ents {
		if base == "" && strings.HasPrefix(e.Name(), fileReserved) {
			continue
		}
		k := base + e.Name()
		if e.IsDir() {
			k += "/"
			if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
				continue
			}
		} else if !e.Type().IsRegular() || !strings.HasPrefix(k, prefix) {
			continue
		}
		sorted = append(sorted, entry{k, e})
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].sortKey < sorted[j].sortKey })
	for _, e := range sorted {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.ent.IsDir() {
			if err := s.walk(ctx, filepath.Join(dir, e.ent.Name()), e.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := e.ent.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was read
			}
			return err
		}
		if err := fn(infoOf(e.sortKey, fi)); err != nil {
			return &stopWalk{err}
		}
	}
	return nil
}

// writeTemp streams the body into a new temporary file, stamps its mtime
// and fsyncs it. It returns the file's path and info.
func (s *FileStore) writeTemp(ctx context.Context, op, key string, r io.Reader, size int64) (string, os.FileInfo, error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return "", nil, fmt.Errorf("tier: %s %s: %w", op, key, err)
	}
	fail := func(err error) (string, os.FileInfo, error) {
		f.Close()
		os.Remove(f.Name())
		return "", nil, err
	}
	if _, err := copyBody(ctx, op, key, f, r, size); err != nil {
		return fail(err)
	}
	if err := os.Chtimes(f.Name(), time.Time{}, nextStamp()); err != nil {
		return fail(fmt.Errorf("tier: %s %s: %w", op, key, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("tier: %s %s: fsync: %w", op, key, err))
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("tier: %s %s: %w", op, key, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("tier: %s %s: %w", op, key, err))
	}
	return f.Name(), fi, nil
}

// locked runs fn holding the in-process mutex and the cross-process flock.
func (s *FileStore) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return errClosed
	}
	fd := int(s.mu.lock.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX)
		if err == nil {
			break
		}
		if err != syscall.EINTR {
			return fmt.Errorf("tier: file store lock: %w", err)
		}
	}
	defer syscall.Flock(fd, syscall.LOCK_UN)
	return fn()
}

// mkdirs creates dir and its missing parents under root, fsyncing the
// parent of each directory it creates. An ancestor that is a file (an
// object) makes the key invalid here.
func mkdirs(root, dir, key string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil || errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w %q: an ancestor is an object; the file store cannot hold a key that is also a prefix", ErrInvalidKey, key)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case len(dir) <= len(root):
		return err // the root itself is missing
	}
	if err := mkdirs(root, filepath.Dir(dir), key); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func prefixErr(key string) error {
	return fmt.Errorf("%w %q: it is a prefix of other objects; the file store cannot hold a key that is also a prefix", ErrInvalidKey, key)
}

type publishMode int

const (
	publishAlways   publishMode = iota // rename over whatever is there
	publishIfAbsent                    // link: fails if the name exists
	publishIfMatch                     // rename if the current ETag matches
)

// precheck fails a conditional write early, before its body is written,
// when it would fail anyway. The check is repeated under the lock.
func precheck(p string, mode publishMode, etag string) error {
	fi, err := os.Lstat(p)
	switch mode {
	case publishIfAbsent:
		if err == nil && fi.Mode().IsRegular() {
			return ErrPreconditionFailed
		}
	case publishIfMatch:
		if err != nil || !fi.Mode().IsRegular() || etag == "" || etagOf(fi) != etag {
			return ErrPreconditionFailed
		}
	}
	return nil
}

func (s *FileStore) publish(ctx context.Context, op, key string, r io.Reader, size int64, mode publishMode, etag string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := precheck(p, mode, etag); err != nil {
		return ObjectInfo{}, fmt.Errorf("tier: %s %s: %w", op, key, err)
	}
	tmp, fi, err := s.writeTemp(ctx, op, key, r, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer os.Remove(tmp) // the extra name after a link; the file after a failure
	err = s.locked(func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := mkdirs(s.root, filepath.Dir(p), key); err != nil {
			return err
		}
		switch mode {
		case publishIfAbsent:
			if err := os.Link(tmp, p); err != nil {
				if errors.Is(err, fs.ErrExist) && !isDir(p) {
					return ErrPreconditionFailed
				}
				if isDir(p) {
					return prefixErr(key)
				}
				return err
			}
		case publishIfMatch:
			if err := precheck(p, mode, etag); err != nil {
				return err
			}
			fallthrough
		default:
			if err := os.Rename(tmp, p); err != nil {
				if isDir(p) {
					return prefixErr(key)
				}
				return err
			}
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("fsync directory: %w", err)
		}
		return nil
	})
	switch {
	case err == nil:
		// Link and rename keep the inode and mtime, so the published
		// file's ETag is the temporary file's.
		return infoOf(key, fi), nil
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ctx.Err()), errors.Is(err, errClosed):
		return ObjectInfo{}, err
	}
	return ObjectInfo{}, fmt.Errorf("tier: %s %s: %w", op, key, err)
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, "put", key, r, size, publishAlways, "")
}

// PutIfAbsent implements Store.
func (s *FileStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, "put-if-absent", key, r, size, publishIfAbsent, "")
}

// PutIfMatch implements Store.
func (s *FileStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, "put-if-match", key, r, size, publishIfMatch, etag)
}

// Delete implements Store. It fsyncs the directory, then removes the
// directories the delete left empty (those removals are not fsynced: an
// empty directory that reappears after a crash holds no object).
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	err = s.locked(func() error {
		if fi, err := os.Lstat(p); err != nil || fi.IsDir() {
			return nil // missing, or only a prefix
		}
		if err := os.Remove(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("fsync directory: %w", err)
		}
		for d := filepath.Dir(p); len(d) > len(s.root); d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break // not empty
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errClosed) {
		return fmt.Errorf("tier: delete %s: %w", key, err)
	}
	return err
}
