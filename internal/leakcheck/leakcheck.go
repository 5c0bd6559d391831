// Package leakcheck fails a package's tests when they leave goroutines
// behind. Every package's TestMain calls Main (go.uber.org/goleak does the
// work), so a Close that does not stop what it started is a test failure,
// not a slow leak in production.
package leakcheck

import (
	"flag"
	"os"
	"testing"

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
	goleak.VerifyTestMain(m, options(ignore)...)
}

// Find reports goroutines left running (retrying for a few seconds), for a
// TestMain that does more than run the tests.
func Find(ignore ...goleak.Option) error { return goleak.Find(options(ignore)...) }

func options(ignore []goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		// Started once per process by packages we use, never stopped.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/klauspost/compress/zstd.(*blockDec).startDecoder"),
	}, ignore...)
}
