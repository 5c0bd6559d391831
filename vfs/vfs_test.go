package vfs

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func TestMemCrashKeepsOnlyDurableState(t *testing.T) {
	m := NewMem()
	f, _ := m.Create("/d/a")
	f.Write([]byte("synced"))
	f.Sync()
	f.Write([]byte("-lost"))
	g, _ := m.Create("/d/b") // name never made durable
	g.Write([]byte("x"))
	g.Sync()

	c := m.Crash(nil)
	if _, err := c.ReadFile("/d/a"); err == nil {
		t.Fatal("a file whose directory was never synced survived the crash")
	}
	m.SyncDir("/d")
	c = m.Crash(nil)
	if data, err := c.ReadFile("/d/a"); err != nil || string(data) != "synced" {
		t.Fatalf("after SyncDir: %q, %v; want only the synced bytes", data, err)
	}
	if data, _ := c.ReadFile("/d/b"); string(data) != "x" {
		t.Fatalf("synced file b: %q", data)
	}
	// A removal is durable only after SyncDir too.
	m.Remove("/d/b")
	if _, err := m.Crash(nil).ReadFile("/d/b"); err != nil {
		t.Fatal("an unsynced removal was durable")
	}
	m.SyncDir("/d")
	if _, err := m.Crash(nil).ReadFile("/d/b"); err == nil {
		t.Fatal("a synced removal did not stick")
	}
}

func TestMemCrashTornTailIsAPrefixOrFlipped(t *testing.T) {
	m := NewMem()
	f, _ := m.Create("/d/a")
	m.SyncDir("/d")
	f.Write([]byte("0123"))
	f.Sync()
	f.Write([]byte("456789"))
	sawPartial := false
	for seed := uint64(0); seed < 50; seed++ {
		data, _ := m.Crash(rand.New(rand.NewPCG(seed, 0))).ReadFile("/d/a")
		if len(data) < 4 || string(data[:4]) != "0123" || len(data) > 10 {
			t.Fatalf("crash lost synced bytes or invented some: %q", data)
		}
		if len(data) > 4 && len(data) < 10 {
			sawPartial = true
		}
	}
	if !sawPartial {
		t.Fatal("torn-write simulation never produced a partial tail")
	}
}

func TestMemListAndTruncate(t *testing.T) {
	m := NewMem()
	for _, n := range []string{"/d/b", "/d/a", "/e/c"} {
		m.Create(n)
	}
	names, _ := m.List("/d")
	if len(names) != 2 || names[0] != "a" || names[1] != "b" {
		t.Fatalf("List = %v", names)
	}
	f, _ := m.OpenAppend("/d/a")
	f.Write([]byte("hello"))
	f.Truncate(2)
	if sz, _ := f.Size(); sz != 2 {
		t.Fatalf("size after truncate %d", sz)
	}
	f.Close()
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}
	if _, err := m.OpenAppend("/d/zz"); err == nil {
		t.Fatal("opened a missing file")
	}
}

func TestErrorFSFailsFromTheNthOperation(t *testing.T) {
	e := NewErrorFS(NewMem(), 3)
	f, err := e.Create("/d/a") // op 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("ok")); err != nil { // op 2
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, ErrInjected) { // op 3
		t.Fatalf("op 3: %v, want ErrInjected", err)
	}
	if err := e.SyncDir("/d"); !errors.Is(err, ErrInjected) {
		t.Fatalf("op 4: %v, want ErrInjected", err)
	}
	if e.Count() != 4 {
		t.Fatalf("Count = %d", e.Count())
	}
}

func TestOSFS(t *testing.T) {
	dir := t.TempDir()
	f, err := Default.Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abc"))
	f.Write([]byte("def"))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := f.ReadAt(buf, 3); err != nil || string(buf) != "def" {
		t.Fatalf("ReadAt: %q %v", buf, err)
	}
	f.Close()
	if err := Default.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	names, _ := Default.List(dir)
	if len(names) != 1 || names[0] != "x" {
		t.Fatalf("List = %v", names)
	}
}
