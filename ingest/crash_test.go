package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/vfs"
)

// crashValue is the value of the record at offset off: reading it back
// proves the record is intact and in its place.
func crashValue(off int64) []byte {
	return fmt.Appendf(nil, "record-%d-%s", off, strings.Repeat("#", int(off%37)))
}

// appendWorkload appends batches of random size until n appends were tried
// or one fails, rolling now and then. It returns the next offset after the
// last acknowledged append.
func appendWorkload(l *LocalLog, rng *rand.Rand, n int) (acked int64, err error) {
	next := l.NextOffset()
	acked = next
	for i := 0; i < n; i++ {
		b := &segment.Batch{ProducerID: segment.NoProducer}
		for j := 0; j < 1+rng.IntN(5); j++ {
			b.Records = append(b.Records, segment.Record{Timestamp: int64(i), Value: crashValue(next + int64(j))})
		}
		base, err := l.Append(b)
		if err != nil {
			return acked, err
		}
		if base != next {
			return acked, fmt.Errorf("append got base %d, want %d", base, next)
		}
		next += int64(len(b.Records))
		acked = next
		if rng.IntN(15) == 0 {
			if err := l.Roll(); err != nil {
				return acked, err
			}
		}
	}
	return acked, nil
}

// verifyPrefix reopens and checks that the log holds exactly offsets
// [0, NextOffset) with the right values, and at least `acked` of them.
func verifyPrefix(t *testing.T, fs vfs.FS, acked int64, label string) int64 {
	t.Helper()
	l, _, err := OpenLocalLog(LocalLogOptions{FS: fs, Dir: "/p", Fsync: FsyncAlways}, 0)
	if err != nil {
		t.Fatalf("%s: reopen after crash: %v", label, err)
	}
	defer l.Close()
	if l.NextOffset() < acked {
		t.Fatalf("%s: lost acknowledged data: next offset %d after crash, %d were acked", label, l.NextOffset(), acked)
	}
	for i, r := range readAllLocal(t, l, 0) {
		if r.Offset != int64(i) || !bytes.Equal(r.Value, crashValue(r.Offset)) {
			t.Fatalf("%s: record %d is %q at offset %d: torn or misplaced", label, i, r.Value, r.Offset)
		}
	}
	// The recovered log takes appends again at the right offset.
	next := l.NextOffset()
	if base, err := l.Append(&segment.Batch{Records: []segment.Record{{Value: crashValue(next)}}}); err != nil || base != next {
		t.Fatalf("%s: append after recovery: base %d, %v", label, base, err)
	}
	return next
}

// TestCrashFsyncAlwaysNeverLosesAcked: with fsync on every append, a power
// cut at any moment (with a torn, partly written tail) loses no append
// that returned nil and exposes no torn record.
func TestCrashFsyncAlwaysNeverLosesAcked(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		mem := vfs.NewMem()
		l, _, err := OpenLocalLog(LocalLogOptions{FS: mem, Dir: "/p", Fsync: FsyncAlways}, 0)
		if err != nil {
			t.Fatal(err)
		}
		acked, err := appendWorkload(l, rng, rng.IntN(60))
		if err != nil {
			t.Fatal(err)
		}
		// Unsynced bytes in flight: a write that did not reach fsync.
		l.mu.Lock()
		l.active().f.Write(bytes.Repeat([]byte{0xab}, rng.IntN(40)))
		l.mu.Unlock()
		crashed := mem.Crash(rng) // the process never closed the log
		verifyPrefix(t, crashed, acked, fmt.Sprintf("seed %d", seed))
	}
}

// TestCrashWithoutFsyncKeepsAPrefix: with FsyncNever, a crash may lose
// recent appends, but what survives is an intact prefix with no holes.
func TestCrashWithoutFsyncKeepsAPrefix(t *testing.T) {
	for seed := uint64(0); seed < 100; seed++ {
		rng := rand.New(rand.NewPCG(seed, 2))
		mem := vfs.NewMem()
		l, _, err := OpenLocalLog(LocalLogOptions{FS: mem, Dir: "/p", Fsync: FsyncNever}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := appendWorkload(l, rng, 40); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(2) == 0 {
			l.Sync()
			appendWorkload(l, rng, 10)
		}
		verifyPrefix(t, mem.Crash(rng), 0, fmt.Sprintf("seed %d", seed))
	}
}

// TestCrashAtEveryFailurePoint fails each mutating filesystem operation of
// a workload in turn (the disk goes bad there), then cuts the power: no
// acknowledged append is lost, and an append that failed never reports
// success.
func TestCrashAtEveryFailurePoint(t *testing.T) {
	// Count the operations a full run takes.
	probe := vfs.NewErrorFS(vfs.NewMem(), 0)
	l, _, err := OpenLocalLog(LocalLogOptions{FS: probe, Dir: "/p", Fsync: FsyncAlways}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendWorkload(l, rand.New(rand.NewPCG(7, 7)), 40); err != nil {
		t.Fatal(err)
	}
	total := probe.Count()
	l.Close()
	for failAt := int64(1); failAt <= total; failAt++ {
		mem := vfs.NewMem()
		efs := vfs.NewErrorFS(mem, failAt)
		l, _, err := OpenLocalLog(LocalLogOptions{FS: efs, Dir: "/p", Fsync: FsyncAlways}, 0)
		acked := int64(0)
		if err == nil {
			acked, _ = appendWorkload(l, rand.New(rand.NewPCG(7, 7)), 40)
		}
		rng := rand.New(rand.NewPCG(uint64(failAt), 3))
		verifyPrefix(t, mem.Crash(rng), acked, fmt.Sprintf("fail at op %d of %d", failAt, total))
	}
}

const killChildEnv = "STRATA_INGEST_KILL_CHILD"

// TestCrashKillDashNine runs a real child process that appends with
// FsyncAlways on the OS filesystem and prints each acknowledged offset,
// kills it with SIGKILL mid-stream, and checks that recovery has every
// acknowledged record.
func TestCrashKillDashNine(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKillDashNine$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := int64(0)
		sc := bufio.NewScanner(out)
		deadline := time.Now().Add(20 * time.Second)
		for sc.Scan() {
			if v, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "ACK "), 10, 64); err == nil {
				acked = v
			}
			if acked >= int64(300*(round+1)) || time.Now().After(deadline) {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if acked == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		l, rep, err := OpenLocalLog(LocalLogOptions{Dir: dir, Fsync: FsyncAlways}, 0)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		if l.NextOffset() < acked {
			t.Fatalf("round %d: kill -9 lost acknowledged records: next offset %d, acked up to %d", round, l.NextOffset(), acked)
		}
		for i, r := range readAllLocal(t, l, 0) {
			if r.Offset != int64(i) || !bytes.Equal(r.Value, crashValue(r.Offset)) {
				t.Fatalf("round %d: record %d torn after kill -9 (%+v)", round, i, rep)
			}
		}
		l.Close()
	}
}

func killChild(dir string) {
	l, _, err := OpenLocalLog(LocalLogOptions{Dir: dir, Fsync: FsyncAlways}, 0)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	next := l.NextOffset()
	for i := 0; i < 1_000_000; i++ {
		b := &segment.Batch{Records: []segment.Record{{Value: crashValue(next)}, {Value: crashValue(next + 1)}}}
		if _, err := l.Append(b); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		next += 2
		fmt.Printf("ACK %d\n", next)
		if i%100 == 99 {
			l.Roll()
		}
	}
	os.Exit(0)
}
