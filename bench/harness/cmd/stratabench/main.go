// Command stratabench runs the same workloads against strata, its peers
// (NATS JetStream, Redis Streams, RabbitMQ streams; for the queue
// workload their queues: JetStream work queues, Redis consumer groups,
// RabbitMQ quorum and classic queues) and the raw limits of the machine,
// in one run, and writes a table, JSON and plots (PNG; the
// latency-versus-load curve also as SVG).
//
//	cd bench/harness && go run ./cmd/stratabench -quick -out results/
//
// It starts and stops every server itself, on loopback, with data in a
// temporary directory; peers are installed by scripts/peers.sh install.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stratalog/strata/bench/harness/limits"
	"github.com/stratalog/strata/bench/harness/report"
	"github.com/stratalog/strata/bench/harness/target"
	"github.com/stratalog/strata/bench/harness/workload"
	"github.com/stratalog/strata/tier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stratabench:", err)
		os.Exit(1)
	}
}

type config struct {
	quick, requirePeers, installPeers, noLimits, noIdem bool
	out, targets, store, repo, natsBin, tmp             string
	workloads, partitionCounts, partitionTargets        string
	curveLoads                                          string
	p                                                   workload.Params
	totalTimeout                                        time.Duration
	partitionPhase, partitionIdle                       time.Duration
	minio                                               *target.MinIO // when strata runs on MinIO: for raw PUT latencies
}

func parse(args []string) (*config, error) {
	fs := flag.NewFlagSet("stratabench", flag.ContinueOnError)
	c := &config{}
	fs.BoolVar(&c.quick, "quick", false, "quick mode (under 2 minutes; CI's smoke test): short phases, small history")
	fs.StringVar(&c.out, "out", "results", "results directory (JSON, table, PNGs)")
	fs.StringVar(&c.targets, "targets", "", "comma-separated targets (default: strata-local,nats-js-sync,redis-always,rabbitmq-stream; full mode adds strata-local-5ms, strata-none and redis-everysec). Known: strata-local, strata-none, strata-durable (each with an optional WAL flush interval: strata-local-5ms, and -records: consumers fetch broker-decoded records instead of stored blocks, strata-local-records), nats-js-sync, nats-js, redis-always, redis-everysec, rabbitmq-stream")
	fs.StringVar(&c.workloads, "workloads", "produce,e2e,curve,replay,partitions,queue", "comma-separated workloads: produce, e2e, curve, replay, partitions, queue")
	fs.BoolVar(&c.noLimits, "no-limits", false, "skip measuring the machine's limits")
	fs.StringVar(&c.store, "store", "minio", "strata's object store: minio (started via scripts/minio.sh, requests counted by a proxy) or file (embedded, no request counts)")
	fs.StringVar(&c.repo, "repo", "", "the strata repository root (default: found from the working directory)")
	fs.StringVar(&c.natsBin, "nats-server", "", "nats-server binary (default: the one scripts/peers.sh installs into the tool cache)")
	fs.StringVar(&c.tmp, "tmp", "", "parent of the temporary directories (default: the system's)")
	fs.BoolVar(&c.noIdem, "strata-no-idempotence", false, "turn the strata client's idempotent producer (its default) off")
	fs.BoolVar(&c.requirePeers, "require-peers", false, "fail when a peer cannot be installed or started (default: report it as unavailable)")
	fs.BoolVar(&c.installPeers, "install-peers", false, "run scripts/peers.sh install first")
	fs.IntVar(&c.p.RecordSize, "record-size", 1024, "record payload bytes")
	fs.IntVar(&c.p.Partitions, "partitions", 4, "partitions (produce, e2e, replay)")
	fs.IntVar(&c.p.Producers, "producers", 2, "producers (produce, replay ingest, partitions)")
	fs.IntVar(&c.p.Consumers, "consumers", 0, "tailing consumers in e2e (0: one per partition)")
	fs.IntVar(&c.p.Batch, "batch", 500, "records per request")
	fs.IntVar(&c.p.InFlight, "inflight", 4, "requests in flight per producer")
	fs.DurationVar(&c.p.Linger, "linger", time.Millisecond, "strata producer linger (others send what is queued at once)")
	fs.DurationVar(&c.p.Duration, "duration", 0, "length of each produce / latency phase (default: 2s quick, 10s full)")
	fs.Int64Var(&c.p.MaxRecords, "max-records", 20_000_000, "records per phase at most")
	fs.Float64Var(&c.p.Rate, "rate", 0, "offered records/s of the open-loop latency phase (0: half of the target's measured saturation)")
	fs.IntVar(&c.p.ReplayMiB, "replay-mib", 0, "history written then replayed, MiB (default: 16 quick, 256 full)")
	fs.DurationVar(&c.p.ReplayTimeout, "replay-timeout", 0, "bound on the replay read per target (default: 20s quick, 5m full)")
	fs.StringVar(&c.curveLoads, "curve-loads", "10,25,50,75,90", "curve: offered loads, in % of each target's own saturation (its e2e-saturation rate, measured first when e2e does not run)")
	fs.DurationVar(&c.p.CurveDuration, "curve-point-duration", 0, "curve: length of each load's open-loop phase (default: 500ms quick, 10s full); -max-records bounds its records too")
	fs.StringVar(&c.partitionCounts, "partition-counts", "", "partition counts of the partitions workload (default: 1,100 quick; 1,100,1000,10000 full)")
	fs.StringVar(&c.partitionTargets, "partition-targets", "strata-local", "comma-separated targets that run the partitions workload")
	fs.DurationVar(&c.partitionPhase, "partition-duration", 0, "length of each partitions phase, after every partition was opened (default: 2s quick, 60s full: long enough for the WAL's collection and for seals by size to show)")
	fs.DurationVar(&c.partitionIdle, "partition-idle", -1, "after each partitions phase, stay idle this long and report the object-store requests per minute (default: 0 quick, 60s full)")
	fs.Int64Var(&c.p.QueueRecords, "queue-records", 0, "queue: backlog produced before the workers start (default: 4,000 quick, 100,000 full)")
	fs.IntVar(&c.p.QueueWorkers, "queue-workers", 8, "queue: competing workers, each with its own connection")
	fs.IntVar(&c.p.QueueBatch, "queue-batch", 100, "queue: most records per receive (and per ack call); RabbitMQ's prefetch and NATS's pull window per worker")
	fs.DurationVar(&c.p.QueueWait, "queue-wait", time.Second, "queue: how long a receive waits when nothing is available")
	fs.Float64Var(&c.p.QueueRate, "queue-rate", 0, "queue: offered records/s of the light-load produce-to-receive phase (0: -queue-load of the measured drain throughput)")
	fs.Float64Var(&c.p.QueueLoad, "queue-load", 0.1, "queue: light-load rate as a fraction of the measured drain throughput (< 0: no light-load phase)")
	fs.DurationVar(&c.p.QueueTimeout, "queue-timeout", 0, "queue: bound on the fill and on the drain, each (default: 1m quick, 10m full)")
	fs.DurationVar(&c.totalTimeout, "timeout", 0, "stop everything after this long (default: 4m quick, 60m full)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	def := func(d *time.Duration, quick, full time.Duration) {
		if *d == 0 {
			*d = map[bool]time.Duration{true: quick, false: full}[c.quick]
		}
	}
	def(&c.p.Duration, 2*time.Second, 10*time.Second)
	def(&c.p.ReplayTimeout, 20*time.Second, 5*time.Minute)
	def(&c.totalTimeout, 4*time.Minute, 60*time.Minute)
	def(&c.p.QueueTimeout, time.Minute, 10*time.Minute)
	def(&c.partitionPhase, 2*time.Second, time.Minute)
	if c.partitionIdle < 0 {
		c.partitionIdle = map[bool]time.Duration{true: 0, false: time.Minute}[c.quick]
	}
	def(&c.p.CurveDuration, 500*time.Millisecond, 10*time.Second)
	loads, err := workload.ParseLoads(c.curveLoads)
	if err != nil {
		return nil, err
	}
	c.p.CurveLoads = loads
	if c.p.QueueRecords == 0 {
		c.p.QueueRecords = map[bool]int64{true: 4_000, false: 100_000}[c.quick]
	}
	if c.p.ReplayMiB == 0 {
		c.p.ReplayMiB = map[bool]int{true: 16, false: 256}[c.quick]
	}
	if c.partitionCounts == "" {
		c.partitionCounts = map[bool]string{true: "1,100", false: "1,100,1000,10000"}[c.quick]
	}
	if c.targets == "" {
		c.targets = "strata-local,nats-js-sync,redis-always,rabbitmq-stream"
		if !c.quick {
			c.targets = "strata-local,strata-local-5ms,strata-none,nats-js-sync,redis-always,redis-everysec,rabbitmq-stream"
		}
	}
	if c.p.RecordSize < 16 || c.p.Partitions < 1 || c.p.Producers < 1 || c.p.Batch < 1 || c.p.InFlight < 1 {
		return nil, errors.New("record-size >= 16, and partitions, producers, batch, inflight >= 1")
	}
	if c.p.QueueRecords < 1 || c.p.QueueWorkers < 1 || c.p.QueueBatch < 1 || c.p.QueueBatch > 1000 {
		return nil, errors.New("queue-records and queue-workers >= 1, queue-batch 1 to 1000 (strata's receive takes at most 1000)")
	}
	return c, nil
}

// findRepo walks up from the working directory to the strata module root.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/stratalog/strata\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the strata repository; pass -repo")
		}
		dir = parent
	}
}

func toolsDir() string {
	if d := os.Getenv("STRATA_TOOLS_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "strata", "bin")
}

func memGiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int
	fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
	return (kb + 1<<19) >> 20
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.totalTimeout)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "stratabench: "+format+"\n", a...) }
	if c.repo == "" {
		if c.repo, err = findRepo(); err != nil {
			return err
		}
	}
	if c.natsBin == "" {
		c.natsBin = filepath.Join(toolsDir(), "nats-server")
	}
	if c.installPeers {
		logf("installing peers (scripts/peers.sh install)")
		if out, err := runScript(ctx, filepath.Join(c.repo, "scripts", "peers.sh"), "install"); err != nil {
			logf("peers.sh install failed: %v\n%s", err, out)
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(c.tmp, "stratabench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	rep := &report.Report{Started: time.Now(), Command: "stratabench " + strings.Join(args, " "), Mode: map[bool]string{true: "quick", false: "full"}[c.quick],
		Machine: report.Machine{Cores: runtime.NumCPU(), MemoryGiB: memGiB(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Params:  c.p, Unavailable: map[string]string{}}
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		logf("FAIL: %s", msg)
		rep.Failures = append(rep.Failures, msg)
	}

	names := strings.Split(c.targets, ",")
	needStrata := false
	for _, n := range names {
		needStrata = needStrata || strings.HasPrefix(n, "strata")
	}
	var minio *target.MinIO
	var strataBin string
	if needStrata || (!c.noLimits && c.store == "minio") {
		if c.store == "minio" {
			logf("starting MinIO (scripts/minio.sh)")
			if minio, err = target.StartMinIO(ctx, c.repo, tmp); err == nil {
				c.minio = minio
			}
			if err != nil {
				return fmt.Errorf("MinIO: %w (use -store file to run without it)", err)
			}
			defer minio.Stop()
		}
	}
	if needStrata {
		logf("building strata")
		if strataBin, err = target.BuildStrata(ctx, c.repo, tmp); err != nil {
			return err
		}
	}

	payload := workload.Payloads(max(4096, 4<<20/c.p.RecordSize), c.p.RecordSize, 1)
	if !c.noLimits {
		logf("measuring the machine's limits")
		measureLimits(ctx, c, tmp, minio, payload, rep, fail)
	}

	for _, name := range names {
		if ctx.Err() != nil {
			fail("out of time before %s", name)
			break
		}
		t, err := newTarget(name, c, tmp, minio, strataBin)
		if err != nil {
			return err
		}
		logf("%s: starting", name)
		if err := t.Start(ctx); err != nil {
			t.Stop()
			if errors.Is(err, target.ErrUnavailable) && !(c.requirePeers && !strings.HasPrefix(name, "strata")) {
				logf("%s: unavailable: %v", name, err)
				rep.Unavailable[name] = err.Error()
				continue
			}
			fail("%s: start: %v", name, err)
			continue
		}
		rep.Targets = append(rep.Targets, t.Info())
		runWorkloads(ctx, c, t, rep, fail, logf)
		if has(c.workloads, "queue") {
			runQueues(ctx, c, t, rep, fail, logf)
		}
		if err := t.Stop(); err != nil {
			logf("%s: stop: %v", name, err)
		}
	}
	rep.Judge()
	if err := rep.Write(filepath.Join(c.out, "results.json")); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(c.out, "results.md"))
	if err != nil {
		return err
	}
	rep.Table(io.MultiWriter(stdout, f))
	f.Close()
	plots, err := rep.Plots(c.out)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	fmt.Fprintf(stdout, "\nwrote %s, %s and %s\n", filepath.Join(c.out, "results.json"), filepath.Join(c.out, "results.md"), strings.Join(plots, ", "))
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%d failures: %s", len(rep.Failures), strings.Join(rep.Failures, "; "))
	}
	return nil
}

func runScript(ctx context.Context, script string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "bash", append([]string{script}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func newTarget(name string, c *config, tmp string, minio *target.MinIO, strataBin string) (target.Target, error) {
	switch {
	case strings.HasPrefix(name, "strata-"):
		// strata-<acks>[-<wal flush interval>][-records], e.g.
		// strata-local-5ms; -records: consumers fetch records decoded by
		// the broker instead of stored blocks.
		rest, records := strings.CutSuffix(strings.TrimPrefix(name, "strata-"), "-records")
		acks, flush, _ := strings.Cut(rest, "-")
		if flush != "" {
			if _, err := time.ParseDuration(flush); err != nil {
				return nil, fmt.Errorf("target %q: %q is not a WAL flush interval (strata-<acks>-<duration>, e.g. strata-local-5ms)", name, flush)
			}
		}
		return target.NewStrata(target.StrataConfig{Bin: strataBin, Dir: tmp, MinIO: minio, Acks: acks, FlushInterval: flush, NoIdempotence: c.noIdem, RecordsFetch: records}), nil
	case name == "nats-js-sync":
		return target.NewNATS(target.NATSConfig{Bin: c.natsBin, Dir: tmp, Sync: "always"}), nil
	case name == "nats-js":
		return target.NewNATS(target.NATSConfig{Bin: c.natsBin, Dir: tmp, Sync: "default"}), nil
	case name == "redis-always" || name == "redis-everysec":
		return target.NewRedis(target.RedisConfig{Dir: tmp, Fsync: strings.TrimPrefix(name, "redis-")}), nil
	case name == "rabbitmq-stream":
		return target.NewRabbit(target.RabbitConfig{Dir: tmp}), nil
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func has(list, w string) bool {
	for _, x := range strings.Split(list, ",") {
		if strings.TrimSpace(x) == w {
			return true
		}
	}
	return false
}

func runWorkloads(ctx context.Context, c *config, t target.Target, rep *report.Report, fail func(string, ...any), logf func(string, ...any)) {
	name := t.Name()
	add := func(r *workload.Result) {
		if r != nil {
			rep.Results = append(rep.Results, r)
			lat := ""
			if r.Latency != nil && r.Latency.Count > 0 {
				lat = fmt.Sprintf(", p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms", r.Latency.P50, r.Latency.P99, r.Latency.P999)
			}
			if r.Cost.WALPuts > 0 {
				lat += fmt.Sprintf(", %.1f WAL PUTs/s", r.Cost.WALPutsPerS)
			}
			logf("%s %s: %.0f records/s, %.1f MB/s%s", name, r.Workload, r.RecPerS, r.MBPerS, lat)
		}
	}
	if has(c.workloads, "replay") {
		in, rp, err := workload.Replay(ctx, t, "replay", c.p)
		add(in)
		add(rp)
		if err != nil {
			fail("%s replay: %v", name, err)
		}
	}
	if has(c.workloads, "produce") {
		r, err := workload.Produce(ctx, t, "produce", c.p)
		add(r)
		if err != nil {
			fail("%s produce: %v", name, err)
		}
	}
	if has(c.workloads, "e2e") {
		sat, err := workload.EndToEnd(ctx, t, "e2esat", c.p, 0)
		add(sat)
		if err != nil {
			fail("%s e2e saturation: %v", name, err)
		}
		rate := c.p.Rate
		if rate == 0 && sat != nil {
			rate = sat.RecPerS / 2
		}
		if rate > 0 {
			r, err := workload.EndToEnd(ctx, t, "e2eopen", c.p, rate)
			add(r)
			if err != nil {
				fail("%s e2e open loop: %v", name, err)
			}
			if r != nil && c.minio != nil && r.Cost.WALPuts > 0 {
				if err := rawPutLatency(ctx, c, r); err != nil {
					fail("%s raw PUT latency: %v", name, err)
				}
			}
		}
	}
	if has(c.workloads, "curve") {
		// Each target's own saturation: the e2e workload's, else measured here.
		sat := rep.Find(name, "e2e-saturation")
		if sat == nil {
			r, err := workload.EndToEnd(ctx, t, "curvesat", c.p, 0)
			add(r)
			if err != nil {
				fail("%s curve: saturation: %v", name, err)
			}
			sat = r
		}
		if sat != nil && sat.RecPerS > 0 {
			logf("%s curve: loads %s %% of %.0f records/s, %v each", name, c.curveLoads, sat.RecPerS, c.p.CurveDuration)
			rs, err := workload.Curve(ctx, t, "curve", c.p, sat.RecPerS, c.p.CurveLoads)
			for _, r := range rs {
				add(r)
			}
			if err != nil {
				fail("%s curve: %v", name, err)
			}
		}
	}
	if has(c.workloads, "partitions") {
		if has(c.partitionTargets, name) {
			for _, s := range strings.Split(c.partitionCounts, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 {
					fail("bad partition count %q", s)
					continue
				}
				p := c.p
				p.Duration = c.partitionPhase
				r, err := workload.Partitions(ctx, t, fmt.Sprintf("parts%d", n), n, p, c.partitionIdle)
				add(r)
				if err != nil {
					fail("%s partitions-%d: %v", name, n, err)
				}
			}
		}
	}
}

// runQueues runs the queue workload on each queue kind t offers that no
// earlier target measured (strata-local and strata-none run the same
// share group: strata-share).
func runQueues(ctx context.Context, c *config, t target.Target, rep *report.Report, fail func(string, ...any), logf func(string, ...any)) {
	qr, ok := t.(target.Queuer)
	if !ok {
		return
	}
	for _, k := range qr.QueueKinds() {
		if slices.ContainsFunc(rep.Queues, func(x target.QueueKind) bool { return x.Name == k.Name }) {
			logf("%s: queue %s already measured", t.Name(), k.Name)
			continue
		}
		if ctx.Err() != nil {
			fail("out of time before queue %s", k.Name)
			return
		}
		rep.Queues = append(rep.Queues, k)
		add := func(r *workload.Result) {
			if r == nil {
				return
			}
			rep.Results = append(rep.Results, r)
			lat := ""
			if r.Latency != nil && r.Latency.Count > 0 {
				lat = fmt.Sprintf(", p50 %.2f ms, p99 %.2f ms", r.Latency.P50, r.Latency.P99)
			}
			logf("%s %s: %.0f records/s%s", k.Name, r.Workload, r.RecPerS, lat)
		}
		logf("%s: queue %s: %d records, %d workers, batches of %d", t.Name(), k.Name, c.p.QueueRecords, c.p.QueueWorkers, c.p.QueueBatch)
		fill, drain, err := workload.QueueDrain(ctx, t, k, queueName(k.Name, "q"), c.p)
		add(fill)
		add(drain)
		if err != nil {
			fail("%s queue: %v", k.Name, err)
			continue
		}
		rate := c.p.QueueRate
		if rate == 0 && c.p.QueueLoad > 0 {
			rate = drain.RecPerS * c.p.QueueLoad
		}
		if rate > 0 {
			r, err := workload.QueueEndToEnd(ctx, t, k, queueName(k.Name, "qlat"), c.p, rate)
			add(r)
			if err != nil {
				fail("%s queue e2e: %v", k.Name, err)
			}
		}
	}
}

// queueName is a queue name every target accepts: letters, digits and
// dashes (RabbitMQ's kinds share one server, so the name says the kind).
func queueName(kind, base string) string {
	return base + "-" + strings.NewReplacer(".", "-", "_", "-").Replace(kind)
}

// rawPutLatency measures, right after a strata e2e-open phase, plain
// one-at-a-time PUTs of the phase's mean WAL object size straight to
// MinIO (no proxy), the bound of the latency goals (report.Judge).
func rawPutLatency(ctx context.Context, c *config, r *workload.Result) error {
	st, err := tier.NewS3Store(ctx, tier.S3Config{Endpoint: c.minio.Endpoint, Bucket: "limits", Insecure: true, CreateBucket: true, AccessKey: c.minio.AccessKey, SecretKey: c.minio.SecretKey})
	if err != nil {
		return err
	}
	defer st.Close()
	size := int(max(r.Cost.WALPutBytes/r.Cost.WALPuts, 1))
	data := bytes.Join(workload.Payloads(64, c.p.RecordSize, 2), nil)
	sum, err := limits.PutLatency(ctx, st, data, size, map[bool]int{true: 20, false: 200}[c.quick], 10*time.Second)
	if err != nil {
		return err
	}
	r.RawPut, r.RawPutBytes = &sum, int64(size)
	return nil
}

func measureLimits(ctx context.Context, c *config, tmp string, minio *target.MinIO, payload [][]byte, rep *report.Report, fail func(string, ...any)) {
	dur := map[bool]time.Duration{true: time.Second, false: 3 * time.Second}[c.quick]
	// The WAL writes one produce request's records per append (batch *
	// record size); also the one-record size, where fsync latency rules.
	for _, ws := range []int{c.p.Batch * c.p.RecordSize, c.p.RecordSize} {
		r, err := limits.DiskFsync(tmp, ws, dur, 1<<30)
		if err != nil {
			fail("limits: disk: %v", err)
			continue
		}
		r.Note = "sequential, fsync after each write, data disk (temp dir)"
		rep.Limits = append(rep.Limits, r)
	}
	var block []byte
	for len(block) < 4<<20 {
		for _, v := range payload {
			block = append(block, v...)
		}
	}
	block = block[:4<<20]
	if rs, err := limits.Codecs(block, dur); err != nil {
		fail("limits: codecs: %v", err)
	} else {
		for i := range rs {
			rs[i].Note = strings.TrimSpace(rs[i].Note + " one core, 4 MiB blocks of the workload payload")
		}
		rep.Limits = append(rep.Limits, rs...)
	}
	if minio == nil {
		return
	}
	st, err := tier.NewS3Store(ctx, tier.S3Config{Endpoint: minio.Endpoint, Bucket: "limits", Insecure: true, CreateBucket: true, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey})
	if err != nil {
		fail("limits: MinIO: %v", err)
		return
	}
	defer st.Close()
	// Sealed segments are compressed: use zstd-compressed payload bytes.
	objSize, count := 16<<20, map[bool]int{true: 4, false: 16}[c.quick]
	put, get, ranged, err := limits.ObjectStore(ctx, st, block, objSize, count, 4<<20)
	if err != nil {
		fail("limits: MinIO PUT/GET: %v", err)
		return
	}
	for _, r := range []*limits.Rate{&put, &get, &ranged} {
		r.Note = "MinIO on loopback, one request at a time"
	}
	rep.Limits = append(rep.Limits, put, get, ranged)
}
