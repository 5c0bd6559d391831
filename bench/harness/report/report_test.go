package report

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/bench/harness/hist"
	"github.com/stratalog/strata/bench/harness/limits"
	"github.com/stratalog/strata/bench/harness/target"
	"github.com/stratalog/strata/bench/harness/workload"
)

func sample() *Report {
	h := hist.New()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * 10 * time.Microsecond)
	}
	s := h.Summarize()
	return &Report{
		Started: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Mode: "quick",
		Machine: Machine{Cores: 2, MemoryGiB: 24},
		Params:  workload.Params{RecordSize: 1024, Partitions: 4, Producers: 1, Batch: 100, InFlight: 2, Duration: time.Second},
		Limits: []limits.Rate{{Name: "disk write+fsync 100 KiB", MBPerS: 400}, {Name: "object GET 16 MiB", MBPerS: 1000},
			{Name: "zstd decode", MBPerS: 900}},
		Results: []*workload.Result{
			{Target: "strata-local", Workload: "produce", RecPerS: 150000, MBPerS: 150, Latency: &s, Cost: workload.Cost{Puts: 10, PutsPerGiB: 100}},
			{Target: "nats-js-sync", Workload: "produce", RecPerS: 50000, MBPerS: 50, Latency: &s},
			{Target: "strata-local", Workload: "e2e-open", Offered: 5000, RecPerS: 5000, MBPerS: 5, Latency: &s},
			{Target: "strata-local", Workload: "replay-ingest", Bytes: 1 << 30, Cost: workload.Cost{Puts: 1000, PutsPerGiB: 1000}},
			{Target: "strata-local", Workload: "replay", Seconds: 2, MBPerS: 700, Cost: workload.Cost{GetBytes: 1700e6, Gets: 40}},
			{Target: "strata-local", Workload: "partitions-100", MBPerS: 80},
			{Target: "strata-local", Workload: "partitions-1", MBPerS: 90},
			{Target: "strata-share", Workload: "queue-fill", RecPerS: 20000},
			{Target: "strata-share", Workload: "queue", RecPerS: 6000, Latency: &s, Latency2: &s, Cost: workload.Cost{Requests: 50, RequestsPer1k: 12.5, PutsPer1k: 6}},
			{Target: "strata-share", Workload: "queue-e2e-open", Offered: 600, Latency: &s, Latency2: &s},
			{Target: "redis-always", Workload: "queue", RecPerS: 30000, Latency: &s},
			{Target: "rabbitmq-classic", Workload: "queue", RecPerS: 60000, Latency: &s},
		},
		Queues: []target.QueueKind{{Name: "strata-share", Comparable: true, AckConfirmed: true, Durability: "WAL"},
			{Name: "redis-always", Comparable: true, AckConfirmed: true, Durability: "fsync always"},
			{Name: "rabbitmq-classic", Durability: "batched fsync"}},
		Unavailable: map[string]string{"rabbitmq-stream": "unavailable: not installed"},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	r.Judge()
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, back) {
		t.Fatalf("round trip differs:\n%+v\n%+v", r, back)
	}
}

func TestGoals(t *testing.T) {
	r := sample()
	r.Judge()
	want := map[string]struct {
		v   float64
		met bool
	}{
		"produce":  {3, true},   // 150k / 50k
		"e2e p99":  {9.9, true}, // 10..10000 µs uniform: p99 = 9.9 ms
		"cold":     {85, true},  // 1700 MB in 2 s vs 1000 MB/s
		"PUTs per": {100, true},
		"queue":    {0.2, false}, // 6k vs redis-always's 30k: the faster classic queue is not comparable
	}
	for _, g := range r.Goals {
		for k, w := range want {
			if strings.HasPrefix(g.Name, k) {
				if !g.Judged || g.Met != w.met || g.Value < w.v*0.98 || g.Value > w.v*1.02 {
					t.Errorf("%s: %+v, want value %v met %v", k, g, w.v, w.met)
				}
				delete(want, k)
			}
		}
	}
	if len(want) > 0 {
		t.Fatalf("goals not found: %v", want)
	}
	// Without a peer the first goal is not judged.
	r.Results = r.Results[:1]
	r.Judge()
	if r.Goals[0].Judged {
		t.Fatal("judged the NATS ratio without NATS")
	}
}

func TestTableAndPlots(t *testing.T) {
	r := sample()
	r.Judge()
	var b bytes.Buffer
	r.Table(&b)
	out := b.String()
	for _, s := range []string{"| strata-local | produce | 150.0k |", "e2e-open @5.0k/s", "unavailable: rabbitmq-stream", "| strata-local produce (fsync before ack) | 150 | disk write+fsync 100 KiB | 400 | 38 % |",
		"| strata-share | 20.0k | 6.0k | 5.00 | 9.90 | 5.0 / 9.9 | 12.5 (6.0) |", "| rabbitmq-classic | batched fsync | no |", "@600/s (5.0)"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Index(out, "partitions-1 ") > strings.Index(out, "partitions-100") {
		t.Error("partitions-1 should come before partitions-100")
	}
	dir := t.TempDir()
	paths, err := r.Plots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "| strata-share | queue") {
		t.Error("queue results belong in the queue table only")
	}
	if len(paths) != 6 {
		t.Fatalf("plots %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatalf("%s: not a PNG (%d bytes, %v)", p, len(b), err)
		}
	}
}
