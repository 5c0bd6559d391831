package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// testDisk is a directory holding a local log, on the in-memory or the
// real filesystem, with the calls the damage tests need.
type testDisk struct {
	fs  vfs.FS
	mem *vfs.Mem // nil on the real filesystem
	dir string
}

func memDisk() testDisk {
	m := vfs.NewMem()
	return testDisk{fs: m, mem: m, dir: "/p"}
}

func osDisk(t *testing.T) testDisk { return testDisk{fs: vfs.Default, dir: t.TempDir()} }

func (d testDisk) path(name string) string { return filepath.Join(d.dir, name) }

func (d testDisk) read(t *testing.T, name string) []byte {
	t.Helper()
	var data []byte
	var err error
	if d.mem != nil {
		data, err = d.mem.ReadFile(d.path(name))
	} else {
		data, err = os.ReadFile(d.path(name))
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (d testDisk) write(t *testing.T, name string, data []byte) {
	t.Helper()
	if d.mem != nil {
		d.mem.WriteFile(d.path(name), data)
	} else if err := os.WriteFile(d.path(name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (d testDisk) remove(t *testing.T, name string) {
	t.Helper()
	if err := d.fs.Remove(d.path(name)); err != nil {
		t.Fatal(err)
	}
}

// logFiles lists the log files in the directory.
func (d testDisk) logFiles(t *testing.T) []string {
	t.Helper()
	names, err := d.fs.List(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, logSuffix) {
			out = append(out, n)
		}
	}
	return out
}

func (d testDisk) open(t *testing.T, sealedEnd int64) (*LocalLog, RecoveryReport) {
	t.Helper()
	l, rep, err := OpenLocalLog(LocalLogOptions{FS: d.fs, Dir: d.dir, Fsync: FsyncAlways}, sealedEnd)
	if err != nil {
		t.Fatalf("open with sealed end %d: %v", sealedEnd, err)
	}
	return l, rep
}

// framePos returns the byte position of each frame in a file's contents.
func framePos(data []byte) []int {
	var out []int
	for p := 0; p+frameHeader <= len(data); p += frameHeader + int(binary.LittleEndian.Uint32(data[p:])) {
		out = append(out, p)
	}
	return out
}

// frameBytes encodes b as one frame with a valid CRC.
func frameBytes(b *segment.Batch) []byte {
	payload := segment.AppendBatch(nil, b)
	return rawFrame(payload)
}

func rawFrame(payload []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(payload, castagnoli))
	return append(out, payload...)
}

// writeThreeFiles writes offsets 0..8 in three files of two frames each
// (two records, then one): f(0) = [0,3), f(3) = [3,6), f(6) = [6,9), the
// last one active. With roll, f(9) is an empty active file after them, as
// a clean stop after a roll leaves it. Record values are crashValue(offset).
func writeThreeFiles(t *testing.T, d testDisk, roll bool) {
	t.Helper()
	l, _ := d.open(t, 0)
	for f := int64(0); f < 3; f++ {
		base := 3 * f
		for _, n := range []int64{2, 1} {
			b := &segment.Batch{ProducerID: segment.NoProducer}
			for o := base; o < base+n; o++ {
				b.Records = append(b.Records, segment.Record{Timestamp: o, Value: crashValue(o)})
			}
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
			base += n
		}
		if f < 2 || roll {
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func f(base int64) string { return fileName(base) }

// flip returns damage that xors one byte of frame `frame` of a file, at
// `off` bytes into the frame.
func flip(name string, frame, off int) func(*testing.T, testDisk) {
	return func(t *testing.T, d testDisk) {
		data := d.read(t, name)
		data[framePos(data)[frame]+off] ^= 0x40
		d.write(t, name, data)
	}
}

// TestLocalLogRepairsDamage damages a closed or active file in each way a
// disk can and checks that the log opens, keeps exactly the good data that
// covers the sealed end, removes the rest durably, reports what it dropped,
// and takes appends at the right offset.
func TestLocalLogRepairsDamage(t *testing.T) {
	type wantCut struct {
		file                        string
		at, from, records, unsealed int64
	}
	cases := []struct {
		name      string
		roll      bool // an empty active file f(9) follows the data
		sealedEnd int64
		damage    func(*testing.T, testDisk)
		start     int64    // where the local log starts after repair
		next      int64    // where it continues
		files     []string // the log files left
		stale     []string // undamaged sealed files removed
		cut       *wantCut // nil: no repair
	}{
		{
			name: "flip in a sealed closed file", sealedEnd: 6,
			damage: flip(f(3), 1, frameHeader+3),
			start:  6, next: 9, files: []string{f(6)}, stale: []string{f(0)},
			cut: &wantCut{file: f(3), at: 5, from: 3, records: 3},
		},
		{
			name: "flip in the first, sealed file", sealedEnd: 6,
			damage: flip(f(0), 0, frameHeader+10),
			start:  3, next: 9, files: []string{f(3), f(6)},
			cut: &wantCut{file: f(0), at: 0, from: 0, records: 3},
		},
		{
			name: "flip in the active file", sealedEnd: 6,
			damage: flip(f(6), 0, frameHeader+3),
			start:  0, next: 6, files: []string{f(0), f(3), f(6)},
			cut: &wantCut{file: f(6), at: 6, from: 6, records: 3, unsealed: 3},
		},
		{
			name: "flip in the CRC of the active file's last frame", sealedEnd: 6,
			damage: flip(f(6), 1, 5),
			// The records of a damaged last frame cannot be counted.
			start: 0, next: 8, files: []string{f(0), f(3), f(6)},
			cut: &wantCut{file: f(6), at: 8, from: 8},
		},
		{
			name: "newest non-empty file truncated after a clean stop", roll: true, sealedEnd: 6,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(6))
				d.write(t, f(6), data[:len(data)-4])
			},
			start: 0, next: 8, files: []string{f(0), f(3), f(6)},
			cut: &wantCut{file: f(6), at: 8, from: 8, records: 1, unsealed: 1},
		},
		{
			name: "newest non-empty file truncated, all of it sealed", roll: true, sealedEnd: 9,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(6))
				d.write(t, f(6), data[:len(data)-4])
			},
			start: 9, next: 9, files: []string{f(9)}, stale: []string{f(0), f(3)},
			cut: &wantCut{file: f(6), at: 8, from: 6, records: 3},
		},
		{
			name: "flip in a middle, unsealed file", sealedEnd: 0,
			damage: flip(f(3), 1, frameHeader+20),
			start:  0, next: 5, files: []string{f(0), f(3)},
			cut: &wantCut{file: f(3), at: 5, from: 5, records: 4, unsealed: 4},
		},
		{
			name: "middle file truncated inside a frame", sealedEnd: 3,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(3))
				d.write(t, f(3), data[:framePos(data)[1]+frameHeader+2])
			},
			start: 0, next: 5, files: []string{f(0), f(3)},
			cut: &wantCut{file: f(3), at: 5, from: 5, records: 4, unsealed: 4},
		},
		{
			name: "frame length past the end of the file", sealedEnd: 0,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(3))
				binary.LittleEndian.PutUint32(data, 0xffffffff)
				d.write(t, f(3), data)
			},
			start: 0, next: 3, files: []string{f(0), f(3)},
			cut: &wantCut{file: f(3), at: 3, from: 3, records: 6, unsealed: 6},
		},
		{
			name: "short frame header at the end of a closed file", sealedEnd: 0,
			damage: func(t *testing.T, d testDisk) {
				d.write(t, f(3), append(d.read(t, f(3)), 1, 2, 3))
			},
			start: 0, next: 6, files: []string{f(0), f(3)},
			cut: &wantCut{file: f(3), at: 6, from: 6, records: 3, unsealed: 3},
		},
		{
			name: "valid frame at the wrong offset", sealedEnd: 6,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(6))
				data = data[:framePos(data)[1]]
				d.write(t, f(6), append(data, frameBytes(&segment.Batch{BaseOffset: 100, Records: []segment.Record{{Value: []byte("x")}}})...))
			},
			start: 0, next: 8, files: []string{f(0), f(3), f(6)},
			cut: &wantCut{file: f(6), at: 8, from: 8},
		},
		{
			name: "valid CRC over an undecodable batch", sealedEnd: 0,
			damage: func(t *testing.T, d testDisk) {
				data := d.read(t, f(3))
				data = data[:framePos(data)[1]]
				d.write(t, f(3), append(data, rawFrame([]byte("not a batch at all, but checksummed"))...))
			},
			start: 0, next: 5, files: []string{f(0), f(3)},
			cut: &wantCut{file: f(3), at: 5, from: 5, records: 4, unsealed: 4},
		},
		{
			name: "missing middle file", sealedEnd: 3,
			damage: func(t *testing.T, d testDisk) { d.remove(t, f(3)) },
			start:  0, next: 3, files: []string{f(0)},
			cut: &wantCut{file: f(6), at: 3, from: 3, records: 6, unsealed: 6},
		},
		{
			name: "missing first file", sealedEnd: 0,
			damage: func(t *testing.T, d testDisk) { d.remove(t, f(0)) },
			start:  0, next: 0, files: []string{f(0)},
			cut: &wantCut{file: f(3), at: 0, from: 0, records: 9, unsealed: 9},
		},
		{
			name: "damage straddling the sealed end", sealedEnd: 4,
			damage: flip(f(3), 0, frameHeader+1),
			start:  4, next: 4, files: []string{f(4)}, stale: []string{f(0)},
			cut: &wantCut{file: f(3), at: 3, from: 3, records: 6, unsealed: 5},
		},
		{
			name: "sealed files already dropped: nothing to repair", sealedEnd: 3,
			damage: func(t *testing.T, d testDisk) { d.remove(t, f(0)) },
			start:  3, next: 9, files: []string{f(3), f(6)},
		},
	}
	disks := []struct {
		name string
		new  func(*testing.T) testDisk
	}{
		{"mem", func(*testing.T) testDisk { return memDisk() }},
		{"os", osDisk},
	}
	for _, dk := range disks {
		for _, tc := range cases {
			t.Run(dk.name+"/"+tc.name, func(t *testing.T) {
				d := dk.new(t)
				writeThreeFiles(t, d, tc.roll)
				tc.damage(t, d)
				var total, staleBytes int64
				for _, n := range d.logFiles(t) {
					size := int64(len(d.read(t, n)))
					total += size
					if slices.Contains(tc.stale, n) {
						staleBytes += size
					}
				}
				l, rep := d.open(t, tc.sealedEnd)
				defer l.Close()
				if l.StartOffset() != tc.start || l.NextOffset() != tc.next || rep.NextOffset != tc.next {
					t.Fatalf("log is [%d, %d) (report: next %d), want [%d, %d); %v", l.StartOffset(), l.NextOffset(), rep.NextOffset, tc.start, tc.next, rep)
				}
				if got := d.logFiles(t); !slices.Equal(got, tc.files) {
					t.Fatalf("files left: %v, want %v", got, tc.files)
				}
				if rep.DroppedStale != len(tc.stale) {
					t.Fatalf("dropped %d stale files, want %d (%v)", rep.DroppedStale, len(tc.stale), tc.stale)
				}
				for i, r := range readAllLocal(t, l, tc.start) {
					if off := tc.start + int64(i); r.Offset != off || !bytes.Equal(r.Value, crashValue(off)) {
						t.Fatalf("record at %d is %q (offset %d) after repair", off, r.Value, r.Offset)
					}
				}
				if tc.cut == nil {
					if rep.Repaired() || rep.TruncatedBytes != 0 {
						t.Fatalf("intact log reported as repaired: %v", rep)
					}
				} else {
					want := tc.cut
					if len(rep.Cuts) != 1 {
						t.Fatalf("cuts: %+v, want one", rep.Cuts)
					}
					c := rep.Cuts[0]
					if c.File != want.file || c.At != want.at || c.From != want.from || c.Records != want.records || c.Unsealed != want.unsealed || c.Reason == "" {
						t.Fatalf("cut %+v, want %+v", c, *want)
					}
					// Every byte is kept, dropped by the cut, or in a stale file.
					if rep.ValidBytes+c.Bytes+staleBytes != total || rep.ValidBytes != l.Bytes() {
						t.Fatalf("kept %d + cut %d + stale %d bytes != %d bytes on disk (log holds %d)", rep.ValidBytes, c.Bytes, staleBytes, total, l.Bytes())
					}
					summary := fmt.Sprintf("dropped %d records (%d bytes) of damaged local data from offset %d; %d of them unsealed", want.records, c.Bytes, want.from, want.unsealed)
					if s := rep.String(); !strings.Contains(s, summary) || !strings.Contains(s, c.File) {
						t.Fatalf("summary %q does not say %q", s, summary)
					}
					var logged bytes.Buffer
					slog.New(slog.NewTextHandler(&logged, nil)).Warn("repaired", "local_log", rep)
					if attr := fmt.Sprintf("local_log.dropped_unsealed=%d", want.unsealed); !strings.Contains(logged.String(), attr) {
						t.Fatalf("log line %q does not say %q", logged.String(), attr)
					}
				}
				// The repair is durable: a power cut now finds the same log.
				if d.mem != nil {
					crashed := d.mem.Crash(nil)
					l2, rep2, err := OpenLocalLog(LocalLogOptions{FS: crashed, Dir: d.dir}, tc.sealedEnd)
					if err != nil {
						t.Fatal(err)
					}
					if rep2.Repaired() || rep2.DroppedStale != 0 || l2.StartOffset() != tc.start || l2.NextOffset() != tc.next {
						t.Fatalf("after a power cut following the repair: [%d, %d), %v", l2.StartOffset(), l2.NextOffset(), rep2)
					}
					l2.Close()
				}
				// Appends continue where the log now ends, and survive a reopen.
				if base, err := l.Append(&segment.Batch{Records: []segment.Record{{Value: crashValue(tc.next)}}}); err != nil || base != tc.next {
					t.Fatalf("append after repair: base %d, %v; want %d", base, err, tc.next)
				}
				l.Close()
				l3, rep3 := d.open(t, tc.sealedEnd)
				defer l3.Close()
				if rep3.Repaired() || l3.NextOffset() != tc.next+1 {
					t.Fatalf("reopen after repair and append: next %d, %v", l3.NextOffset(), rep3)
				}
				for i, r := range readAllLocal(t, l3, tc.start) {
					if off := tc.start + int64(i); !bytes.Equal(r.Value, crashValue(off)) {
						t.Fatalf("record at %d is %q after reopen", off, r.Value)
					}
				}
			})
		}
	}
}

// TestLocalLogRepairCrashAtEveryStep fails each mutating operation of a
// repair in turn and cuts the power there: the open may fail (an I/O
// error), but the next open always finds the same repaired log.
func TestLocalLogRepairCrashAtEveryStep(t *testing.T) {
	for _, tc := range []struct {
		name            string
		sealedEnd, next int64
		damage          func(*testing.T, testDisk)
	}{
		{"unsealed middle file", 0, 5, flip(f(3), 1, frameHeader+20)},
		{"sealed end straddled", 4, 4, flip(f(3), 0, frameHeader+1)},
		{"sealed closed file", 6, 9, flip(f(3), 1, frameHeader+3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := memDisk()
			writeThreeFiles(t, d, true)
			tc.damage(t, d)
			damaged := d.mem.Crash(nil) // a copy of the damaged disk
			probe := vfs.NewErrorFS(damaged.Crash(nil), 0)
			l, _, err := OpenLocalLog(LocalLogOptions{FS: probe, Dir: d.dir, Fsync: FsyncNever}, tc.sealedEnd)
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			for failAt := int64(1); failAt <= probe.Count(); failAt++ {
				mem := damaged.Crash(nil)
				if l, _, err := OpenLocalLog(LocalLogOptions{FS: vfs.NewErrorFS(mem, failAt), Dir: d.dir, Fsync: FsyncNever}, tc.sealedEnd); err == nil {
					l.Close()
				} else if !errors.Is(err, vfs.ErrInjected) {
					t.Fatalf("fail at %d: %v", failAt, err)
				}
				crashed := mem.Crash(rand.New(rand.NewPCG(uint64(failAt), 9)))
				l, rep, err := OpenLocalLog(LocalLogOptions{FS: crashed, Dir: d.dir}, tc.sealedEnd)
				if err != nil {
					t.Fatalf("fail at %d: reopen: %v", failAt, err)
				}
				if l.NextOffset() != tc.next || l.StartOffset() > tc.sealedEnd {
					t.Fatalf("fail at %d: log [%d, %d), want it to continue at %d; %v", failAt, l.StartOffset(), l.NextOffset(), tc.next, rep)
				}
				for i, r := range readAllLocal(t, l, l.StartOffset()) {
					if off := l.StartOffset() + int64(i); !bytes.Equal(r.Value, crashValue(off)) {
						t.Fatalf("fail at %d: record at %d is %q", failAt, off, r.Value)
					}
				}
				l.Close()
			}
		})
	}
}

// FuzzLocalLogRepair writes a log of several files, damages it at random
// (flipped bytes, truncated and removed files), and opens it with a random
// sealed end: the open never fails or panics, and the log after repair is
// the written log's records from at or below the sealed end up to where it
// now ends, which is at or past the sealed end; the repair is durable and
// the log takes appends at its end.
func FuzzLocalLogRepair(f *testing.F) {
	f.Add(uint64(1), uint8(0), []byte{0, 0, 30, 0, 1})
	f.Add(uint64(2), uint8(40), []byte{0, 1, 5, 0, 7, 2, 2, 9, 0, 0})
	f.Add(uint64(3), uint8(200), []byte{3, 1, 0, 0, 0})
	f.Add(uint64(4), uint8(17), []byte{2, 3, 40, 0, 0, 1, 0, 200, 1, 3})
	f.Fuzz(func(t *testing.T, seed uint64, sealed uint8, damage []byte) {
		rng := rand.New(rand.NewPCG(seed, 5))
		mem := vfs.NewMem()
		l, _, err := OpenLocalLog(LocalLogOptions{FS: mem, Dir: "/p", Fsync: FsyncNever}, 0)
		if err != nil {
			t.Fatal(err)
		}
		next := int64(0)
		for i := 0; i < 10+rng.IntN(30); i++ {
			b := &segment.Batch{ProducerID: segment.NoProducer}
			for j := 0; j < 1+rng.IntN(4); j++ {
				b.Records = append(b.Records, segment.Record{Timestamp: next, Value: crashValue(next + int64(j))})
			}
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
			next += int64(len(b.Records))
			if rng.IntN(4) == 0 {
				l.Roll()
			}
		}
		l.Sync() // all written data is durable before the damage
		l.Close()
		written := next
		names, _ := mem.List("/p")
		for ; len(damage) >= 5 && len(names) > 0; damage = damage[5:] {
			name := "/p/" + names[int(damage[1])%len(names)]
			data, err := mem.ReadFile(name)
			if err != nil {
				continue // removed by an earlier step
			}
			pos := int(binary.LittleEndian.Uint16(damage[2:]))
			switch damage[0] % 4 {
			case 0, 1:
				if len(data) > 0 {
					data[pos%len(data)] ^= damage[4] | 1
				}
				mem.WriteFile(name, data)
			case 2:
				mem.WriteFile(name, data[:pos%(len(data)+1)])
			case 3:
				mem.Remove(name)
				mem.SyncDir("/p")
			}
		}
		sealedEnd := int64(sealed) % (written + 3)
		l, rep, err := OpenLocalLog(LocalLogOptions{FS: mem, Dir: "/p", Fsync: FsyncNever}, sealedEnd)
		if err != nil {
			t.Fatalf("open after damage: %v", err)
		}
		defer l.Close()
		start, end := l.StartOffset(), l.NextOffset()
		if start > sealedEnd || end < sealedEnd || end > max(written, sealedEnd) || (end > written && start != end) {
			t.Fatalf("log [%d, %d) after repair, sealed end %d, %d written; %v", start, end, sealedEnd, written, rep)
		}
		for i, r := range readAllLocal(t, l, start) {
			if off := start + int64(i); !bytes.Equal(r.Value, crashValue(off)) {
				t.Fatalf("record at %d is %q after repair", off, r.Value)
			}
		}
		if rep.ValidBytes != l.Bytes() || rep.NextOffset != end {
			t.Fatalf("report %+v disagrees with the log (%d bytes, next %d)", rep, l.Bytes(), end)
		}
		for _, c := range rep.Cuts {
			if c.Records < 0 || c.Bytes < 0 || c.Unsealed < 0 || c.Unsealed > c.Records || c.From > c.At {
				t.Fatalf("cut %+v", c)
			}
		}
		// The repair is durable: a power cut finds the same, intact log.
		l2, rep2, err := OpenLocalLog(LocalLogOptions{FS: mem.Crash(nil), Dir: "/p", Fsync: FsyncNever}, sealedEnd)
		if err != nil {
			t.Fatal(err)
		}
		if rep2.Repaired() || l2.StartOffset() != start || l2.NextOffset() != end {
			t.Fatalf("after a power cut: [%d, %d), want [%d, %d); %v", l2.StartOffset(), l2.NextOffset(), start, end, rep2)
		}
		l2.Close()
		if base, err := l.Append(&segment.Batch{Records: []segment.Record{{Value: crashValue(end)}}}); err != nil || base != end {
			t.Fatalf("append after repair: base %d, %v; want %d", base, err, end)
		}
	})
}
