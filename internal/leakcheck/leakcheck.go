// Package leakcheck fails a package's tests when they leave goroutines
// behind. Every package's TestMain calls Main (go.uber.org/goleak does the
// work), so a Close that does not stop what it started is a test failure,
// not a slow leak in production.
package leakcheck

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs the tests and then checks, retrying for a few seconds, that
// no goroutine started by them is still running. Fuzzing runs are not
// checked: the fuzzing engine keeps workers of its own.
func Main(m *testing.M, ignore ...goleak.Option) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	code := m.Run()
	if code == 0 {
		if err := Find(ignore...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind by the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// settle is how long a goroutine may take to end after the tests did: a
// library's in-flight work (a memberlist probe waits up to its probe
// interval after Shutdown) is not a leak; a goroutine still there after
// this is one.
const settle = 5 * time.Second

// Find reports goroutines left running, retrying for a few seconds, for a
// TestMain that does more than run the tests.
func Find(ignore ...goleak.Option) error {
	deadline := time.Now().Add(settle)
	for {
		err := goleak.Find(options(ignore)...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func options(ignore []goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		// Started once per process by packages we use, never stopped.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/klauspost/compress/zstd.(*blockDec).startDecoder"),
	}, ignore...)
}
