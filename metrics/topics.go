package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// topicSet gives topics their label values: the first max topics used
// successfully their own name, every other one OtherTopic. A topic's
// counters are resolved once (its ack modes' on their first use), so the
// hooks' fast path is a sync.Map load and atomic adds.
type topicSet struct {
	max   int
	m     *Metrics
	names sync.Map // topic name -> *topicMetrics; only admitted topics
	other *topicMetrics

	mu sync.Mutex // guards n, and serializes admissions
	n  int        // topics admitted
}

// topicMetrics are one label value's counters.
type topicMetrics struct {
	label                                    string
	m                                        *Metrics
	byAcks                                   [numAcks]atomic.Pointer[ackCounters]
	fetchResponses, fetchRecords, fetchBytes prometheus.Counter
	fetchStoredBytes                         prometheus.Counter
	sealedSegments, sealedBytes              prometheus.Counter
}

// ackCounters are one (topic, ack mode)'s produce counters.
type ackCounters struct {
	reqs, records, bytes prometheus.Counter
}

func (s *topicSet) init(max int, m *Metrics) {
	s.max, s.m = max, m
	s.other = s.build(OtherTopic)
}

func (s *topicSet) build(label string) *topicMetrics {
	m := s.m
	return &topicMetrics{
		label: label, m: m,
		fetchResponses:   m.fetchResponses.WithLabelValues(label),
		fetchRecords:     m.fetchRecords.WithLabelValues(label),
		fetchBytes:       m.fetchBytes.WithLabelValues(label),
		fetchStoredBytes: m.fetchStoredBytes.WithLabelValues(label),
		sealedSegments:   m.sealedSegments.WithLabelValues(label),
		sealedBytes:      m.sealedBytes.WithLabelValues(label),
	}
}

// get returns the counters of topic name: its own if it has a slot, or
// admit is true and a slot is free (it then takes it), else OtherTopic's.
func (s *topicSet) get(name string, admit bool) *topicMetrics {
	if v, ok := s.names.Load(name); ok {
		return v.(*topicMetrics)
	}
	if !admit || name == OtherTopic {
		return s.other
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.names.Load(name); ok {
		return v.(*topicMetrics)
	}
	if s.n >= s.max {
		return s.other
	}
	tm := s.build(name)
	s.names.Store(name, tm)
	s.n++
	return tm
}

func (s *topicSet) admitted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// acks returns the produce counters of ack mode index i, resolving them on
// first use (two racing first uses resolve the same children).
func (t *topicMetrics) acks(i int) *ackCounters {
	if c := t.byAcks[i].Load(); c != nil {
		return c
	}
	l := acksLabels[i]
	c := &ackCounters{
		reqs:    t.m.produceReqs.WithLabelValues(t.label, l),
		records: t.m.produceRecords.WithLabelValues(t.label, l),
		bytes:   t.m.produceBytes.WithLabelValues(t.label, l),
	}
	t.byAcks[i].CompareAndSwap(nil, c)
	return t.byAcks[i].Load()
}
