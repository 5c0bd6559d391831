package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
)

// Mem is an in-memory FS that models durability; see the package doc.
type Mem struct {
	mu      sync.Mutex
	files   map[string]*memInode // current names
	durable map[string]*memInode // names that survive a crash
}

type memInode struct {
	data   []byte // current contents
	synced []byte // contents as of the last Sync
}

// NewMem returns an empty in-memory filesystem.
func NewMem() *Mem {
	return &Mem{files: map[string]*memInode{}, durable: map[string]*memInode{}}
}

var _ FS = (*Mem)(nil)

// Crash returns the filesystem a power cut would leave: durable names with
// their synced contents. With a non-nil rng, each file whose current
// contents extend its synced contents keeps a random prefix of the unsynced
// tail, and may have its last kept byte flipped (a torn write).
func (m *Mem) Crash(rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := NewMem()
	seen := map[*memInode]*memInode{}
	for name, ino := range m.durable {
		n, ok := seen[ino]
		if !ok {
			data := append([]byte(nil), ino.synced...)
			if rng != nil && len(ino.data) > len(ino.synced) && string(ino.data[:len(ino.synced)]) == string(ino.synced) {
				extra := ino.data[len(ino.synced):]
				keep := rng.IntN(len(extra) + 1)
				data = append(data, extra[:keep]...)
				if keep > 0 && rng.IntN(4) == 0 {
					data[len(data)-1] ^= 0x5a
				}
			}
			n = &memInode{data: data, synced: append([]byte(nil), data...)}
			seen[ino] = n
		}
		out.files[name] = n
		out.durable[name] = n
	}
	return out
}

// ReadFile returns a copy of a file's current contents (for tests).
func (m *Mem) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[clean(name)]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), ino.data...), nil
}

// WriteFile creates a durable file with the given contents (for tests).
func (m *Mem) WriteFile(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := &memInode{data: append([]byte(nil), data...), synced: append([]byte(nil), data...)}
	m.files[clean(name)] = ino
	m.durable[clean(name)] = ino
}

func (m *Mem) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := &memInode{}
	m.files[clean(name)] = ino
	return &memFile{fs: m, ino: ino, name: name}, nil
}

func (m *Mem) OpenAppend(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{fs: m, ino: ino, name: name}, nil
}

func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[clean(name)]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, clean(name))
	return nil
}

func (m *Mem) MkdirAll(string) error { return nil }

func (m *Mem) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	var names []string
	for name := range m.files {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	for name := range m.durable {
		if filepath.Dir(name) == dir {
			if _, ok := m.files[name]; !ok {
				delete(m.durable, name)
			}
		}
	}
	for name, ino := range m.files {
		if filepath.Dir(name) == dir {
			m.durable[name] = ino
		}
	}
	return nil
}

type memFile struct {
	fs     *Mem
	ino    *memInode
	name   string
	closed bool
}

func (f *memFile) check() error {
	if f.closed {
		return fmt.Errorf("vfs: %s: %w", f.name, fs.ErrClosed)
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	f.ino.synced = append(f.ino.synced[:0:0], f.ino.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if size < int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.ino.data)), f.check()
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	f.closed = true
	return nil
}
