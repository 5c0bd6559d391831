package tier_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/tier/tiertest"
)

func TestFileStoreAcceptance(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return storetest.File(t) })
}

func TestMemStoreAcceptance(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return tier.NewMemStore() })
}

func TestS3StoreAcceptanceOnMinIO(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return storetest.MinIO(t) })
}

// The fault wrapper without faults must be a faithful store.
func TestFaultStoreWithoutFaultsAcceptance(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{}) })
}

const childEnv = "STRATA_TIER_RACE_CHILD"

// TestFileStoreCrossProcessRace runs three processes (this test binary,
// re-executed) racing PutIfAbsent and PutIfMatch on one directory: each
// round has exactly one winner across processes.
func TestFileStoreCrossProcessRace(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		raceChild(dir)
		return
	}
	dir := t.TempDir()
	s, err := tier.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Put(context.Background(), "cas", strings.NewReader("0"), 1); err != nil {
		t.Fatal(err)
	}
	const procs = 3
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < procs; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreCrossProcessRace$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, "STRATA_CHILD_ID="+strconv.Itoa(i))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	// Each child reports its wins as "WIN absent-R" / "WIN cas-N" lines.
	absent := map[string]int{}
	casWins := 0
	for _, o := range outs {
		for _, line := range strings.Split(o.String(), "\n") {
			if k, ok := strings.CutPrefix(line, "WIN "); ok {
				if strings.HasPrefix(k, "absent-") {
					absent[k]++
				} else {
					casWins++
				}
			}
		}
	}
	for r := 0; r < 20; r++ {
		if n := absent[fmt.Sprintf("absent-%d", r)]; n != 1 {
			t.Errorf("PutIfAbsent round %d: %d winners across processes, want 1", r, n)
		}
	}
	// Every successful CAS increments the counter by one: no lost update.
	rc, _, err := s.Get(context.Background(), "cas")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := rc.Read(buf)
	rc.Close()
	if got, _ := strconv.Atoi(string(buf[:n])); got != casWins || casWins == 0 {
		t.Fatalf("counter is %d after %d successful CASes across processes", got, casWins)
	}
}

func raceChild(dir string) {
	s, err := tier.NewFileStore(dir)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	ctx := context.Background()
	id := os.Getenv("STRATA_CHILD_ID")
	for r := 0; r < 20; r++ {
		key := fmt.Sprintf("absent-%d", r)
		if _, err := s.PutIfAbsent(ctx, key, strings.NewReader(id), int64(len(id))); err == nil {
			fmt.Println("WIN", key)
		} else if !errors.Is(err, tier.ErrPreconditionFailed) {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		// Read-increment-CAS on a shared counter.
		for i := 0; i < 3; i++ {
			rc, info, err := s.Get(ctx, "cas")
			if err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			buf := make([]byte, 32)
			n, _ := rc.Read(buf)
			rc.Close()
			v, _ := strconv.Atoi(string(buf[:n]))
			next := strconv.Itoa(v + 1)
			if _, err := s.PutIfMatch(ctx, "cas", info.ETag, strings.NewReader(next), int64(len(next))); err == nil {
				fmt.Println("WIN cas-" + next)
			} else if !errors.Is(err, tier.ErrPreconditionFailed) {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
		}
	}
	os.Exit(0)
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{tier.ErrNotFound, false},
		{fmt.Errorf("x: %w", tier.ErrPreconditionFailed), false},
		{tier.ErrFenced, false},
		{tier.ErrInvalidKey, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, true},
		{tier.ErrUnavailable, true},
		{&tier.StatusError{Status: 503, Code: "SlowDown"}, true},
		{&tier.StatusError{Status: 500}, true},
		{&tier.StatusError{Status: 429}, true},
		{&tier.StatusError{Status: 403, Code: "AccessDenied"}, false},
		{&tier.StatusError{Status: 400}, false},
		{errors.New("mystery"), false},
	} {
		if got := tier.IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := tier.Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 5}
	for n, want := range []time.Duration{1, 2, 4, 4, 4} {
		if got := b.Delay(n); got != want*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want*time.Millisecond)
		}
	}
	calls := 0
	err := b.Do(context.Background(), func(context.Context) error { calls++; return tier.ErrUnavailable })
	if calls != 5 || !errors.Is(err, tier.ErrUnavailable) {
		t.Fatalf("retryable failures: %d calls, err %v; want 5 calls", calls, err)
	}
	calls = 0
	err = b.Do(context.Background(), func(context.Context) error { calls++; return tier.ErrNotFound })
	if calls != 1 || !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("a final error must not be retried: %d calls", calls)
	}
	calls = 0
	err = b.Do(context.Background(), func(context.Context) error {
		if calls++; calls < 3 {
			return tier.ErrUnavailable
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("recovery after 2 failures: %d calls, %v", calls, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := tier.Backoff{Base: time.Hour, Max: time.Hour, Attempts: 3}
	start := time.Now()
	err = slow.Do(ctx, func(context.Context) error { return tier.ErrUnavailable })
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Minute {
		t.Fatalf("a canceled context must end the wait: %v", err)
	}
}

func TestFaultStoreInjects(t *testing.T) {
	ctx := context.Background()
	mem := tier.NewMemStore()
	f := tier.NewFaultStore(mem, tier.FaultConfig{Seed: 1, LostResponseRate: 1})
	_, err := f.Put(ctx, "k", strings.NewReader("v"), 1)
	if !tier.IsRetryable(err) {
		t.Fatalf("lost response should be a retryable error, got %v", err)
	}
	if _, err := mem.Stat(ctx, "k"); err != nil {
		t.Fatalf("a lost response must still apply the write: %v", err)
	}
	f = tier.NewFaultStore(mem, tier.FaultConfig{Seed: 2, ErrorRate: 0.5})
	fails := 0
	for i := 0; i < 200; i++ {
		if _, err := f.Stat(ctx, "k"); err != nil {
			if !tier.IsRetryable(err) {
				t.Fatalf("injected error not retryable: %v", err)
			}
			fails++
		}
	}
	if fails < 60 || fails > 140 || f.Stats().InjectedErrors != int64(fails) || f.Stats().Stats != 200 {
		t.Fatalf("error rate 0.5 gave %d failures of 200; stats %+v", fails, f.Stats())
	}
	f.SetDown(true)
	if _, _, err := f.Get(ctx, "k"); !errors.Is(err, tier.ErrUnavailable) {
		t.Fatalf("down store: %v", err)
	}
	f.SetDown(false)
	bo := tier.Backoff{Base: time.Microsecond, Max: time.Millisecond, Attempts: 50}
	if err := bo.Do(ctx, func(ctx context.Context) error { _, err := f.Stat(ctx, "k"); return err }); err != nil {
		t.Fatalf("retries through 50%% errors failed: %v", err)
	}
}

// TestManifestSurvivesLostResponses: with every write's response lost, a
// manifest update still reports success (it recognizes its own write) and
// with half the calls failing it still converges.
func TestManifestSurvivesFaults(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		f := tier.NewFaultStore(s, tier.FaultConfig{Seed: 9, LostResponseRate: 1})
		ms := tier.NewManifestStore(f, "lost", 0)
		etag, err := ms.Create(ctx, &tier.Manifest{Topic: "lost", Epoch: 1, Generation: 1})
		if err != nil {
			t.Fatalf("create with a lost response: %v", err)
		}
		for i := 0; i < 5; i++ {
			cur, e, err := ms.Load(ctx)
			if err != nil || e != etag {
				t.Fatalf("load: %v (etag %q, want %q)", err, e, etag)
			}
			next := cur.Clone()
			next.Generation++
			next.Segments = append(next.Segments, tier.SegmentRef{Key: fmt.Sprint("s", i), BaseOffset: int64(i * 10), LastOffset: int64(i*10 + 9)})
			if etag, err = ms.Update(ctx, etag, next); err != nil {
				t.Fatalf("update %d with a lost response: %v", i, err)
			}
		}
		m, _, err := ms.Load(ctx)
		if err != nil || len(m.Segments) != 5 || m.Generation != 6 {
			t.Fatalf("after lost responses: %+v, %v", m, err)
		}
		// Half of all calls fail before reaching the store.
		g := tier.NewFaultStore(s, tier.FaultConfig{Seed: 10, ErrorRate: 0.5})
		ms2 := tier.NewManifestStore(g, "lost", 0)
		for i := 0; i < 5; i++ {
			cur, e, err := ms2.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			next := cur.Clone()
			next.Generation++
			next.LogStartOffset = int64(i)
			if _, err := ms2.Update(ctx, e, next); err != nil {
				t.Fatalf("update %d through 50%% errors: %v", i, err)
			}
		}
	})
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := tier.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, bad := range []string{"", "dir/relative", "file://relative/dir", "file:relative", "ftp://x/y", "s3:///prefix", "s3://b/p?insecure=maybe", "s3://b/p?colour=blue", "%zz"} {
		if _, err := tier.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "object store URL") {
			t.Errorf("Open(%q): error does not name the URL: %v", bad, err)
		}
	}
}
