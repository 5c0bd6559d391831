package faultproxy_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the package's tests if they leave goroutines behind: a
// closed Proxy must have released every held request and connection.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
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
