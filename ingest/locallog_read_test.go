package ingest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/vfs"
)

// heldFS wraps an FS so that a test can hold one ReadAt in progress: after
// hold, the next ReadAt on any file signals entered and waits for release.
// It also counts the open files, to show when a handle is really closed.
type heldFS struct {
	vfs.FS
	gate atomic.Pointer[readGate]
	open atomic.Int64
}

type readGate struct {
	entered chan struct{} // closed when a ReadAt is being held
	release chan struct{} // closed by the test to let it go on
}

// hold makes the next ReadAt wait; the caller waits on entered, then closes
// release.
func (h *heldFS) hold() *readGate {
	g := &readGate{entered: make(chan struct{}), release: make(chan struct{})}
	h.gate.Store(g)
	return g
}

func (h *heldFS) Create(name string) (vfs.File, error) { return h.wrap(h.FS.Create(name)) }

func (h *heldFS) OpenAppend(name string) (vfs.File, error) { return h.wrap(h.FS.OpenAppend(name)) }

func (h *heldFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	h.open.Add(1)
	return &heldFile{File: f, fs: h}, nil
}

type heldFile struct {
	vfs.File
	fs   *heldFS
	once sync.Once
}

func (f *heldFile) ReadAt(p []byte, off int64) (int, error) {
	if g := f.fs.gate.Swap(nil); g != nil {
		close(g.entered)
		<-g.release
	}
	return f.File.ReadAt(p, off)
}

func (f *heldFile) Close() error {
	f.once.Do(func() { f.fs.open.Add(-1) })
	return f.File.Close()
}

// startRead runs l.Read(from, everything) until it is held inside a disk
// read, and returns where its result arrives.
func startRead(t *testing.T, fs *heldFS, l *LocalLog, from int64) (*readGate, <-chan []segment.Batch) {
	t.Helper()
	g := fs.hold()
	got := make(chan []segment.Batch, 1)
	go func() {
		bs, err := l.Read(from, 1<<20)
		if err != nil {
			t.Errorf("read from %d: %v", from, err)
		}
		got <- bs
	}()
	<-g.entered
	// Checked first so that code holding the lock across the read fails
	// here instead of deadlocking in the Append below.
	if !l.mu.TryLock() {
		close(g.release)
		t.Fatal("LocalLog.Read holds the log's lock during a disk read: an Append would wait for the disk")
	}
	l.mu.Unlock()
	return g, got
}

func values(bs []segment.Batch) []string {
	var out []string
	for _, b := range bs {
		for _, r := range b.Records {
			out = append(out, string(r.Value))
		}
	}
	return out
}

func TestLocalLogAppendNotBlockedByRead(t *testing.T) {
	fs := &heldFS{FS: vfs.NewMem()}
	l, _ := openMem(t, fs, FsyncAlways, 0)
	defer l.Close()
	for _, v := range []string{"a", "b"} {
		if _, err := l.Append(batchOf(v)); err != nil {
			t.Fatal(err)
		}
	}
	g, got := startRead(t, fs, l, 0)

	// The read is held inside ReadAt; an fsynced Append completes anyway.
	base, err := l.Append(batchOf("c"))
	if err != nil || base != 2 {
		t.Fatalf("append while a read is in progress: base %d, err %v; want 2, nil", base, err)
	}
	if n := l.NextOffset(); n != 3 {
		t.Fatalf("next offset %d, want 3", n)
	}

	close(g.release)
	if v := values(<-got); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Fatalf("held read returned %q, want the records present when it started: [a b]", v)
	}
	if v := values(mustRead(t, l, 0)); len(v) != 3 || v[2] != "c" {
		t.Fatalf("read after release returned %q, want [a b c]", v)
	}
}

// A read in progress keeps reading the files it picked when DropBefore
// removes them and Close closes the log; the last of them closes the handle.
func TestLocalLogReadSurvivesDropAndClose(t *testing.T) {
	fs := &heldFS{FS: vfs.NewMem()}
	l, _ := openMem(t, fs, FsyncNever, 0)
	if _, err := l.Append(batchOf("a")); err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(batchOf("b")); err != nil {
		t.Fatal(err)
	}
	g, got := startRead(t, fs, l, 0) // held in the first file

	if n, err := l.DropBefore(1); err != nil || n != 1 {
		t.Fatalf("drop before 1 while a read is in the file: dropped %d, err %v; want 1, nil", n, err)
	}
	if names, _ := fs.List("/p"); len(names) != 1 || names[0] != fileName(1) {
		t.Fatalf("files after drop: %q, want only %s", names, fileName(1))
	}
	if _, err := l.Read(0, 1<<20); !errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("a new read below the dropped file: err %v, want ErrBelowLocalStart", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fs.open.Load(); n != 2 {
		t.Fatalf("%d files open while the read holds both, want 2", n)
	}

	close(g.release)
	if v := values(<-got); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Fatalf("held read returned %q, want [a b]", v)
	}
	if n := fs.open.Load(); n != 0 {
		t.Fatalf("%d files still open after the last read released them, want 0", n)
	}
}

func mustRead(t *testing.T, l *LocalLog, from int64) []segment.Batch {
	t.Helper()
	bs, err := l.Read(from, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}
