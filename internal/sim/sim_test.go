package sim

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stratalog/strata/internal/leakcheck"
)

var (
	flagSeed    = flag.Uint64("sim.seed", 0, "run only this seed (replay), printing its schedule")
	flagSeeds   = flag.Int("sim.seeds", 0, "how many seeds to run (default: 300; 60 under -race; 20 with -short)")
	flagFirst   = flag.Uint64("sim.first", 1, "the first seed of the range")
	flagSteps   = flag.Int("sim.steps", 0, "steps per run (default 250)")
	flagBrokers = flag.Int("sim.brokers", 0, "broker slots (default 3)")
	flagDisable = flag.String("sim.disable", "", "comma-separated step kinds never to plan (e.g. gc,kill,delete-topic)")
	flagSweeps  = flag.Uint64("sim.sweeps", 0, "every N-th seed (seed%N == 0) plans a 70-minute advance so partition sweeps run (about 0.5s more per seed); 0: none")
	flagLogs    = flag.Bool("sim.logs", false, "with -sim.seed: print the brokers' logs")
	flagDetails = flag.Int("sim.details", 3, "print the full schedule of at most this many failing seeds (the others get one line)")
)

// defaultSeeds is the CI-sized run: a few hundred seeds in about two
// minutes on two cores without -race; fewer under -race and -short.
func defaultSeeds() int {
	switch {
	case *flagSeeds > 0:
		return *flagSeeds
	case testing.Short():
		return 20
	case raceEnabled:
		return 60
	}
	return 300
}

func options(t *testing.T, seed uint64) Options {
	o := Options{Seed: seed, Steps: *flagSteps, Brokers: *flagBrokers, Sweeps: *flagSweeps > 0 && seed%*flagSweeps == 0, Disable: map[Kind]bool{}}
	if *flagDisable != "" {
		for _, s := range strings.Split(*flagDisable, ",") {
			k, err := ParseKind(strings.TrimSpace(s))
			if err != nil {
				t.Fatal(err)
			}
			o.Disable[k] = true
			if k == KKill {
				o.Disable[KRestart] = true
			}
		}
	}
	return o
}

// TestSim runs the simulation for a range of seeds (or the one given by
// -sim.seed) and fails for every seed whose history shows an anomaly.
func TestSim(t *testing.T) {
	if *flagSeed != 0 {
		o := options(t, *flagSeed)
		var logs bytes.Buffer
		if *flagLogs {
			o.Logs = &syncWriter{w: &logs}
		}
		var res *Result
		synctest.Test(t, func(t *testing.T) { res = Run(o) })
		if *flagLogs {
			t.Logf("broker logs:\n%s", logs.String())
		}
		if !res.OK() {
			t.Fatalf("%s", res.Detail())
		}
		t.Logf("%s\n%s", res.Summary(), res.Detail())
		return
	}
	n := defaultSeeds()
	var (
		mu      sync.Mutex
		failed  []string
		details atomic.Int32
	)
	t.Run("seeds", func(t *testing.T) {
		for i := range n {
			seed := *flagFirst + uint64(i)
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				var res *Result
				synctest.Test(t, func(t *testing.T) { res = Run(options(t, seed)) })
				if res.OK() {
					return
				}
				mu.Lock()
				failed = append(failed, res.Summary())
				mu.Unlock()
				if details.Add(1) <= int32(*flagDetails) {
					t.Errorf("%s", res.Detail())
				} else {
					t.Errorf("%s\nreplay: %s", res.Summary(), res.Replay())
				}
			})
		}
	})
	if len(failed) > 0 {
		t.Logf("%d of %d seeds failed:\n%s", len(failed), n, strings.Join(failed, "\n"))
	}
}

// syncWriter serializes the brokers' log writes.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestMain makes the shared zstd coders outside any bubble (WarmUp), then
// runs the tests under the goroutine-leak check.
func TestMain(m *testing.M) {
	if err := WarmUp(); err != nil {
		fmt.Fprintln(os.Stderr, "sim: warm up:", err)
		os.Exit(2)
	}
	leakcheck.Main(m)
}
