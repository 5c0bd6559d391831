package ingest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stratalog/strata/segment"
)

// BenchmarkAppend appends 16 x 1 KiB records per batch to a local log on
// the real filesystem under each fsync policy.
func BenchmarkAppend(b *testing.B) {
	for _, p := range []FsyncPolicy{FsyncNever, FsyncInterval, FsyncAlways} {
		b.Run(p.String(), func(b *testing.B) {
			l, _, err := OpenLocalLog(LocalLogOptions{Dir: b.TempDir(), Fsync: p}, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := &segment.Batch{ProducerID: segment.NoProducer}
			for i := 0; i < 16; i++ {
				batch.Records = append(batch.Records, segment.Record{Timestamp: 1, Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte("v"), 1024)})
			}
			b.SetBytes(16 * 1024)
			b.ReportAllocs()
			for range b.N {
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
