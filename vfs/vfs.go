// Package vfs is the small filesystem interface through which strata
// writes local files, so that durability can be tested: Default is the OS,
// NewMem is an in-memory filesystem that models what survives a crash
// (only fsynced data, and only directory entries whose directory was
// fsynced), and NewErrorFS fails a chosen operation.
//
// Invariants of the Mem model: File.Sync makes the file's current contents
// durable; SyncDir makes the directory's current set of names durable.
// Crash returns a filesystem holding exactly the durable state (optionally
// with a torn, partial tail of unsynced appended bytes), which is what a
// power cut leaves on a filesystem that honours fsync.
//
// All implementations are safe for concurrent use; a File is safe for
// concurrent ReadAt and for one writer.
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file.
type File interface {
	io.Writer   // appends at the end
	io.ReaderAt // reads anywhere
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// FS is a filesystem.
type FS interface {
	// Create creates or truncates name for reading and appending.
	Create(name string) (File, error)
	// OpenAppend opens an existing file for reading and appending.
	OpenAppend(name string) (File, error)
	Remove(name string) error
	MkdirAll(dir string) error
	// List returns the names of the files in dir, sorted.
	List(dir string) ([]string, error)
	// SyncDir makes dir's entries durable.
	SyncDir(dir string) error
}

// Default is the operating system's filesystem.
var Default FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenAppend(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error  { return os.Remove(name) }
func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrInjected is the error ErrorFS returns for an injected failure.
var ErrInjected = errors.New("vfs: injected failure")

func clean(name string) string { return filepath.Clean(name) }
