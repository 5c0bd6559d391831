// Package scrape reads a Prometheus text exposition (a /metrics page) into
// samples, for tests that check what a broker exports: the series names as
// PromQL sees them (a histogram's _bucket, _sum and _count), their labels
// and values.
package scrape

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series' value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Scrape is one exposition's samples.
type Scrape struct {
	Samples []Sample
}

// Get scrapes url (http://HOST:PORT/metrics).
func Get(ctx context.Context, url string) (*Scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, body)
	}
	return Parse(resp.Body)
}

// Parse reads a text exposition.
func Parse(r io.Reader) (*Scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	s := &Scrape{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(n string, v float64, extra ...string) {
				ls := labels
				if len(extra) == 2 {
					ls = make(map[string]string, len(labels)+1)
					for k, v := range labels {
						ls[k] = v
					}
					ls[extra[0]] = extra[1]
				}
				s.Samples = append(s.Samples, Sample{Name: n, Labels: ls, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				add(name+"_count", float64(h.GetSampleCount()))
				add(name+"_sum", h.GetSampleSum())
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), "le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
				}
				add(name+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
			case dto.MetricType_SUMMARY:
				add(name+"_count", float64(m.GetSummary().GetSampleCount()))
				add(name+"_sum", m.GetSummary().GetSampleSum())
			default:
				add(name, m.GetUntyped().GetValue())
			}
		}
	}
	return s, nil
}

// Sum adds the values of the samples named name whose labels include
// every label of match (label=value pairs).
func (s *Scrape) Sum(name string, match ...string) float64 {
	var sum float64
	for _, x := range s.Samples {
		if x.Name == name && matches(x.Labels, match) {
			sum += x.Value
		}
	}
	return sum
}

// Has reports whether a sample named name with every label of match
// exists.
func (s *Scrape) Has(name string, match ...string) bool {
	for _, x := range s.Samples {
		if x.Name == name && matches(x.Labels, match) {
			return true
		}
	}
	return false
}

// LabelValues lists the values of label among the samples named name,
// sorted, once each.
func (s *Scrape) LabelValues(name, label string) []string {
	seen := map[string]bool{}
	for _, x := range s.Samples {
		if v, ok := x.Labels[label]; ok && x.Name == name {
			seen[v] = true
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Names is the set of sample names.
func (s *Scrape) Names() map[string]bool {
	out := map[string]bool{}
	for _, x := range s.Samples {
		out[x.Name] = true
	}
	return out
}

func matches(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}
