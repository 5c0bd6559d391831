package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
)

// promqlKeywords are PromQL words that are not metric names when they
// stand alone (operators, modifiers, literals).
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// labelListWords are followed by a parenthesized list of label names.
var labelListWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

var nameMatcherRE = regexp.MustCompile(`__name__\s*=\s*"([^"]+)"`)

// promqlMetricNames returns the metric names a PromQL expression selects:
// every identifier that is not a function or aggregation (followed by
// "("), a keyword, a label name (inside {...} or a by/without/on/...
// list), a duration or number, a string, or a Grafana variable ($x,
// ${x}); plus the names of {__name__="..."} matchers.
func promqlMetricNames(expr string) ([]string, error) {
	var names []string
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	// skipTo returns the index just past the closer matching expr[i],
	// stepping over strings.
	skipTo := func(i int, open, closer byte) (int, error) {
		depth := 0
		for j := i; j < len(expr); j++ {
			switch c := expr[j]; c {
			case '"', '\'', '`':
				k := j + 1
				for ; k < len(expr) && expr[k] != c; k++ {
					if expr[k] == '\\' && c != '`' {
						k++
					}
				}
				if k >= len(expr) {
					return 0, fmt.Errorf("unterminated string at %d in %q", j, expr)
				}
				j = k
			case open:
				depth++
			case closer:
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c at %d in %q", open, i, expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			// A string literal standing alone (label_replace's arguments).
			k := i + 1
			for ; k < len(expr) && expr[k] != c; k++ {
				if expr[k] == '\\' && c != '`' {
					k++
				}
			}
			if k >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			i = k + 1
		case c == '{':
			end, err := skipTo(i, '{', '}')
			if err != nil {
				return nil, err
			}
			for _, m := range nameMatcherRE.FindAllStringSubmatch(expr[i:end], -1) {
				names = append(names, m[1])
			}
			i = end
		case c == '[':
			end, err := skipTo(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = end
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				end, err := skipTo(i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = end
				continue
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			// A number or a duration (5m, 1e-9 reads as 1e, -, 9).
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
				k++
			}
			switch {
			case labelListWords[word] && k < len(expr) && expr[k] == '(':
				end, err := skipTo(k, '(', ')')
				if err != nil {
					return nil, err
				}
				j = end
			case k < len(expr) && expr[k] == '(':
				// A function or an aggregation.
			case hasWordAt(expr, k, "by") || hasWordAt(expr, k, "without"):
				// An aggregation with its grouping first: sum by (x) (...).
			case promqlKeywords[word]:
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// hasWordAt reports whether word stands at expr[k:] as a whole word.
func hasWordAt(expr string, k int, word string) bool {
	if !strings.HasPrefix(expr[k:], word) {
		return false
	}
	e := k + len(word)
	if e == len(expr) {
		return true
	}
	c := expr[e]
	return !(c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') || (c >= '0' && c <= '9'))
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (topic) (rate(strata_produce_records_total{instance=~"$instance"}[$__rate_interval]))`: {"strata_produce_records_total"},
		`histogram_quantile(0.99, sum(rate(a_bucket{le!="x", code=~"b|c"}[5m])) by (le, acks))`:        {"a_bucket"},
		`x / on (instance) group_left (zone) y offset 5m > bool 1e-9`:                                  {"x", "y"},
		`sum without (topic) (a) and b or c unless d`:                                                  {"a", "b", "c", "d"},
		`{__name__="via_matcher", job="j"} + ${var} * $var2`:                                           {"via_matcher"},
		`label_replace(up2, "dst", "$1", "src", "(.*)") + .5 + 0x1F`:                                   {"up2"},
		`max_over_time(m:recorded[1h:5m])`:                                                             {"m:recorded"},
	} {
		got, err := promqlMetricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("promqlMetricNames(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
	for _, bad := range []string{`rate(x[5m)`, `x{a="b}`} {
		if _, err := promqlMetricNames(bad); err == nil {
			t.Errorf("promqlMetricNames(%q) accepted", bad)
		}
	}
}

var labelValuesRE = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)

// dashboardMetricNames reads deploy/grafana/strata.json: the metric names
// of every panel query ("expr") and every template variable's
// label_values(...), once each, sorted.
func dashboardMetricNames(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/grafana/strata.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/strata.json is not JSON: %v", err)
	}
	seen := map[string]bool{}
	exprs := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs++
					names, err := promqlMetricNames(s)
					if err != nil {
						t.Errorf("dashboard query: %v", err)
					}
					if len(names) == 0 {
						t.Errorf("dashboard query %q selects no metric", s)
					}
					for _, n := range names {
						seen[n] = true
					}
				}
				if s, ok := x.(string); ok && (k == "definition" || k == "query") {
					for _, m := range labelValuesRE.FindAllStringSubmatch(s, -1) {
						seen[m[1]] = true
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if exprs < 10 {
		t.Fatalf("the dashboard has %d queries; the walk missed them", exprs)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Every metric the dashboard queries exists in a running broker's scrape
// under a small load (produce, a failed produce, fetch, seals, a lagging
// group): a renamed metric breaks this test, not the dashboard.
func TestDashboardMetricsExist(t *testing.T) {
	names := dashboardMetricNames(t)
	for _, must := range []string{"strata_produce_records_total", "strata_consumer_lag_seconds", "strata_object_store_requests_total", "strata_cache_hits_total"} {
		if !slices.Contains(names, must) {
			t.Fatalf("the dashboard does not query %s (names found: %v)", must, names)
		}
	}
	b := startObsBroker(t, "--metrics-listen", "127.0.0.1:0", "--metrics-lag-interval", "200ms", "--seal-bytes", "16KiB")
	obsLoad(t, stratapb.NewStrataClient(b.dial(t)), 6, 50, 100)
	var missing []string
	// Lag and seals come a moment after the load: look again, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		have := b.scrape(t).Names()
		missing = missing[:0]
		for _, n := range names {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("the dashboard queries metrics the broker does not export: %s", strings.Join(missing, ", "))
	}
	b.stop(t)
}
