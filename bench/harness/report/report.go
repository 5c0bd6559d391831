// Package report is the benchmark's output: one JSON document, a text
// table that puts strata next to its peers and next to the machine's
// limits (and tables of the queues and of the latency-versus-load curve
// with its S3 PUT cost, curve.go), and plots: PNGs (throughput bars,
// latency percentile curves) and the latency-versus-load curve as SVG
// and PNG. Results are only read here, never changed.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stratalog/strata/bench/harness/limits"
	"github.com/stratalog/strata/bench/harness/target"
	"github.com/stratalog/strata/bench/harness/workload"
)

// Report is everything one run measured.
type Report struct {
	Started     time.Time          `json:"started"`
	Command     string             `json:"command"`
	Mode        string             `json:"mode"` // quick or full
	Machine     Machine            `json:"machine"`
	Params      workload.Params    `json:"params"`
	Targets     []target.Info      `json:"targets"`
	Queues      []target.QueueKind `json:"queues,omitempty"`      // the queue kinds measured, with their durability
	Unavailable map[string]string  `json:"unavailable,omitempty"` // target -> reason
	Limits      []limits.Rate      `json:"limits"`
	Results     []*workload.Result `json:"results"`
	Goals       []Goal             `json:"goals"`
	Failures    []string           `json:"failures,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	Cores     int    `json:"cores"`
	MemoryGiB int    `json:"memory_gib"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
}

// Goal is one of the targets, judged (not asserted).
type Goal struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Bound  float64 `json:"bound"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Judged bool    `json:"judged"` // false: not measurable in this run
	Note   string  `json:"note,omitempty"`
}

// Write stores the report as JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Read loads a report written by Write.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Find returns the result of workload on target, or nil.
func (r *Report) Find(targetName, wl string) *workload.Result {
	for _, x := range r.Results {
		if x.Target == targetName && x.Workload == wl {
			return x
		}
	}
	return nil
}

// Limit returns the limit whose name starts with prefix, or nil.
func (r *Report) Limit(prefix string) *limits.Rate {
	for i := range r.Limits {
		if strings.HasPrefix(r.Limits[i].Name, prefix) {
			return &r.Limits[i]
		}
	}
	return nil
}

// Judge computes the goals from the results.
func (r *Report) Judge() {
	r.Goals = nil
	// 1. produce with fsync-before-ack >= 1.5x NATS JetStream (sync always).
	g := Goal{Name: "produce, fsync before ack: strata-local / nats-js-sync", Bound: 1.5, Unit: "x"}
	if s, n := r.Find("strata-local", "produce"), r.Find("nats-js-sync", "produce"); s != nil && n != nil && n.RecPerS > 0 {
		g.Value, g.Judged = s.RecPerS/n.RecPerS, true
		g.Met = g.Value >= g.Bound
	}
	r.Goals = append(r.Goals, g)
	// 2. e2e p99 with local acks < 10 ms at half of saturation: for
	// strata-local and for each variant with another WAL flush interval.
	judged := false
	for _, s := range r.Results {
		if s.Target != "strata-local" && !strings.HasPrefix(s.Target, "strata-local-") || s.Workload != "e2e-open" {
			continue
		}
		g = Goal{Name: "e2e p99, local acks, open loop at half of saturation (" + s.Target + ")", Bound: 10, Unit: "ms"}
		if s.Latency != nil && s.Latency.Count > 0 {
			g.Value, g.Judged = s.Latency.P99, true
			g.Met = g.Value < g.Bound
			r.Goals = append(r.Goals, g)
			judged = true
		}
	}
	if !judged {
		r.Goals = append(r.Goals, Goal{Name: "e2e p99, local acks, open loop at half of saturation", Bound: 10, Unit: "ms"})
	}
	// Issue 17's latency goals, for each strata target with durable acks
	// at half of its saturation: e2e p99 under 100 ms at the default
	// flush interval; e2e p99, and the producer's ack p99, at most the
	// flush interval + 2 x the raw PUT p99 of the phase's mean WAL object
	// size (measured right after it); with a 5 ms flush interval, e2e p99
	// at most 30 ms.
	for _, s := range r.Results {
		if s.Target != "strata-durable" && !strings.HasPrefix(s.Target, "strata-durable-") || s.Workload != "e2e-open" || s.Latency == nil || s.Latency.Count == 0 {
			continue
		}
		flush := 50.0
		if d, err := time.ParseDuration(strings.TrimPrefix(s.Target, "strata-durable-")); err == nil {
			flush = float64(d) / float64(time.Millisecond)
		}
		if s.Target == "strata-durable" {
			r.Goals = append(r.Goals, Goal{Name: "e2e p99, durable acks, default settings, half of saturation (strata-durable)", Bound: 100, Unit: "ms", Judged: true, Value: s.Latency.P99, Met: s.Latency.P99 < 100})
		}
		if flush == 5 {
			r.Goals = append(r.Goals, Goal{Name: "e2e p99, durable acks, 5 ms flush interval, half of saturation (" + s.Target + ")", Bound: 30, Unit: "ms", Judged: true, Value: s.Latency.P99, Met: s.Latency.P99 <= 30})
		}
		if s.RawPut != nil && s.RawPut.Count > 0 {
			bound := flush + 2*s.RawPut.P99
			note := fmt.Sprintf("raw PUT of %s: p99 %.1f ms over %d PUTs", sizeText(s.RawPutBytes), s.RawPut.P99, s.RawPut.Count)
			r.Goals = append(r.Goals, Goal{Name: "e2e p99 / (flush interval + 2 x raw PUT p99), half of saturation (" + s.Target + ")", Bound: 1, Unit: "x", Judged: true, Value: s.Latency.P99 / bound, Met: s.Latency.P99 <= bound, Note: note})
			if s.Latency2 != nil && s.Latency2.Count > 0 {
				r.Goals = append(r.Goals, Goal{Name: "produce ack p99 / (flush interval + 2 x raw PUT p99), half of saturation (" + s.Target + ")", Bound: 1, Unit: "x", Judged: true, Value: s.Latency2.P99 / bound, Met: s.Latency2.P99 <= bound, Note: note})
			}
		}
	}
	// 3. cold replay >= 80% of raw MinIO GET rate.
	g = Goal{Name: "cold replay / raw MinIO GET byte rate (stored bytes)", Bound: 80, Unit: "%"}
	for _, x := range r.Results {
		if strings.HasPrefix(x.Target, "strata") && x.Workload == "replay" && x.Cost.GetBytes > 0 {
			if l := r.Limit("object GET"); l != nil && l.MBPerS > 0 {
				// Compare like with like: bytes fetched from the store per second.
				g.Value, g.Judged = 100*float64(x.Cost.GetBytes)/1e6/x.Seconds/l.MBPerS, true
				g.Met = g.Value >= g.Bound
				g.Note = fmt.Sprintf("%s: %.0f MB/s of payload, %.0f MB/s fetched", x.Target, x.MBPerS, float64(x.Cost.GetBytes)/1e6/x.Seconds)
			}
			break
		}
	}
	r.Goals = append(r.Goals, g)
	// 4. PUTs per GiB ingested <= 256 at sustained load: the produce
	// phase (the replay history's figure, which includes sealing every
	// partition at shutdown, is in the table).
	g = Goal{Name: "PUTs per GiB ingested, sustained produce", Bound: 256, Unit: "PUTs/GiB"}
	if x := r.Find("strata-local", "produce"); x != nil && x.Cost.Puts > 0 {
		g.Value, g.Judged = x.Cost.PutsPerGiB, true
		g.Met = g.Value <= g.Bound
		g.Note = x.Target
	}
	r.Goals = append(r.Goals, g)
	// 5. queue throughput: strata's share group (each WAL flush interval
	// measured) at least that of the fastest peer queue with comparable
	// durability.
	name := "queue throughput (received+acked/s): strata / fastest peer of comparable durability"
	var best *workload.Result
	for _, k := range r.Queues {
		if !k.Comparable || strings.HasPrefix(k.Name, "strata") {
			continue
		}
		if x := r.Find(k.Name, "queue"); x != nil && x.Missing == 0 && (best == nil || x.RecPerS > best.RecPerS) {
			best = x
		}
	}
	judged = false
	for _, k := range r.Queues {
		s := r.Find(k.Name, "queue")
		if !strings.HasPrefix(k.Name, "strata") || s == nil || best == nil || best.RecPerS <= 0 {
			continue
		}
		g = Goal{Name: name + " (" + k.Name + ")", Bound: 1, Unit: "x", Judged: true, Value: s.RecPerS / best.RecPerS}
		g.Met = g.Value >= g.Bound
		g.Note = fmt.Sprintf("%s vs %s/s on %s", human(s.RecPerS), human(best.RecPerS), best.Target)
		r.Goals = append(r.Goals, g)
		judged = true
	}
	if !judged {
		r.Goals = append(r.Goals, Goal{Name: name, Bound: 1, Unit: "x"})
	}
}

// sizeText is n bytes in KiB or MiB.
func sizeText(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
}

// QueueKind returns the queue kind named name, or nil.
func (r *Report) QueueKind(name string) *target.QueueKind {
	for i := range r.Queues {
		if r.Queues[i].Name == name {
			return &r.Queues[i]
		}
	}
	return nil
}

func isQueue(wl string) bool { return strings.HasPrefix(wl, "queue") }

func human(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}

// Table writes the results as Markdown tables.
func (r *Report) Table(w io.Writer) {
	fmt.Fprintf(w, "stratabench %s mode, %s, %d cores, %d GiB, %s\n\n", r.Mode, r.Started.UTC().Format(time.RFC3339), r.Machine.Cores, r.Machine.MemoryGiB, r.Machine.GoVersion)
	p := r.Params
	fmt.Fprintf(w, "record %d B, %d partitions, %d producers, batch %d, %d in flight, %v per phase\n\n", p.RecordSize, p.Partitions, p.Producers, p.Batch, p.InFlight, p.Duration)
	if slices.ContainsFunc(r.Results, func(x *workload.Result) bool { return !isQueue(x.Workload) && !isCurve(x.Workload) }) {
		fmt.Fprintln(w, "| target | workload | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | PUTs/GiB | GETs/GiB | stored/produced | RSS MiB | notes |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		res := append([]*workload.Result(nil), r.Results...)
		order := map[string]int{}
		for i, t := range r.Targets {
			order[t.Name] = i
		}
		sort.SliceStable(res, func(i, j int) bool { return wlOrder(res[i].Workload) < wlOrder(res[j].Workload) })
		for _, x := range res {
			if isQueue(x.Workload) || isCurve(x.Workload) {
				continue // their own tables
			}
			p50, p99, p999 := "", "", ""
			if x.Latency != nil && x.Latency.Count > 0 {
				p50, p99, p999 = fmt.Sprintf("%.2f", x.Latency.P50), fmt.Sprintf("%.2f", x.Latency.P99), fmt.Sprintf("%.2f", x.Latency.P999)
			}
			wl := x.Workload
			if x.Offered > 0 {
				wl = fmt.Sprintf("%s @%s/s", wl, human(x.Offered))
			}
			puts, gets, stored := "", "", ""
			if x.Cost.PutsPerGiB > 0 {
				puts = fmt.Sprintf("%.0f", x.Cost.PutsPerGiB)
			}
			if x.Cost.GetsPerGiB > 0 {
				gets = fmt.Sprintf("%.0f", x.Cost.GetsPerGiB)
			}
			if x.Cost.StoredPerProduced > 0 {
				stored = fmt.Sprintf("%.2f", x.Cost.StoredPerProduced)
			}
			notes := []string{}
			if x.Errors > 0 {
				notes = append(notes, fmt.Sprintf("%d errors", x.Errors))
			}
			if x.Missing > 0 {
				notes = append(notes, fmt.Sprintf("%d never received", x.Missing))
			}
			if x.Note != "" {
				notes = append(notes, x.Note)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %.0f | %s |\n", x.Target, wl, human(x.RecPerS), x.MBPerS, p50, p99, p999, puts, gets, stored,
				float64(x.Cost.RSSBytes)/(1<<20), strings.Join(notes, "; "))
		}
	}
	r.curveTable(w)
	if len(r.Unavailable) > 0 {
		fmt.Fprintln(w)
		names := make([]string, 0, len(r.Unavailable))
		for n := range r.Unavailable {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "unavailable: %s: %s\n", n, r.Unavailable[n])
		}
	}
	r.queueTable(w)
	fmt.Fprintln(w, "\nlimits of the machine (same run):\n\n| limit | MB/s | ops/s | note |\n|---|---|---|---|")
	for _, l := range r.Limits {
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %s |\n", l.Name, l.MBPerS, l.OpsPerS, l.Note)
	}
	fmt.Fprintln(w, "\nstrata against its bounds:\n\n| strata figure | MB/s | bound | bound MB/s | % of bound |\n|---|---|---|---|---|")
	for _, b := range r.Bounds() {
		fmt.Fprintf(w, "| %s | %.0f | %s | %.0f | %.0f %% |\n", b.Figure, b.MBPerS, b.Limit, b.LimitMBPerS, b.Percent)
	}
	fmt.Fprintln(w, "\ngoals (reported, not asserted):\n\n| goal | value | bound | met |\n|---|---|---|---|")
	for _, g := range r.Goals {
		met := "not measured"
		if g.Judged {
			met = map[bool]string{true: "yes", false: "**no**"}[g.Met]
		}
		v := "—"
		if g.Judged {
			v = fmt.Sprintf("%.2f %s", g.Value, g.Unit)
		}
		note := ""
		if g.Note != "" {
			note = " (" + g.Note + ")"
		}
		fmt.Fprintf(w, "| %s%s | %s | %.4g %s | %s |\n", g.Name, note, v, g.Bound, g.Unit, met)
	}
}

// queueTable writes the queue workload's results: one row per queue kind.
func (r *Report) queueTable(w io.Writer) {
	if len(r.Queues) == 0 {
		return
	}
	p := r.Params
	fmt.Fprintf(w, "\nqueues: a backlog of %d records of %d B, %d workers, receive up to %d and ack them in one call; receive→ack is from the receive call returning to the ack call returning:\n\n",
		p.QueueRecords, p.RecordSize, p.QueueWorkers, p.QueueBatch)
	fmt.Fprintln(w, "| queue | fill records/s | records/s (received+acked) | receive→ack p50 ms | p99 ms | receive call p50 / p99 ms | requests / 1,000 acks (PUTs) | server CPU % | store CPU % | RSS MiB | light load: produce→receive p50 / p99 ms (produce confirm p50) | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range r.Queues {
		fill, x, e2e := r.Find(k.Name, "queue-fill"), r.Find(k.Name, "queue"), r.Find(k.Name, "queue-e2e-open")
		cell := func(f func() string, ok bool) string {
			if !ok {
				return ""
			}
			return f()
		}
		fr := cell(func() string { return human(fill.RecPerS) }, fill != nil)
		var rate, p50, p99, recv, reqs, cpu, scpu, rss, light string
		var notes []string
		if x != nil {
			rate = human(x.RecPerS)
			if x.Latency != nil && x.Latency.Count > 0 {
				p50, p99 = fmt.Sprintf("%.2f", x.Latency.P50), fmt.Sprintf("%.2f", x.Latency.P99)
			}
			if x.Latency2 != nil && x.Latency2.Count > 0 {
				recv = fmt.Sprintf("%.1f / %.1f", x.Latency2.P50, x.Latency2.P99)
			}
			if x.Cost.Requests > 0 {
				reqs = fmt.Sprintf("%.1f (%.1f)", x.Cost.RequestsPer1k, x.Cost.PutsPer1k)
			}
			cpu = fmt.Sprintf("%.0f", x.Cost.CPUPercent)
			if x.Cost.StoreCPUSeconds > 0 {
				scpu = fmt.Sprintf("%.0f", x.Cost.StoreCPUPercent)
			}
			rss = fmt.Sprintf("%.0f", float64(x.Cost.RSSBytes)/(1<<20))
			if x.Missing > 0 {
				notes = append(notes, fmt.Sprintf("%d never acked", x.Missing))
			}
			if x.Redelivered > 0 {
				notes = append(notes, fmt.Sprintf("%d delivered again", x.Redelivered))
			}
			if x.Unacked != 0 {
				notes = append(notes, fmt.Sprintf("server holds %d unacked", x.Unacked))
			}
			if x.Errors > 0 {
				notes = append(notes, fmt.Sprintf("%d errors", x.Errors))
			}
			if x.Note != "" {
				notes = append(notes, x.Note)
			}
		}
		if e2e != nil && e2e.Latency != nil && e2e.Latency.Count > 0 {
			light = fmt.Sprintf("%.1f / %.1f @%s/s", e2e.Latency.P50, e2e.Latency.P99, human(e2e.Offered))
			if e2e.Latency2 != nil && e2e.Latency2.Count > 0 {
				light += fmt.Sprintf(" (%.1f)", e2e.Latency2.P50)
			}
			if e2e.Missing > 0 {
				notes = append(notes, fmt.Sprintf("light load: %d never received", e2e.Missing))
			}
		}
		if !k.AckConfirmed {
			notes = append(notes, "ack has no reply: receive→ack is the client's send")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.Name, fr, rate, p50, p99, recv, reqs, cpu, scpu, rss, light, strings.Join(notes, "; "))
	}
	fmt.Fprintln(w, "\n| queue | durability | comparable to strata's |\n|---|---|---|")
	for _, k := range r.Queues {
		fmt.Fprintf(w, "| %s | %s | %s |\n", k.Name, k.Durability, map[bool]string{true: "yes", false: "no"}[k.Comparable])
	}
}

// Bound is a strata figure next to the machine limit it is bounded by.
type Bound struct {
	Figure      string  `json:"figure"`
	MBPerS      float64 `json:"mb_per_s"`
	Limit       string  `json:"limit"`
	LimitMBPerS float64 `json:"limit_mb_per_s"`
	Percent     float64 `json:"percent"`
}

// Bounds pairs strata figures with limits.
func (r *Report) Bounds() []Bound {
	var out []Bound
	add := func(fig string, mb float64, l *limits.Rate) {
		if l != nil && l.MBPerS > 0 && mb > 0 {
			out = append(out, Bound{fig, mb, l.Name, l.MBPerS, 100 * mb / l.MBPerS})
		}
	}
	for _, x := range r.Results {
		if !strings.HasPrefix(x.Target, "strata") {
			continue
		}
		switch x.Workload {
		case "produce":
			if x.Target == "strata-local" {
				add(x.Target+" produce (fsync before ack)", x.MBPerS, r.Limit("disk write+fsync"))
			}
			add(x.Target+" produce", x.MBPerS, r.Limit("zstd fastest encode"))
		case "replay":
			if x.Cost.GetBytes > 0 {
				add(x.Target+" cold replay, bytes fetched", float64(x.Cost.GetBytes)/1e6/x.Seconds, r.Limit("object GET"))
			}
			add(x.Target+" replay, payload bytes", x.MBPerS, r.Limit("zstd decode"))
		case "replay-ingest":
			if x.Cost.PutBytes > 0 {
				add(x.Target+" ingest, bytes PUT", float64(x.Cost.PutBytes)/1e6/x.Seconds, r.Limit("object PUT"))
			}
		}
	}
	return out
}

func wlOrder(w string) string {
	for i, p := range []string{"produce", "e2e-saturation", "e2e-open", "curve", "replay-ingest", "replay", "partitions", "queue-fill", "queue-e2e", "queue"} {
		if strings.HasPrefix(w, p) {
			n := 0
			fmt.Sscanf(strings.TrimPrefix(strings.TrimPrefix(w, p), "-"), "%d", &n)
			return fmt.Sprintf("%d%08d%s", i, n, w)
		}
	}
	return "9" + w
}
