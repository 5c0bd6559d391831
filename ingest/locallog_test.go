package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/vfs"
)

func batchOf(vals ...string) *segment.Batch {
	b := &segment.Batch{ProducerID: segment.NoProducer}
	for _, v := range vals {
		b.Records = append(b.Records, segment.Record{Timestamp: 1, Value: []byte(v)})
	}
	return b
}

func openMem(t *testing.T, fs vfs.FS, policy FsyncPolicy, start int64) (*LocalLog, RecoveryReport) {
	t.Helper()
	l, rep, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p", Fsync: policy}, start)
	if err != nil {
		t.Fatal(err)
	}
	return l, rep
}

// readAllLocal reads every record from `from` and checks density.
func readAllLocal(t *testing.T, l *LocalLog, from int64) []segment.Record {
	t.Helper()
	var out []segment.Record
	next := from
	for next < l.NextOffset() {
		bs, err := l.Read(next, 100)
		if err != nil {
			t.Fatalf("read %d: %v", next, err)
		}
		if len(bs) == 0 {
			t.Fatalf("read %d below next offset %d returned nothing", next, l.NextOffset())
		}
		for _, b := range bs {
			for _, r := range b.Records {
				if r.Offset < next {
					continue
				}
				if r.Offset != next {
					t.Fatalf("gap: got %d, want %d", r.Offset, next)
				}
				out = append(out, r)
				next++
			}
		}
	}
	return out
}

func TestLocalLogOffsetsAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncAlways, 100)
	for i := 0; i < 50; i++ {
		base, err := l.Append(batchOf(fmt.Sprint("a", i), fmt.Sprint("b", i)))
		if err != nil || base != 100+int64(2*i) {
			t.Fatalf("append %d: base %d, %v", i, base, err)
		}
		if i%20 == 19 {
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, rep := openMem(t, fs, FsyncAlways, 100)
	defer l2.Close()
	if rep.NextOffset != 200 || l2.NextOffset() != 200 || rep.TruncatedBytes != 0 || rep.Files != 3 {
		t.Fatalf("reopen: %+v", rep)
	}
	recs := readAllLocal(t, l2, 100)
	if len(recs) != 100 || string(recs[57].Value) != "b28" {
		t.Fatalf("read back %d records; #57 = %q", len(recs), recs[57].Value)
	}
	// Every offset is readable on its own, and the first batch returned
	// holds it.
	for off := int64(100); off < 200; off++ {
		bs, err := l2.Read(off, 1)
		if err != nil || len(bs) == 0 || bs[0].BaseOffset > off || bs[0].LastOffset() < off {
			t.Fatalf("Read(%d) = %v, %v", off, bs, err)
		}
	}
	if bs, err := l2.Read(200, 10); err != nil || len(bs) != 0 {
		t.Fatalf("read at the end: %v, %v", bs, err)
	}
	if _, err := l2.Read(99, 10); !errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("read below start: %v", err)
	}
}

func TestLocalLogRollAndDrop(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncNever, 0)
	defer l.Close()
	if err := l.Roll(); err != nil { // empty: no-op
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l.Append(batchOf("x", "y", "z"))
		l.Roll()
	}
	files := l.Files()
	if len(files) != 4 || !files[3].Active || files[1].BaseOffset != 3 || files[1].EndOffset != 6 {
		t.Fatalf("files: %+v", files)
	}
	var seen []int64
	if err := l.ReadFile(3, func(b *segment.Batch) error { seen = append(seen, b.BaseOffset); return nil }); err != nil || len(seen) != 1 || seen[0] != 3 {
		t.Fatalf("ReadFile: %v %v", seen, err)
	}
	n, err := l.DropBefore(6)
	if err != nil || n != 2 || l.StartOffset() != 6 {
		t.Fatalf("DropBefore(6): %d, %v, start %d", n, err, l.StartOffset())
	}
	// The active file is never dropped.
	if n, _ := l.DropBefore(1000); n != 1 || len(l.Files()) != 1 {
		t.Fatalf("DropBefore(1000) dropped %d, left %d files", n, len(l.Files()))
	}
}

func TestLocalLogStaleDirIsDropped(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncAlways, 0)
	l.Append(batchOf("old"))
	l.Close()
	// The bucket says the log already continues at 50: local data is stale.
	l2, rep := openMem(t, fs, FsyncAlways, 50)
	defer l2.Close()
	if rep.DroppedStale != 1 || l2.NextOffset() != 50 || l2.StartOffset() != 50 {
		t.Fatalf("stale data kept: %+v next %d", rep, l2.NextOffset())
	}
	// Local data ahead of the bucket is kept (it is the unsealed tail).
	l2.Append(batchOf("a", "b"))
	l2.Close()
	l3, _ := openMem(t, fs, FsyncAlways, 50)
	defer l3.Close()
	if l3.NextOffset() != 52 {
		t.Fatalf("unsealed tail lost: next %d", l3.NextOffset())
	}
}

func TestLocalLogGapIsCorruption(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncAlways, 10)
	l.Append(batchOf("a"))
	l.Close()
	if _, _, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p"}, 5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("local data starting after the sealed end must be refused: %v", err)
	}
}

func TestLocalLogTornTailIsTruncated(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncAlways, 0)
	l.Append(batchOf("one"))
	l.Append(batchOf("two"))
	l.Close()
	data, _ := fs.ReadFile("/p/" + fileName(0))
	good := len(data)
	fs.WriteFile("/p/"+fileName(0), append(data, 0x10, 0, 0, 0, 1, 2)) // half a frame
	l2, rep := openMem(t, fs, FsyncAlways, 0)
	if rep.TruncatedBytes != 6 || l2.NextOffset() != 2 {
		t.Fatalf("torn tail: %+v", rep)
	}
	l2.Close()
	if data, _ := fs.ReadFile("/p/" + fileName(0)); len(data) != good {
		t.Fatalf("file is %d bytes after truncation, want %d", len(data), good)
	}
	// A flipped byte in the last frame drops that frame only.
	data[len(data)-1] ^= 1
	fs.WriteFile("/p/"+fileName(0), data)
	l3, rep := openMem(t, fs, FsyncAlways, 0)
	defer l3.Close()
	if l3.NextOffset() != 1 || rep.TruncatedBytes == 0 {
		t.Fatalf("corrupt last frame: next %d, %+v", l3.NextOffset(), rep)
	}
}

func TestLocalLogCorruptClosedFileIsAnError(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncAlways, 0)
	l.Append(batchOf("one"))
	l.Roll()
	l.Append(batchOf("two"))
	l.Close()
	data, _ := fs.ReadFile("/p/" + fileName(0))
	data[10] ^= 0xff
	fs.WriteFile("/p/"+fileName(0), data)
	if _, _, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p"}, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt closed file: %v, want ErrCorrupt", err)
	}
}

func TestLocalLogFailsAfterWriteError(t *testing.T) {
	// Count the mutating operations opening takes, then fail the next one:
	// the first append's write.
	probe := vfs.NewErrorFS(vfs.NewMem(), 0)
	l0, _, err := OpenLocalLog(LocalLogOptions{FS: probe, Dir: "/p", Fsync: FsyncAlways}, 0)
	if err != nil {
		t.Fatal(err)
	}
	l0.Close()
	efs := vfs.NewErrorFS(vfs.NewMem(), probe.Count()+1)
	l, _, err := OpenLocalLog(LocalLogOptions{FS: efs, Dir: "/p", Fsync: FsyncAlways}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(batchOf("x")); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("append on a failing disk: %v, want ErrLogFailed", err)
	}
	if _, err := l.Append(batchOf("y")); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("append after a failure must keep failing: %v", err)
	}
	if l.NextOffset() != 0 {
		t.Fatalf("a failed append moved the next offset to %d", l.NextOffset())
	}
}

func TestLocalLogIntervalSyncsInBackground(t *testing.T) {
	fs := vfs.NewMem()
	l, _, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p", Fsync: FsyncInterval, FsyncInterval: time.Millisecond}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Append(batchOf("a"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		crashed := fs.Crash(nil)
		if data, _ := crashed.ReadFile("/p/" + fileName(0)); len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the interval fsync never made the append durable")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLocalLogReadSeesValuesIntact(t *testing.T) {
	fs := vfs.NewMem()
	l, _ := openMem(t, fs, FsyncNever, 0)
	defer l.Close()
	big := bytes.Repeat([]byte("v"), 10000)
	l.Append(&segment.Batch{Records: []segment.Record{{Key: []byte("k"), Value: big, Headers: []segment.Header{{Key: "h", Value: []byte("1")}}}}})
	bs, err := l.Read(0, 1)
	if err != nil || len(bs) != 1 || !bytes.Equal(bs[0].Records[0].Value, big) || bs[0].Records[0].Headers[0].Key != "h" {
		t.Fatalf("read: %v", err)
	}
}
