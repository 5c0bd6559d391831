package tier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	tiertest.Run(t, func(t *testing.T) tier.Store { return newMinIOStore(t, tier.S3Config{}) })
}

// With a prefix, the store behaves as if the prefix were the bucket.
func TestS3StoreWithPrefixAcceptanceOnMinIO(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return newMinIOStore(t, tier.S3Config{Prefix: "some/prefix"}) })
}

// The fault wrapper without faults must be a faithful store.
func TestFaultStoreWithoutFaultsAcceptance(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store { return tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{}) })
}

// Environment of the child processes of TestFileStoreCrossProcessRace.
const (
	raceDirEnv = "STRATA_TIER_RACE_DIR"
	raceIDEnv  = "STRATA_TIER_RACE_ID"
	raceProcs  = 3
	raceRounds = 20
)

// TestFileStoreCrossProcessRace runs three processes (this test binary,
// re-executed) racing on one directory: each round, all of them
// PutIfAbsent the same key (exactly one may win), then each runs a
// read-increment-PutIfMatch on a shared counter (no two may win from the
// same version, so no increment is lost).
func TestFileStoreCrossProcessRace(t *testing.T) {
	if dir := os.Getenv(raceDirEnv); dir != "" {
		raceChild(dir, os.Getenv(raceIDEnv))
		return
	}
	dir := t.TempDir()
	storeDir, goFile := filepath.Join(dir, "store"), filepath.Join(dir, "go")
	s, err := tier.NewFileStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Put(ctx, "cas", strings.NewReader("0"), 1); err != nil {
		t.Fatal(err)
	}
	var (
		cmds []*exec.Cmd
		outs []*strings.Builder
	)
	for i := range raceProcs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreCrossProcessRace$", "-test.count=1")
		cmd.Env = append(os.Environ(), raceDirEnv+"="+dir, raceIDEnv+"="+strconv.Itoa(i))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	// Start them together, so they overlap.
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	absent := map[string]int{}
	casWins := map[int]int{}
	for i, o := range outs {
		if !strings.Contains(o.String(), "DONE") {
			t.Fatalf("child %d did not finish:\n%s", i, o)
		}
		for _, line := range strings.Split(o.String(), "\n") {
			if k, ok := strings.CutPrefix(line, "WIN absent "); ok {
				absent[k]++
			} else if v, ok := strings.CutPrefix(line, "WIN cas "); ok {
				n, _ := strconv.Atoi(v)
				casWins[n]++
			}
		}
	}
	for r := range raceRounds {
		if n := absent[fmt.Sprintf("absent-%d", r)]; n != 1 {
			t.Errorf("PutIfAbsent round %d: %d winners across processes, want 1", r, n)
		}
	}
	// Each successful CAS wrote value+1 of the version it read: a value
	// won twice would mean two winners from one version.
	for v, n := range casWins {
		if n != 1 {
			t.Errorf("counter value %d was written by %d winning PutIfMatch calls", v, n)
		}
	}
	rc, _, err := s.Get(ctx, "cas")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if got, _ := strconv.Atoi(string(b)); got != len(casWins) || got < raceRounds {
		t.Fatalf("counter is %d after %d successful PutIfMatch calls across processes", got, len(casWins))
	}
}

// raceChild is one process of TestFileStoreCrossProcessRace. It reports on
// stdout and exits.
func raceChild(dir, id string) {
	fail := func(err error) {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s, err := tier.NewFileStore(filepath.Join(dir, "store"))
	if err != nil {
		fail(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, err := os.Stat(filepath.Join(dir, "go")); err != nil; _, err = os.Stat(filepath.Join(dir, "go")) {
		if time.Now().After(deadline) {
			fail(errors.New("no go signal"))
		}
		time.Sleep(time.Millisecond)
	}
	ctx := context.Background()
	for r := range raceRounds {
		key := fmt.Sprintf("absent-%d", r)
		if _, err := s.PutIfAbsent(ctx, key, strings.NewReader(id), int64(len(id))); err == nil {
			fmt.Println("WIN absent", key)
		} else if !errors.Is(err, tier.ErrPreconditionFailed) {
			fail(err)
		}
		for range 3 {
			rc, info, err := s.Get(ctx, "cas")
			if err != nil {
				fail(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				fail(err)
			}
			v, err := strconv.Atoi(string(b))
			if err != nil {
				fail(fmt.Errorf("counter %q: %v", b, err))
			}
			next := strconv.Itoa(v + 1)
			if _, err := s.PutIfMatch(ctx, "cas", info.ETag, strings.NewReader(next), int64(len(next))); err == nil {
				fmt.Println("WIN cas", next)
			} else if !errors.Is(err, tier.ErrPreconditionFailed) {
				fail(err)
			}
		}
	}
	s.Close()
	fmt.Println("DONE")
	os.Exit(0)
}
