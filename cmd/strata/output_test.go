package main

// --output json (-o json) on every list and describe command: each
// prints one JSON document with the fields a script needs; text is an
// aligned table.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// jsonOut runs the command and decodes its stdout, which must be one
// JSON document, into v.
func jsonOut(t *testing.T, v any, args ...string) string {
	t.Helper()
	out := mustCLI(t, "", args...)
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("strata %v: not JSON: %v\n%s", args, err, out)
	}
	if dec.More() {
		t.Fatalf("strata %v: more than one JSON document:\n%s", args, out)
	}
	return out
}

// hasFields fails unless obj has every one of fields.
func hasFields(t *testing.T, what string, obj map[string]any, fields ...string) {
	t.Helper()
	for _, f := range fields {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s: no field %q in %v", what, f, obj)
		}
	}
}

func TestOutputJSONOnEveryListAndDescribe(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	b := []string{"--broker", s.addr}
	cli(t, "", nil, append([]string{"topic", "create", "orders", "--partitions", "2", "--consumed-by", "q"}, b...)...)
	mustCLI(t, strings.Repeat("a=1\nb=2\nc=3\n", 4), append([]string{"produce", "orders", "--key-separator", "="}, b...)...)

	// topic list
	var topics []map[string]any
	jsonOut(t, &topics, append([]string{"topic", "list", "-o", "json"}, b...)...)
	if len(topics) != 1 || topics[0]["name"] != "orders" || topics[0]["partitions"] != 2.0 {
		t.Fatalf("topic list -o json: %v", topics)
	}
	hasFields(t, "topic list", topics[0], "name", "partitions", "retention_ms", "retention_bytes", "compression", "consumed_by")
	// topic describe
	var td struct {
		Config     map[string]any   `json:"config"`
		Partitions []map[string]any `json:"partitions"`
	}
	jsonOut(t, &td, append([]string{"topic", "describe", "orders", "--output", "json"}, b...)...)
	if td.Config["name"] != "orders" || len(td.Partitions) != 2 {
		t.Fatalf("topic describe --output json: %+v", td)
	}
	hw := 0.0
	for _, p := range td.Partitions {
		hasFields(t, "topic describe partition", p, "partition", "log_start_offset", "high_watermark", "sealed_segments", "sealed_bytes", "local_bytes")
		hw += p["high_watermark"].(float64)
	}
	if hw != 12 {
		t.Fatalf("topic describe: high watermarks add up to %v, want the 12 records produced", hw)
	}

	// group list and describe, after a member read everything.
	mustCLI(t, "", append([]string{"consume", "orders", "--group", "g", "--max", "12"}, b...)...)
	var groups []map[string]any
	jsonOut(t, &groups, append([]string{"group", "list", "-o", "json"}, b...)...)
	if len(groups) != 1 || groups[0]["group"] != "g" {
		t.Fatalf("group list -o json: %v", groups)
	}
	var gd map[string]any
	jsonOut(t, &gd, append([]string{"group", "describe", "g", "-o", "json"}, b...)...)
	hasFields(t, "group describe", gd, "group", "topic", "generation", "members", "lag")
	lag, _ := gd["lag"].([]any)
	if gd["topic"] != "orders" || len(lag) != 2 {
		t.Fatalf("group describe -o json: %v", gd)
	}
	for _, l := range lag {
		l := l.(map[string]any)
		hasFields(t, "group describe lag", l, "partition", "committed", "high_watermark", "lag_records", "lag_seconds")
		if l["lag_records"] != 0.0 {
			t.Fatalf("group describe: lag %v after reading everything", l)
		}
	}

	// queue list and describe.
	mustCLI(t, "", append([]string{"queue", "create", "orders", "--group", "q", "--max-deliveries", "1", "--from", "earliest"}, b...)...)
	var qs []map[string]any
	jsonOut(t, &qs, append([]string{"queue", "list", "-o", "json"}, b...)...)
	if len(qs) != 1 || qs[0]["group"] != "q" || qs[0]["max_deliveries"] != 1.0 {
		t.Fatalf("queue list -o json: %v", qs)
	}
	var qd map[string]any
	jsonOut(t, &qd, append([]string{"queue", "describe", "orders", "--group", "q", "-o", "json"}, b...)...)
	hasFields(t, "queue describe", qd, "config", "totals", "oldest_unacked_age_ms", "partitions")

	// dlq list: a rejected record is a dead letter; -o json is a JSON
	// object a line (a stream of records, as consume --format json).
	ds, err := receiveJSON(t, s.addr, "orders", "q", 1, 10*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("receive: %v, %d records", err, len(ds))
	}
	mustCLI(t, ds[0].Receipt+"\n", append([]string{"queue", "reject", "orders", "--group", "q", "--reason", "bad order"}, b...)...)
	var dead map[string]any
	waitUntil(t, "the rejected record in the dead-letter topic", func() bool {
		out, _, err := runCLI(t, time.Minute, "", append([]string{"dlq", "list", "orders", "--group", "q", "-o", "json"}, b...)...)
		return err == nil && json.Unmarshal([]byte(out), &dead) == nil
	})
	hasFields(t, "dlq list", dead, "topic", "partition", "offset", "value", "origin_topic", "origin_partition", "origin_offset", "delivery_count", "reason")
	if dead["origin_topic"] != "orders" || dead["reason"] != "bad order" {
		t.Fatalf("dlq list -o json: %v", dead)
	}

	// stats
	var st map[string]any
	jsonOut(t, &st, append([]string{"stats", "-o", "json"}, b...)...)
	hasFields(t, "stats", st, "incarnation", "cache_hits", "cache_misses", "cache_hit_ratio", "wal_objects", "wal_bytes", "wal_buffered_bytes")

	// Text is an aligned table: a header, then one row a topic (orders
	// and its dead-letter topic), its
	// columns starting where the header's do.
	text := mustCLI(t, "", append([]string{"topic", "list"}, b...)...)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME ") || !strings.HasPrefix(lines[1], "orders ") {
		t.Fatalf("topic list:\n%s", text)
	}
	if h, r := strings.Index(lines[0], "COMPRESSION"), strings.Index(lines[1], "zstd"); h < 0 || h != r {
		t.Fatalf("topic list: columns not aligned:\n%s", text)
	}
	if _, errs, err := runCLI(t, time.Minute, "", append([]string{"topic", "list", "-o", "yaml"}, b...)...); err == nil || !strings.Contains(errs, `--output "yaml": use text or json`) {
		t.Fatalf("topic list -o yaml: %v %s", err, errs)
	}
}
