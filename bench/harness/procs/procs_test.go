package procs

import (
	"os"
	"testing"
	"time"
)

// CPUSeconds reads the process's own CPU time from /proc, and it grows
// while the process computes.
func TestCPUSecondsGrows(t *testing.T) {
	before := CPUSeconds(os.Getpid())
	x := uint64(1)
	deadline := time.Now().Add(10 * time.Second)
	for CPUSeconds(os.Getpid()) < before+0.05 && time.Now().Before(deadline) {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if after := CPUSeconds(os.Getpid()); after < before+0.05 {
		t.Fatalf("CPU seconds %.2f -> %.2f after 10 s of computing (%d)", before, after, x)
	}
	if CPUSeconds(1<<30) != 0 {
		t.Fatal("CPU time of a process that does not exist")
	}
}
