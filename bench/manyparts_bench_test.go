package bench

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/core"
)

var (
	manyCounts  = flag.String("many.counts", "4,1000", "partition counts of BenchmarkManyPartitions")
	manyPhase   = flag.Duration("many.phase", 10*time.Second, "produce phase of BenchmarkManyPartitions")
	manyIdle    = flag.Duration("many.idle", 10*time.Second, "idle phase of BenchmarkManyPartitions")
	manyProfile = flag.String("many.heapprofile", "", "BenchmarkManyPartitions: write heap profiles to this path with the partition count before the extension")
	manySeal    = flag.Duration("many.seal-interval", 0, "BenchmarkManyPartitions: the partitions' SealInterval (0: the default, 10 minutes), so that a short phase includes seals by age")
)

// BenchmarkManyPartitions runs ManyPartitions (an in-process broker on a
// file:// store, requests counted) once per partition count in
// -many.counts; docs/performance.md ("Many partitions") has the command.
// Reported: records/s, PUTs per GiB over the produce phase, RSS and heap
// at its end, and requests per minute over the idle phase.
func BenchmarkManyPartitions(b *testing.B) {
	for _, s := range strings.Split(*manyCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("bad partition count %q", s)
		}
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			var r *ManyPartitionsResult
			for range b.N {
				profile := ""
				if *manyProfile != "" {
					profile = strings.Replace(*manyProfile, ".", fmt.Sprintf("-%d.", n), 1)
				}
				r, err = ManyPartitions(context.Background(), ManyPartitionsConfig{
					Partitions: n, Duration: *manyPhase, Idle: *manyIdle, Dir: b.TempDir(),
					HeapProfile: profile, Logf: b.Logf,
					Configure: func(c *core.Config) {
						if *manySeal > 0 {
							c.Partition.SealInterval = *manySeal
						}
					},
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(r.RecPerS, "records/s")
			b.ReportMetric(r.PutsPerGiB, "PUTs/GiB")
			b.ReportMetric(float64(r.Memory.RSS>>20), "RSS-MiB")
			b.ReportMetric(float64(r.Memory.HeapInuse>>20), "heap-MiB")
			b.ReportMetric(float64(r.Memory.Goroutines), "goroutines")
			b.ReportMetric(float64(r.IdleMemory.HeapInuse>>20), "idle-heap-MiB")
			b.ReportMetric(r.IdlePerMinute, "idle-req/min")
			b.Logf("warm-up %.1fs: %s", r.WarmupSeconds, FormatRequests(r.WarmupRequests))
			b.Logf("produce %.1fs, %d records: %s", r.Seconds, r.Records, FormatRequests(r.Requests))
			b.Logf("idle %.1fs: %s", r.IdleSeconds, FormatRequests(r.IdleRequests))
			b.Logf("memory: produce %+v idle %+v", r.Memory, r.IdleMemory)
		})
	}
}
