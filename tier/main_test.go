package tier_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the package's tests if they leave goroutines behind
// (listing goroutines, HTTP connections of a closed store, ...).
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// The fuzzing engine leaves its signal handler running.
	if f := flag.Lookup("test.fuzz"); code == 0 && (f == nil || f.Value.String() == "") {
		code = checkGoroutines(before)
	}
	os.Exit(code)
}

func checkGoroutines(before int) int {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d at start, %d at the end:\n%s\n", before, runtime.NumGoroutine(), buf)
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}
