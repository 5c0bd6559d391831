package ingest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/vfs"
)

// FuzzRecover feeds arbitrary bytes to recovery as the active log file: it
// must never panic, and must expose only whole, CRC-valid, dense batches.
func FuzzRecover(f *testing.F) {
	mem := vfs.NewMem()
	l, _, _ := OpenLocalLog(LocalLogOptions{FS: mem, Dir: "/p", Fsync: FsyncAlways}, 0)
	for i := 0; i < 4; i++ {
		l.Append(&segment.Batch{Records: []segment.Record{{Key: []byte("k"), Value: crashValue(int64(i))}}})
	}
	l.Close()
	valid, _ := mem.ReadFile("/p/" + fileName(0))
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		fs.WriteFile("/p/"+fileName(0), data)
		l, rep, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p", Fsync: FsyncNever}, 0)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		defer l.Close()
		if rep.ValidBytes+rep.TruncatedBytes != int64(len(data)) {
			t.Fatalf("valid %d + truncated %d != %d input bytes", rep.ValidBytes, rep.TruncatedBytes, len(data))
		}
		next := int64(0)
		for next < l.NextOffset() {
			bs, err := l.Read(next, 1<<20)
			if err != nil || len(bs) == 0 {
				t.Fatalf("read %d of %d: %v", next, l.NextOffset(), err)
			}
			for _, b := range bs {
				if b.BaseOffset != next {
					t.Fatalf("batch at %d, want %d", b.BaseOffset, next)
				}
				next = b.LastOffset() + 1
			}
		}
		// What survived is a prefix of the input.
		kept, _ := fs.ReadFile("/p/" + fileName(0))
		if !bytes.HasPrefix(data, kept) {
			t.Fatal("recovery rewrote bytes instead of truncating")
		}
	})
}
