package main

// strata export parquet against the real binary, read back by DuckDB the
// way an analyst would (scripts/duckdb.sh installs its Node.js client;
// scripts/test.sh runs that first, and under CI=true a missing DuckDB
// fails these tests).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/export"
	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/internal/testenv"
)

// duckQuery runs SQL with DuckDB (scripts/duckdb-query.mjs) and returns
// the rows.
func duckQuery(t testing.TB, sql string) []map[string]any {
	t.Helper()
	dir := testenv.DuckDB(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "duckdb-query.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, sql)
	cmd.Env = append(os.Environ(), "STRATA_DUCKDB_DIR="+dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb %s: %v\n%s", sql, err, errb.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("duckdb printed %q: %v", out.String(), err)
	}
	return rows
}

// num reads a DuckDB number (JSON numbers decode as float64).
func num(t testing.TB, row map[string]any, col string) int64 {
	t.Helper()
	switch v := row[col].(type) {
	case float64:
		return int64(v)
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			return n
		}
	}
	t.Fatalf("column %s of %v is not a number", col, row)
	return 0
}

// produceSealed runs a broker, creates topic "events" with parts
// partitions, produces n records (keys, a header, JSON values), stops the
// broker (which seals everything) and returns the bucket's URL, the
// partitions' record counts and the UTC dates the records were produced on.
func produceSealed(t testing.TB, parts, n int, create ...string) (store string, counts []int, dates map[string]bool) {
	t.Helper()
	data := t.TempDir()
	s := serveBin(t, data, "")
	cli(t, "", nil, append([]string{"topic", "create", "events", "--partitions", strconv.Itoa(parts), "--broker", s.addr}, create...)...)
	var in strings.Builder
	for i := range n {
		v, _ := json.Marshal(map[string]any{"n": i, "user": fmt.Sprintf("u-%d", i%31), "pad": strings.Repeat("x", i%50)})
		if i == misfitRecord {
			v = []byte("not json")
		}
		line, _ := json.Marshal(map[string]any{"key": fmt.Sprintf("user-%d", i%97), "value": string(v), "headers": map[string]string{"trace": fmt.Sprintf("t-%d", i)}})
		in.Write(line)
		in.WriteByte('\n')
	}
	dates = map[string]bool{export.DateOf(time.Now().UnixMilli()): true}
	if got := strings.TrimSpace(cli(t, in.String(), nil, "produce", "events", "--format", "json", "--broker", s.addr)); got != strconv.Itoa(n) {
		t.Fatalf("produce acknowledged %s of %d", got, n)
	}
	dates[export.DateOf(time.Now().UnixMilli())] = true
	counts = hwms(t, cli(t, "", nil, "topic", "describe", "events", "--broker", s.addr))
	s.stop(t) // SIGTERM seals every partition
	return "file://" + filepath.Join(data, "bucket"), counts, dates
}

// misfitRecord is the one record produceSealed gives a value that is not
// JSON.
const misfitRecord = 1234

// glob is the read_parquet pattern of an export under dir.
func glob(dir string) string { return filepath.Join(dir, "**", "*.parquet") }

// checkCounts proves with DuckDB that the export under dir holds partition
// p's offsets 0..counts[p]-1, each exactly once.
func checkCounts(t testing.TB, dir string, counts []int) {
	t.Helper()
	rows := duckQuery(t, fmt.Sprintf(`SELECT partition, count(*) AS n, count(DISTINCT "offset") AS d, min("offset") AS lo, max("offset") AS hi
		FROM read_parquet('%s', hive_partitioning = true) GROUP BY partition ORDER BY partition`, glob(dir)))
	var want []map[string]int64
	for p, n := range counts {
		if n > 0 {
			want = append(want, map[string]int64{"partition": int64(p), "n": int64(n), "d": int64(n), "lo": 0, "hi": int64(n - 1)})
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("DuckDB sees %d partitions (%v), want %d (%v)", len(rows), rows, len(want), counts)
	}
	for i, w := range want {
		for col, v := range w {
			if got := num(t, rows[i], col); got != v {
				t.Fatalf("DuckDB: partition %d: %s = %d, want %d (rows %v)", w["partition"], col, got, v, rows)
			}
		}
	}
}

// The export of a sealed topic, read by DuckDB with hive_partitioning:
// per partition, count(*), min(offset) and max(offset) are what was
// produced; topic and date come from the paths.
func TestExportDuckDB(t *testing.T) {
	testenv.DuckDB(t)
	const n = 20000
	store, counts, dates := produceSealed(t, 3, n)
	out := t.TempDir()
	// From the bucket alone: no broker is running.
	summary := cli(t, "", nil, "export", "parquet", "events", "--object-store", store, "--to", "file://"+out,
		"--file-bytes", "64KiB", "--row-group-bytes", "32KiB")
	if !strings.Contains(summary, fmt.Sprintf(" %d records", n)) {
		t.Fatalf("summary: %s", summary)
	}
	checkCounts(t, out, counts)
	rows := duckQuery(t, fmt.Sprintf(`SELECT DISTINCT topic, CAST(date AS VARCHAR) AS date FROM read_parquet('%s', hive_partitioning = true)`, glob(out)))
	for _, r := range rows {
		if r["topic"] != "events" || !dates[r["date"].(string)] {
			t.Fatalf("hive columns %v; want topic events and a date of %v", r, dates)
		}
	}
	// A second run finds everything exported.
	if again := cli(t, "", nil, "export", "parquet", "events", "--object-store", store, "--to", "file://"+out); !strings.Contains(again, ": 0 files, 0 records") {
		t.Fatalf("a second run: %s", again)
	}
	checkCounts(t, out, counts)
}

// A topic with a JSON value schema, exported with its typed layout and
// queried by DuckDB: the typed columns, the one record whose value is not
// JSON kept in _raw with the reason in _invalid (and counted in the
// summary), the headers and keys beside them; and the same JSON read from
// the value blob of a topic without a schema, with DuckDB's JSON functions.
func TestExportDuckDBTypedColumns(t *testing.T) {
	testenv.DuckDB(t)
	const n = 5000
	store, _, _ := produceSealed(t, 2, n, "--value-schema", `{"fields":[{"name":"n","type":"int64"},{"name":"user","type":"string"},{"name":"pad","type":"string"}]}`)
	out := t.TempDir()
	summary := cli(t, "", nil, "export", "parquet", "events", "--object-store", store, "--to", "file://"+out)
	if !strings.Contains(summary, "1 records did not fit the value schema") {
		t.Fatalf("summary does not report the misfit: %s", summary)
	}
	rows := duckQuery(t, fmt.Sprintf(`SELECT sum(n) AS total, count(DISTINCT "user") AS users, count(n) AS typed,
		count(*) FILTER (WHERE _invalid IS NOT NULL AND decode(_raw) = 'not json') AS misfits,
		count(*) FILTER (WHERE len(headers) = 1 AND headers[1].key = 'trace' AND (n IS NULL OR decode(headers[1].value) = 't-' || n)) AS traced,
		count(DISTINCT decode(key)) AS keys
		FROM read_parquet('%s', hive_partitioning = true)`, glob(out)))
	want := map[string]int64{"total": n*(n-1)/2 - misfitRecord, "users": 31, "typed": n - 1, "misfits": 1, "traced": n, "keys": 97}
	for col, w := range want {
		if got := num(t, rows[0], col); got != w {
			t.Fatalf("DuckDB: %s = %d, want %d (%v)", col, got, w, rows[0])
		}
	}

	// No schema: the value blob, read with DuckDB's JSON functions.
	store, _, _ = produceSealed(t, 2, n)
	out = t.TempDir()
	cli(t, "", nil, "export", "parquet", "events", "--object-store", store, "--to", "file://"+out)
	rows = duckQuery(t, fmt.Sprintf(`SELECT sum(json_extract(decode(value), '$.n')::BIGINT) AS total,
		count(DISTINCT json_extract_string(decode(value), '$.user')) AS users
		FROM read_parquet('%s', hive_partitioning = true) WHERE json_valid(decode(value))`, glob(out)))
	for col, w := range map[string]int64{"total": n*(n-1)/2 - misfitRecord, "users": 31} {
		if got := num(t, rows[0], col); got != w {
			t.Fatalf("DuckDB on the value blob: %s = %d, want %d (%v)", col, got, w, rows[0])
		}
	}
}

// An export killed midway, twice (at a failpoint between a file's PUT and
// its commit, then by SIGKILL after a committed file), and run again:
// DuckDB counts each record exactly once.
func TestExportKilledMidwayDuckDB(t *testing.T) {
	testenv.DuckDB(t)
	const n = 30000
	store, counts, _ := produceSealed(t, 3, n)
	out := t.TempDir()
	args := []string{"export", "parquet", "events", "--object-store", store, "--to", "file://" + out, "--file-bytes", "16KiB", "--row-group-bytes", "8KiB"}

	// 1: the process dies (exit 77, like kill -9) right after its third
	// file is stored, before the file's range is committed.
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "STRATA_FAILPOINTS="+failpoint.ExportFileStored+"=3")
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != failpoint.ExitCode {
		t.Fatalf("the export did not crash at the failpoint: %v", err)
	}
	pending := 0
	files, _ := filepath.Glob(filepath.Join(out, "_strata", "export", "events", "*", "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := export.DecodeManifest(data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Pending != nil {
			pending++
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(m.Pending.Key))); err != nil {
				t.Fatalf("the claim's file is not stored: %v", err)
			}
		}
	}
	if pending != 1 {
		t.Fatalf("%d claims pending after the crash, want 1 (the file stored but not committed)", pending)
	}

	// 2: SIGKILL once its progress shows a committed file.
	cmd = exec.Command(binary, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	filesRE := regexp.MustCompile(`, ([0-9]+) files,`)
	killed := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := filesRE.FindStringSubmatch(sc.Text()); m != nil && m[1] != "0" && !killed {
			cmd.Process.Kill()
			killed = true
		}
	}
	err := cmd.Wait()
	if killed && err == nil {
		t.Log("the export finished before SIGKILL reached it")
	} else {
		t.Logf("the second run ended by %v", err)
	}
	if !killed {
		t.Fatalf("the export printed no committed file (%v)", err)
	}

	// 3: runs to the end.
	summary := cli(t, "", nil, args...)
	if !strings.Contains(summary, "exported topic events") {
		t.Fatalf("summary: %s", summary)
	}
	checkCounts(t, out, counts)
	rows := duckQuery(t, fmt.Sprintf(`SELECT count(*) AS n, count(DISTINCT (partition, "offset")) AS d FROM read_parquet('%s', hive_partitioning = true)`, glob(out)))
	if num(t, rows[0], "n") != n || num(t, rows[0], "d") != n {
		t.Fatalf("DuckDB: count(*) = %v, distinct (partition, offset) = %v; want %d each", rows[0]["n"], rows[0]["d"], n)
	}
}

// Continuous mode: a broker exports the newly sealed ranges of a topic
// whose config says export=parquet to its own bucket under exports/, and
// stops its export loop at shutdown.
func TestServeExportsMarkedTopics(t *testing.T) {
	testenv.DuckDB(t)
	data := t.TempDir()
	bucket := filepath.Join(data, "bucket")
	addr := freeAddr(t)
	b := startBroker(t, addr, data, "file://"+bucket, nil, "--seal-interval", "1s", "--export-interval", "1s")
	cli(t, "", nil, "topic", "create", "events", "--partitions", "2", "--export", "parquet", "--broker", addr)
	cli(t, "", nil, "topic", "create", "plain", "--partitions", "1", "--broker", addr)
	const n = 3000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d=v%d\n", i%13, i)
	}
	cli(t, in.String(), nil, "produce", "events", "--key-separator", "=", "--broker", addr)
	cli(t, "a\nb\n", nil, "produce", "plain", "--broker", addr)
	counts := hwms(t, cli(t, "", nil, "topic", "describe", "events", "--broker", addr))
	exports := filepath.Join(bucket, "exports")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the broker's log:\n%s", b.logs.String())
			out, _ := exec.Command("find", bucket).CombinedOutput()
			t.Logf("the bucket holds:\n%s", out)
		}
	})
	waitUntil(t, "the broker to export every sealed record", func() bool {
		matches, _ := filepath.Glob(filepath.Join(exports, "topic=events", "*", "*", "*.parquet"))
		if len(matches) == 0 {
			return false
		}
		rows := duckQuery(t, fmt.Sprintf(`SELECT count(*) AS n FROM read_parquet('%s')`, glob(exports)))
		return num(t, rows[0], "n") == n
	})
	checkCounts(t, exports, counts)
	if m, _ := filepath.Glob(filepath.Join(exports, "topic=plain")); len(m) != 0 {
		t.Fatal("topic plain (no export setting) was exported")
	}
	b.cmd.Process.Signal(os.Interrupt)
	if code := b.waitExit(t, time.Minute); code != 0 {
		t.Fatalf("broker exited with %d:\n%s", code, b.logs.String())
	}
}

// Bad command lines and bad targets fail with an error that says what to
// do, and write nothing.
func TestExportCLIBadInput(t *testing.T) {
	bucket := "file://" + t.TempDir()
	out := t.TempDir()
	to := "file://" + out
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"export"}, "usage"},
		{[]string{"export", "csv", "t"}, "usage"},
		{[]string{"export", "parquet", "--to", to, "--object-store", bucket}, "one topic"},
		{[]string{"export", "parquet", "t", "--to", to}, "--object-store"},
		{[]string{"export", "parquet", "t", "--object-store", bucket}, "--to"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--from-time", "2024-01-01T00:00:00Z", "--from-offset", "0:1"}, "not both"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--from-offset", "0"}, "PARTITION:OFFSET"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--from-offset", "0:1,0:2"}, "given twice"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--from-time", "yesterday"}, "RFC 3339"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--from-time", "2024-01-02T00:00:00Z", "--to-time", "2024-01-01T00:00:00Z"}, "not after"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", "ftp://x/y"}, "--to"},
		{[]string{"export", "parquet", "t", "--object-store", bucket, "--to", to, "--file-bytes", "0"}, "FileBytes"},
		{[]string{"export", "parquet", "nosuch", "--object-store", bucket, "--to", to}, `topic "nosuch" does not exist`},
	} {
		err := run(t.Context(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v; want an error saying %q", tc.args, err, tc.says)
		}
	}
	for _, name := range []string{"_strata", "topic=t", "topic=nosuch"} {
		if _, err := os.Stat(filepath.Join(out, name)); err == nil {
			t.Fatalf("bad input wrote %s to the target", name)
		}
	}
}

// The progress display: plain lines off a terminal (one per committed
// file, at most one a second between), a bar redrawn in place on one.
func TestExportProgressPrinter(t *testing.T) {
	var plain bytes.Buffer
	pp := newProgressPrinter(&plain, false)
	total := export.Progress{TotalRecords: 1000, TotalSegmentBytes: 1 << 20}
	for i := int64(1); i <= 10; i++ {
		p := total
		p.Records, p.SegmentBytes, p.Files = i*100, i<<17/10, int(i/5)
		pp.update(p)
	}
	pp.finish()
	lines := strings.Split(strings.TrimSpace(plain.String()), "\n")
	// The first report, the two that committed a file, and the final state
	// (already shown by the last update: not repeated).
	if len(lines) != 3 || !strings.Contains(lines[0], "100/1000 records") || !strings.Contains(lines[2], "100% 1000/1000 records") ||
		!strings.Contains(lines[2], "2 files") || !strings.Contains(lines[2], "ETA 0s") {
		t.Fatalf("plain progress:\n%s", plain.String())
	}
	var bar bytes.Buffer
	pp = newProgressPrinter(&bar, true)
	p := total
	p.Records = 500
	pp.update(p)
	pp.finish()
	if s := bar.String(); !strings.HasPrefix(s, "\r[===============>") || !strings.Contains(s, " 50% 500/1000 records") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("bar: %q", s)
	}
}
