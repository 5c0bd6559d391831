package main

// strata export parquet: a topic's sealed ranges as Parquet files
// (package export), once from the command line; and the flags and wiring
// of a broker's continuous export (serve --export-to).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/export"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

const exportUsage = `usage: strata export parquet TOPIC --object-store URL --to URL
         [--from-time T --to-time T | --from-offset P:O[,P:O...] --to-offset P:O[,P:O...]]
         [--row-group-bytes N] [--row-group-limit N] [--file-bytes N] [--spool-dir DIR] [--parallel N]

Exports the sealed records of TOPIC, read from the bucket alone (no broker
needed), as Parquet files under the --to store:

  topic=TOPIC/date=YYYY-MM-DD/partition=P/<first>-<last>.parquet

with an export manifest per partition under _strata/export/ that makes the
export exactly-once and resumable: run the same command again after a kill
or a failure and it continues where it stopped, without duplicates or gaps.
Ranges already exported are never exported again. Only sealed records are
exported: the brokers seal a partition at --seal-bytes or --seal-interval.

Bounds: --from-time/--to-time (RFC 3339) apply to every partition (each
starts at its first record at or after the time, and stops before the first
at or after --to-time); --from-offset/--to-offset give offsets per
partition (from inclusive, to exclusive) and limit the run to the
partitions they name. A --from-offset below a partition's log start is an
error. docs/export.md has the details.
`

func exportCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "parquet" {
		fmt.Fprint(os.Stderr, exportUsage)
		return errors.New("usage: strata export parquet TOPIC --object-store URL --to URL")
	}
	fs := flag.NewFlagSet("export parquet", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), exportUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	d := export.DefaultConfig()
	source := fs.String("object-store", "", "the source bucket, as the brokers' --object-store: file:///abs/dir or s3://bucket/prefix?endpoint=HOST:PORT&insecure=true (required)")
	to := fs.String("to", "", "where the Parquet files go: file:///abs/dir or s3://bucket/prefix?... (required)")
	fromTime := fs.String("from-time", "", "start each partition at its first record at or after this RFC 3339 time")
	toTime := fs.String("to-time", "", "end each partition before its first record at or after this RFC 3339 time")
	fromOffset := fs.String("from-offset", "", "P:O[,P:O...]: start partition P at offset O (inclusive)")
	toOffset := fs.String("to-offset", "", "P:O[,P:O...]: end partition P before offset O (exclusive)")
	rowGroup := sizeFlag(fs, "row-group-bytes", d.RowGroupBytes, "cut a row group once its rows reach this many bytes (uncompressed)")
	rowLimit := sizeFlag(fs, "row-group-limit", 0, "a row group never grows past this many bytes (default 2x --row-group-bytes)")
	fileBytes := sizeFlag(fs, "file-bytes", d.FileBytes, "cut a file once its records reach this many bytes of sealed segments (the Parquet file is about as big)")
	spool := fs.String("spool-dir", d.SpoolDir, "local directory a file is built in before its upload")
	parallel := fs.Int("parallel", 1, "partitions exported at once (memory grows with it)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if err := flagDefaults(fs); err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: strata export parquet TOPIC --object-store URL --to URL (one topic)")
	}
	topic := pos[0]
	if *source == "" || *to == "" {
		return errors.New("strata export parquet: --object-store (the brokers' bucket) and --to (where the files go) are both required")
	}
	var b export.Bounds
	if (*fromTime != "" || *toTime != "") && (*fromOffset != "" || *toOffset != "") {
		return errors.New("strata export parquet: give time bounds (--from-time/--to-time) or offset bounds (--from-offset/--to-offset), not both")
	}
	for _, f := range []struct {
		flag, v string
		dst     *time.Time
	}{{"--from-time", *fromTime, &b.FromTime}, {"--to-time", *toTime, &b.ToTime}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			return fmt.Errorf("%s %q: want an RFC 3339 time such as 2024-03-01T00:00:00Z", f.flag, f.v)
		}
		*f.dst = t
	}
	if !b.FromTime.IsZero() && !b.ToTime.IsZero() && !b.ToTime.After(b.FromTime) {
		return fmt.Errorf("--to-time %s is not after --from-time %s", *toTime, *fromTime)
	}
	if b.FromOffset, err = parseOffsets("--from-offset", *fromOffset); err != nil {
		return err
	}
	if b.ToOffset, err = parseOffsets("--to-offset", *toOffset); err != nil {
		return err
	}
	for _, m := range []map[int32]int64{b.FromOffset, b.ToOffset} {
		for p := range m {
			if !containsPartition(b.Partitions, p) {
				b.Partitions = append(b.Partitions, p)
			}
		}
	}
	src, err := tier.Open(ctx, *source)
	if err != nil {
		return fmt.Errorf("--object-store: %w", err)
	}
	defer src.Close()
	dst, err := tier.Open(ctx, *to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()
	cfg := d
	cfg.Source, cfg.Target = src, dst
	cfg.RowGroupBytes, cfg.RowGroupLimit, cfg.FileBytes = int64(*rowGroup), int64(*rowLimit), int64(*fileBytes)
	cfg.SpoolDir, cfg.Parallel = *spool, *parallel
	e, err := export.New(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	pr := newProgressPrinter(os.Stderr, isTerminal(os.Stderr))
	start := time.Now()
	res, err := e.Export(ctx, topic, b, pr.update)
	pr.finish()
	if res != nil {
		printExportSummary(os.Stdout, res, tier.RedactURL(*to), time.Since(start))
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: the files committed so far stay exported; run the same command again to continue (%w)", err)
		}
		return err
	}
	return nil
}

func containsPartition(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// parseOffsets parses P:O[,P:O...].
func parseOffsets(flagName, s string) (map[int32]int64, error) {
	if s == "" {
		return nil, nil
	}
	out := map[int32]int64{}
	for _, f := range strings.Split(s, ",") {
		ps, offs, ok := strings.Cut(strings.TrimSpace(f), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(offs, 10, 64)
		if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
			return nil, fmt.Errorf("%s %q: want PARTITION:OFFSET pairs separated by commas, like 0:1000,1:2000", flagName, s)
		}
		if _, dup := out[int32(p)]; dup {
			return nil, fmt.Errorf("%s %q: partition %d given twice", flagName, s, p)
		}
		out[int32(p)] = o
	}
	return out, nil
}

// progressPrinter shows an export's progress on stderr: a bar redrawn in
// place on a terminal, else a plain line per committed file and at most
// one a second between.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu    sync.Mutex
	last  time.Time
	files int
	p     export.Progress
	shown export.Progress // what the last line or bar showed
	drawn bool            // a bar was drawn (its line is open)
}

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, start: time.Now()}
}

func (pp *progressPrinter) update(p export.Progress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.p = p
	now := time.Now()
	every := time.Second
	if pp.tty {
		every = 100 * time.Millisecond
	}
	if p.Files == pp.files && now.Sub(pp.last) < every {
		return
	}
	pp.files, pp.last = p.Files, now
	pp.draw(now)
}

func (pp *progressPrinter) draw(now time.Time) {
	p := pp.p
	pp.shown = p
	elapsed := now.Sub(pp.start).Seconds()
	frac := 1.0
	if p.TotalRecords > 0 {
		frac = min(1, float64(p.Records)/float64(p.TotalRecords))
	}
	rate, mbps := 0.0, 0.0
	if elapsed > 0 {
		rate, mbps = float64(p.Records)/elapsed, float64(p.SegmentBytes)/elapsed/1e6
	}
	eta := "?"
	if rate > 0 && p.TotalRecords >= p.Records {
		eta = (time.Duration(float64(p.TotalRecords-p.Records)/rate) * time.Second).Round(time.Second).String()
	}
	stats := fmt.Sprintf("%d/%d records, %s/%s, %.0f records/s, %.1f MB/s, %d files, ETA %s",
		p.Records, p.TotalRecords, fmtBytes(p.SegmentBytes), fmtBytes(p.TotalSegmentBytes), rate, mbps, p.Files, eta)
	if !pp.tty {
		fmt.Fprintf(pp.w, "export: %3.0f%% %s\n", 100*frac, stats)
		return
	}
	const width = 30
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	if n < width {
		bar = bar[:n] + ">" + bar[n+1:]
	}
	fmt.Fprintf(pp.w, "\r[%s] %3.0f%% %s\x1b[K", bar, 100*frac, stats)
	pp.drawn = true
}

// finish draws the last state and ends the bar's line.
func (pp *progressPrinter) finish() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.tty || pp.shown != pp.p {
		pp.draw(time.Now())
	}
	if pp.drawn {
		fmt.Fprintln(pp.w)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// printExportSummary prints what a run did, in total and per partition.
func printExportSummary(w io.Writer, res *export.Result, to string, took time.Duration) {
	files, records, pq, seg := res.Totals()
	ratio := 0.0
	if seg > 0 {
		ratio = float64(pq) / float64(seg)
	}
	secs := max(took.Seconds(), 1e-9)
	fmt.Fprintf(w, "exported topic %s to %s: %d files, %d records, %s of Parquet from %s of segments (%.2f Parquet bytes per segment byte) in %s (%.0f records/s, %.1f MB/s)\n",
		res.Topic, to, files, records, fmtBytes(pq), fmtBytes(seg), ratio, took.Round(time.Millisecond), float64(records)/secs, float64(seg)/secs/1e6)
	for _, p := range res.Partitions {
		fmt.Fprintf(w, "partition %d: offsets %d to %d (log start %d, sealed end %d): %d files, %d records", p.Partition, p.From, p.To, p.LogStart, p.SealedEnd, p.Files, p.Records)
		if p.Adopted > 0 {
			fmt.Fprintf(w, ", %d stored by an earlier or concurrent run", p.Adopted)
		}
		if p.Misfits > 0 {
			fmt.Fprintf(w, ", %d records did not fit the value schema (kept in _raw)", p.Misfits)
		}
		if p.Skipped > 0 {
			fmt.Fprintf(w, ", %d offsets skipped (deleted by retention before they were exported)", p.Skipped)
		}
		if p.Lost > 0 {
			fmt.Fprintf(w, ", %d offsets of an unfinished claim lost to retention", p.Lost)
		}
		if p.Busy {
			fmt.Fprint(w, ", skipped: another exporter is writing it")
		}
		fmt.Fprintln(w)
	}
}

// Continuous export in the broker (serve).

// exportFlags are serve's continuous-export flags.
type exportFlags struct {
	to       *string
	interval *time.Duration
}

func addExportFlags(fs *flag.FlagSet) exportFlags {
	return exportFlags{
		to:       fs.String("export-to", "", "where the topics with export=parquet are exported: file:///abs/dir or s3://bucket/prefix?... (default: this broker's --object-store under exports/)"),
		interval: fs.Duration("export-interval", 30*time.Second, "how often newly sealed ranges of topics with export=parquet are exported"),
	}
}

// exportTakeOver is how long a broker leaves another exporter's claim to
// it before finishing it itself (export.Config.TakeOverAfter).
const exportTakeOver = 5 * time.Minute

// start runs the export loop over the broker's bucket st, exporting the
// partitions this broker owns (all of them when gc is nil or cannot tell),
// and returns the function that stops it.
func (f exportFlags) start(ctx context.Context, st tier.Store, gc *gossipCluster, dataDir string, log *slog.Logger) (func(), error) {
	cfg := export.DefaultConfig()
	cfg.Source, cfg.Target, cfg.Prefix = st, st, strings.TrimSuffix(meta.ExportsPrefix, "/")
	var target tier.Store
	if *f.to != "" {
		t, err := tier.Open(ctx, *f.to)
		if err != nil {
			return nil, fmt.Errorf("--export-to: %w", err)
		}
		target = t
		cfg.Target, cfg.Prefix = t, ""
	}
	spool := filepath.Join(dataDir, "export-spool")
	os.RemoveAll(spool) // a killed broker's leftovers: never trusted
	if err := os.MkdirAll(spool, 0o755); err != nil {
		return nil, fmt.Errorf("export spool: %w", err)
	}
	cfg.Spool, cfg.SpoolDir = vfs.Default, spool
	cfg.TakeOverAfter, cfg.Logger = exportTakeOver, log
	e, err := export.New(cfg)
	if err != nil {
		if target != nil {
			target.Close()
		}
		return nil, err
	}
	owns := func(t *export.Topic, p int32) bool {
		if gc == nil {
			return true
		}
		o := gc.Owner((&core.TopicConfig{Name: t.Name, Colocate: t.Colocate}).OwnerKey(p))
		return o.ID == "" || o.ID == gc.Self().ID
	}
	l := e.StartLoop(export.LoopConfig{Interval: *f.interval, Owns: owns})
	return func() {
		l.Close()
		e.Close()
		if target != nil {
			target.Close()
		}
	}, nil
}
