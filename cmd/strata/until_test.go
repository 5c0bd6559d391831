package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// consume --until T prints each partition's records before T and stops
// at the first at or after it; with T in the past it ends at once past
// the last record before it, and with T ahead, once the clock passes it.
func TestConsumeUntil(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	b := []string{"--broker", s.addr}
	cli(t, "", nil, append([]string{"topic", "create", "ticks", "--partitions", "3"}, b...)...)
	var before, after strings.Builder
	for i := range 60 {
		before.WriteString("k" + strconv.Itoa(i) + "=before\n")
		after.WriteString("k" + strconv.Itoa(i) + "=after\n")
	}
	mustCLI(t, before.String(), append([]string{"produce", "ticks", "--key-separator", "="}, b...)...)
	time.Sleep(5 * time.Millisecond) // the broker stamps in ms: T after every "before"
	until := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(5 * time.Millisecond)
	mustCLI(t, after.String(), append([]string{"produce", "ticks", "--key-separator", "="}, b...)...)

	out, err := cliWithin(t, time.Minute, "", append([]string{"consume", "ticks", "--until", until, "--format", "json"}, b...)...)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct{ Value string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if r.Value != "before" {
			t.Fatalf("consume --until %s printed a record produced after it: %s", until, line)
		}
		n++
	}
	if n != 60 {
		t.Fatalf("consume --until printed %d records; want the 60 before it", n)
	}
	// --max stops first when it comes first.
	if out := cli(t, "", nil, append([]string{"consume", "ticks", "--until", until, "--max", "7"}, b...)...); strings.Count(out, "\n") != 7 {
		t.Fatalf("--until with --max 7 printed %d lines", strings.Count(out, "\n"))
	}
	// A time ahead, no record after it: the command ends once the clock
	// passes it, with everything there is.
	ahead := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	out, err = cliWithin(t, time.Minute, "", append([]string{"consume", "ticks", "--until", ahead}, b...)...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "\n"); got != 120 {
		t.Fatalf("consume --until a time ahead printed %d records; want all 120", got)
	}
	if _, errs, err := runCLI(t, time.Minute, "", append([]string{"consume", "ticks", "--until", "tomorrow"}, b...)...); err == nil || !strings.Contains(errs, "use RFC3339") {
		t.Fatalf("--until tomorrow: %v %s", err, errs)
	}
	if _, errs, err := runCLI(t, time.Minute, "", append([]string{"consume", "ticks", "--until", until, "--group", "g"}, b...)...); err == nil || !strings.Contains(errs, "drop --group") {
		t.Fatalf("--until with --group: %v %s", err, errs)
	}
}
