package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `strata topic create --value-format/--value-schema/--export` reach the
// broker and come back in create, describe and list (the schema compact,
// from a file after @); a bad schema or format is refused with the
// broker's words and creates nothing.
func TestTopicCreateValueSchema(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	file := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(file, []byte(`{"fields": [
  {"name": "user", "type": "string"},
  {"name": "amount", "type": "float64"}
]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const compact = `{"fields":[{"name":"user","type":"string"},{"name":"amount","type":"float64"}]}`
	out := cli(t, "", nil, "topic", "create", "pay", "--value-schema", "@"+file, "--export", "parquet", "--broker", s.addr)
	if !strings.Contains(out, "json values with schema "+compact) || !strings.Contains(out, "exported to parquet") {
		t.Fatalf("create said %q", out)
	}
	out = cli(t, "", nil, "topic", "describe", "pay", "--broker", s.addr)
	if !strings.Contains(out, "export parquet") || !strings.Contains(out, "value_format json, value_schema "+compact) {
		t.Fatalf("describe said %q", out)
	}
	if got := hwms(t, out); len(got) != 1 {
		t.Fatalf("describe's partition table changed shape: %q", out)
	}

	out = cli(t, "", nil, "topic", "create", "ev", "--value-format", "json", "--partitions", "2", "--broker", s.addr)
	if !strings.Contains(out, "json values (schema inferred from the first records") {
		t.Fatalf("create said %q", out)
	}
	out = cli(t, "", nil, "topic", "describe", "ev", "--broker", s.addr)
	if !strings.Contains(out, "value_format json, value_schema not fixed yet") {
		t.Fatalf("describe said %q", out)
	}
	out = cli(t, "", nil, "topic", "list", "--broker", s.addr)
	if !regexp.MustCompile(`(?m)^pay +.* json +parquet$`).MatchString(out) || !regexp.MustCompile(`(?m)^ev +.* json +-$`).MatchString(out) {
		t.Fatalf("list said %q", out)
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--value-schema", `{"fields": [{"name": "a", "type": "int"}]}`}, `field "a" has type "int"; the types are`},
		{[]string{"--value-schema", `{"fields": [`}, "value_schema"},
		{[]string{"--value-format", "xml"}, `value_format "xml" is not one strata knows`},
		{[]string{"--export", "orc"}, `export "orc" is not one strata knows`},
		{[]string{"--value-schema", "@" + filepath.Join(t.TempDir(), "missing.json")}, "name a readable file"},
	} {
		args := append([]string{"topic", "create", "bad"}, tc.args...)
		_, err := cliWithin(t, time.Minute, "", append(args, "--broker", s.addr)...)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.says)
		}
	}
	if out := cli(t, "", nil, "topic", "list", "--broker", s.addr); regexp.MustCompile(`(?m)^bad `).MatchString(out) {
		t.Fatalf("a refused create made a topic: %q", out)
	}
}
