package vfs

import (
	"fmt"
	"sync/atomic"
)

// Op names an operation ErrorFS can fail.
type Op string

// The operations ErrorFS counts.
const (
	OpCreate   Op = "create"
	OpOpen     Op = "open"
	OpWrite    Op = "write"
	OpSync     Op = "sync"
	OpTruncate Op = "truncate"
	OpRemove   Op = "remove"
	OpSyncDir  Op = "syncdir"
)

// ErrorFS wraps an FS and fails the FailAt-th mutating operation (counting
// from 1) and every one after it, as a disk that went bad would; reads
// always pass. FailAt 0 never fails. Count reports how many mutating
// operations ran, so a test can first count them and then fail each in turn.
type ErrorFS struct {
	inner  FS
	failAt int64
	count  atomic.Int64
}

// NewErrorFS wraps inner, failing from the failAt-th mutating operation on.
func NewErrorFS(inner FS, failAt int64) *ErrorFS { return &ErrorFS{inner: inner, failAt: failAt} }

// Count is the number of mutating operations seen so far.
func (e *ErrorFS) Count() int64 { return e.count.Load() }

func (e *ErrorFS) inject(op Op, name string) error {
	n := e.count.Add(1)
	if e.failAt > 0 && n >= e.failAt {
		return fmt.Errorf("vfs: %s %s (operation %d): %w", op, name, n, ErrInjected)
	}
	return nil
}

func (e *ErrorFS) Create(name string) (File, error) {
	if err := e.inject(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := e.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, fs: e, name: name}, nil
}

func (e *ErrorFS) OpenAppend(name string) (File, error) {
	f, err := e.inner.OpenAppend(name)
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, fs: e, name: name}, nil
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.inject(OpRemove, name); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

func (e *ErrorFS) MkdirAll(dir string) error         { return e.inner.MkdirAll(dir) }
func (e *ErrorFS) List(dir string) ([]string, error) { return e.inner.List(dir) }

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.inject(OpSyncDir, dir); err != nil {
		return err
	}
	return e.inner.SyncDir(dir)
}

type errorFile struct {
	File
	fs   *ErrorFS
	name string
}

// Write fails before writing, or (on odd operation counts) after writing
// half of p, so short writes are exercised too.
func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.fs.inject(OpWrite, f.name); err != nil {
		if f.fs.count.Load()%2 == 1 && len(p) > 1 {
			n, _ := f.File.Write(p[:len(p)/2])
			return n, err
		}
		return 0, err
	}
	return f.File.Write(p)
}

func (f *errorFile) Sync() error {
	if err := f.fs.inject(OpSync, f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.fs.inject(OpTruncate, f.name); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
