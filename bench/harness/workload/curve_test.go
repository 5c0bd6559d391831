package workload

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratalog/strata/bench/harness/target"
)

// The latency curve against a real strata broker on MinIO (under
// scripts/with-minio.sh; required under CI=true): a point per load, in
// the order given, each at its fraction of the saturation, with
// end-to-end and produce-ack latencies for every record received, and
// the broker's WAL object PUTs counted by the proxy from the keys strata
// really writes (a durable ack needs one, so every point has some).
func TestCurveStrataMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	ep := os.Getenv("STRATA_TEST_MINIO_ENDPOINT")
	if ep == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but STRATA_TEST_MINIO_ENDPOINT is not set (run under scripts/with-minio.sh)")
		}
		t.Skip("no MinIO: run under scripts/with-minio.sh")
	}
	minio := &target.MinIO{Endpoint: ep, AccessKey: os.Getenv("STRATA_TEST_MINIO_ACCESS_KEY"), SecretKey: os.Getenv("STRATA_TEST_MINIO_SECRET_KEY")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin, err := target.BuildStrata(ctx, filepath.Join("..", "..", ".."), tmp)
	if err != nil {
		t.Fatal(err)
	}
	tg := target.NewStrata(target.StrataConfig{Bin: bin, Dir: tmp, MinIO: minio, Acks: "durable", FlushInterval: "10ms"})
	if err := tg.Start(ctx); err != nil {
		tg.Stop()
		t.Fatal(err)
	}
	defer tg.Stop()
	p := Params{RecordSize: 256, Partitions: 2, Producers: 1, Batch: 100, InFlight: 2, Linger: time.Millisecond,
		Duration: time.Second, MaxRecords: 1 << 20, CurveDuration: 400 * time.Millisecond}
	const sat = 4000.0 // records/s: well below what the broker carries, so every point keeps up
	loads := []float64{0.5, 0.1}
	rs, err := Curve(ctx, tg, "curve", p, sat, loads)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(loads) {
		t.Fatalf("%d points, want %d", len(rs), len(loads))
	}
	for i, r := range rs {
		if r.Workload != curveName(loads[i]) || r.Load != loads[i] || r.Offered != sat*loads[i] {
			t.Errorf("point %d: %s at load %v, %v/s; want %s at %v", i, r.Workload, r.Load, r.Offered, curveName(loads[i]), sat*loads[i])
		}
		// 0.4 s at 2,000/s and 400/s: the schedule's 800 and 160 records.
		if want := int64(sat * loads[i] * 0.4); r.Records != want || r.Missing != 0 || r.Errors != 0 {
			t.Errorf("%s: %d received, %d never received, %d errors (%s); want %d", r.Workload, r.Records, r.Missing, r.Errors, r.Note, want)
		}
		if r.Latency == nil || r.Latency.Count != r.Records || r.Latency2 == nil || r.Latency2.Count != r.Records {
			t.Errorf("%s: latencies %+v / %+v for %d records", r.Workload, r.Latency, r.Latency2, r.Records)
		}
		if r.Cost.WALPuts == 0 || r.Cost.WALPutsPerS <= 0 || r.Cost.WALPutBytes < r.Records*int64(p.RecordSize)/8 || r.Cost.Puts < r.Cost.WALPuts {
			t.Errorf("%s: WAL PUTs not counted: %+v", r.Workload, r.Cost)
		}
	}
}
