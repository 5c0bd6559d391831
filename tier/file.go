package tier

import (
	"bytes"
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
	"syscall"
)

const (
	fileTmpDir   = ".strata-tmp"
	fileLockName = ".strata-lock"
)

// FileStore is the embedded file:// object store: one file per object
// under a root directory.
//
// Every write goes to a temporary file in the root's .strata-tmp directory,
// is fsynced, then published: by rename (Put, PutIfMatch) or by link
// (PutIfAbsent: link fails if the name exists, atomically, across
// processes), after which the parent directory is fsynced. Writers hold an
// in-process mutex and an flock on .strata-lock, so conditional writes are
// linearizable across processes on one machine. An ETag is derived from the
// published file's inode, size and modification time: no hashing.
type FileStore struct {
	root string
	mu   sync.Mutex // with lock: serializes publishes
	lock *os.File
	once sync.Once
}

var _ Store = (*FileStore)(nil)

// NewFileStore opens (creating if needed) a file store rooted at dir.
func NewFileStore(dir string) (*FileStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, fileTmpDir), 0o755); err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(abs, fileLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tier: file store %q: %w", dir, err)
	}
	return &FileStore{root: abs, lock: lock}, nil
}

// Root is the store's directory.
func (s *FileStore) Root() string { return s.root }

// Close releases the lock file. It is idempotent.
func (s *FileStore) Close() error {
	var err error
	s.once.Do(func() { err = s.lock.Close() })
	return err
}

func (s *FileStore) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(key, ".strata-") {
		return "", fmt.Errorf("%w %q: names starting with .strata- are reserved by the file store", ErrInvalidKey, key)
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

func fileErr(op, key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("tier: %s %s: %w", op, key, ErrNotFound)
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("tier: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("tier: %s %s: %w", op, key, err)
}

// Get implements BucketReader.
func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, err
	}
	p, err := s.path(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, ObjectInfo{}, fileErr("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, ObjectInfo{}, fileErr("get", key, fs.ErrNotExist)
	}
	return f, infoOf(key, fi), nil
}

type sectionCloser struct {
	*io.SectionReader
	io.Closer
}

// GetRange implements BucketReader.
func (s *FileStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 || off > info.Size {
		rc.Close()
		return nil, fmt.Errorf("tier: get %s: range [%d,+%d) invalid for an object of %d bytes", key, off, length, info.Size)
	}
	length = min(length, info.Size-off)
	return sectionCloser{io.NewSectionReader(rc.(*os.File), off, length), rc}, nil
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
	fi, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, fileErr("stat", key, err)
	}
	if fi.IsDir() {
		return ObjectInfo{}, fileErr("stat", key, fs.ErrNotExist)
	}
	return infoOf(key, fi), nil
}

// List implements BucketReader. Keys are returned in lexical order.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	// Walk from the deepest directory the prefix names.
	dir := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	var infos []ObjectInfo
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, ".strata-") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if key != "." && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return err
		}
		infos = append(infos, infoOf(key, fi))
		return nil
	})
	if err != nil {
		return fmt.Errorf("tier: list %s: %w", prefix, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// writeTemp streams r into a new fsynced temporary file and returns its path.
func (s *FileStore) writeTemp(ctx context.Context, key string, r io.Reader, size int64) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, fileTmpDir), "put-*")
	if err != nil {
		return "", fmt.Errorf("tier: put %s: %w", key, err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return fail(fmt.Errorf("tier: put %s: %w", key, err))
	}
	if size >= 0 && n != size {
		return fail(fmt.Errorf("tier: put %s: read %d bytes, size says %d", key, n, size))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("tier: put %s: fsync: %w", key, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("tier: put %s: %w", key, err))
	}
	return f.Name(), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// locked runs fn holding the in-process mutex and the cross-process flock.
func (s *FileStore) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("tier: file store lock: %w", err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	return fn()
}

// mkdirs creates the parents of p and fsyncs each new directory's parent.
func mkdirs(root, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if dir == root || len(dir) < len(root) {
		return nil
	}
	if err := mkdirs(root, filepath.Dir(dir)); err != nil {
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

type publishMode int

const (
	publishAlways publishMode = iota
	publishIfAbsent
	publishIfMatch
)

func (s *FileStore) publish(ctx context.Context, key string, r io.Reader, size int64, mode publishMode, etag string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	tmp, err := s.writeTemp(ctx, key, r, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer os.Remove(tmp) // after a link, or a failure
	fi, err := os.Stat(tmp)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("tier: put %s: %w", key, err)
	}
	var info ObjectInfo
	err = s.locked(func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := mkdirs(s.root, filepath.Dir(p)); err != nil {
			return fmt.Errorf("tier: put %s: %w", key, err)
		}
		switch mode {
		case publishIfAbsent:
			if err := os.Link(tmp, p); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("tier: put %s if absent: %w", key, ErrPreconditionFailed)
				}
				return fmt.Errorf("tier: put %s: %w", key, err)
			}
		case publishIfMatch:
			cur, err := os.Stat(p)
			if err != nil || cur.IsDir() || etagOf(cur) != etag {
				return fmt.Errorf("tier: put %s if etag %q: %w", key, etag, ErrPreconditionFailed)
			}
			fallthrough
		default:
			if err := os.Rename(tmp, p); err != nil {
				return fmt.Errorf("tier: put %s: %w", key, err)
			}
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("tier: put %s: fsync dir: %w", key, err)
		}
		// The inode and mtime are the temp file's, so the ETag is too
		// (a link adds a name, which changes ctime, not mtime).
		info = infoOf(key, fi)
		return nil
	})
	return info, err
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, key, r, size, publishAlways, "")
}

// PutIfAbsent implements Store.
func (s *FileStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, key, r, size, publishIfAbsent, "")
}

// PutIfMatch implements Store.
func (s *FileStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.publish(ctx, key, r, size, publishIfMatch, etag)
}

// Delete implements Store.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	return s.locked(func() error {
		if err := os.Remove(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("tier: delete %s: %w", key, err)
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("tier: delete %s: fsync dir: %w", key, err)
		}
		return nil
	})
}

// MemStore is an in-memory Store with the same semantics, for fast tests.
type MemStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	version int64
}

type memObject struct {
	data []byte
	info ObjectInfo
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{objects: map[string]memObject{}} }

// Close implements Store.
func (m *MemStore) Close() error { return nil }

func (m *MemStore) get(ctx context.Context, key string) (memObject, error) {
	if err := ctx.Err(); err != nil {
		return memObject{}, err
	}
	if err := ValidateKey(key); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return memObject{}, fmt.Errorf("tier: get %s: %w", key, ErrNotFound)
	}
	return o, nil
}

// Get implements BucketReader.
func (m *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	o, err := m.get(ctx, key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.info, nil
}

// GetRange implements BucketReader.
func (m *MemStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	o, err := m.get(ctx, key)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if off < 0 || length < 0 || off > size {
		return nil, fmt.Errorf("tier: get %s: range [%d,+%d) invalid for an object of %d bytes", key, off, length, size)
	}
	return io.NopCloser(bytes.NewReader(o.data[off : off+min(length, size-off)])), nil
}

// Stat implements BucketReader.
func (m *MemStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	o, err := m.get(ctx, key)
	return o.info, err
}

// List implements BucketReader.
func (m *MemStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	var infos []ObjectInfo
	for k, o := range m.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, o.info)
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *MemStore) put(ctx context.Context, key string, r io.Reader, size int64, check func(memObject, bool) error) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	data, err := io.ReadAll(ctxReader{ctx, r})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("tier: put %s: %w", key, err)
	}
	if size >= 0 && int64(len(data)) != size {
		return ObjectInfo{}, fmt.Errorf("tier: put %s: read %d bytes, size says %d", key, len(data), size)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.objects[key]
	if check != nil {
		if err := check(cur, ok); err != nil {
			return ObjectInfo{}, fmt.Errorf("tier: put %s: %w", key, err)
		}
	}
	m.version++
	info := ObjectInfo{Key: key, Size: int64(len(data)), ETag: fmt.Sprintf("m%d", m.version), LastModified: timeNow()}
	m.objects[key] = memObject{data: data, info: info}
	return info, nil
}

// Put implements Store.
func (m *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, key, r, size, nil)
}

// PutIfAbsent implements Store.
func (m *MemStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, key, r, size, func(_ memObject, exists bool) error {
		if exists {
			return ErrPreconditionFailed
		}
		return nil
	})
}

// PutIfMatch implements Store.
func (m *MemStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, key, r, size, func(cur memObject, exists bool) error {
		if !exists || cur.info.ETag != etag {
			return ErrPreconditionFailed
		}
		return nil
	})
}

// Delete implements Store.
func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objects, key)
	m.mu.Unlock()
	return nil
}
