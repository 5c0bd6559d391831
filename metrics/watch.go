package metrics

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Watch registers the metrics read from b (the read cache, the WAL buffer,
// partitions owned, consumer lag) and starts the lag goroutine, whose first
// round runs at once. It is called once, with the broker whose Config.Hooks
// hold m; Close stops the goroutine.
func (m *Metrics) Watch(b Broker) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.mu.closed:
		return errors.New("metrics: Watch after Close")
	case m.mu.watching:
		return errors.New("metrics: Watch called twice; one Metrics watches one broker")
	}
	if err := m.reg.Register(&brokerCollector{m: m, b: b}); err != nil {
		return err
	}
	m.mu.watching = true
	go m.lagLoop(b)
	return nil
}

// lagState is the latest lag round's result.
type lagState struct {
	mu        sync.Mutex // guards the fields below
	points    []lagPoint
	omitted   int       // groups left out by the limits
	updatedAt time.Time // end of the latest round; zero before the first
}

type lagPoint struct {
	group, topic, partition string
	records                 int64
	seconds                 float64
}

func (m *Metrics) lagLoop(b Broker) {
	defer close(m.done)
	t := time.NewTicker(m.cfg.LagInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.LagTimeout)
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		m.refreshLag(ctx, b)
		cancel()
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
	}
}

// refreshLag runs one lag round: the groups b reports lag for, the first
// MaxLagGroups by name, each described (committed offsets against the high
// watermarks, and the age of the first record not consumed), within
// MaxLagPartitions series in all. A group that cannot be described keeps
// no series this round and counts in strata_consumer_lag_errors_total.
func (m *Metrics) refreshLag(ctx context.Context, b Broker) {
	groups, err := b.LagGroups(ctx)
	if err != nil {
		m.lagErrors.Inc()
		m.cfg.Logger.Debug("metrics: listing consumer groups for lag", "err", err)
		return
	}
	var points []lagPoint
	omitted := 0
	for i, g := range groups {
		if i >= m.cfg.MaxLagGroups {
			omitted += len(groups) - i
			break
		}
		d, err := b.DescribeGroup(ctx, g)
		if err != nil {
			if ctx.Err() != nil {
				omitted += len(groups) - i
				m.lagErrors.Inc()
				m.cfg.Logger.Debug("metrics: the consumer lag round ran out of time", "groups_left", len(groups)-i, "err", err)
				break
			}
			m.lagErrors.Inc()
			m.cfg.Logger.Debug("metrics: describing a consumer group for lag", "group", g, "err", err)
			continue
		}
		if len(points)+len(d.Lag) > m.cfg.MaxLagPartitions {
			omitted++
			continue
		}
		for _, l := range d.Lag {
			points = append(points, lagPoint{group: d.Group, topic: d.Topic, partition: strconv.Itoa(int(l.Partition)), records: l.LagRecords, seconds: l.LagSeconds})
		}
	}
	m.lag.mu.Lock()
	m.lag.points, m.lag.omitted, m.lag.updatedAt = points, omitted, time.Now()
	m.lag.mu.Unlock()
}

// RefreshLag runs one consumer-lag round now (tests; the goroutine Watch
// starts runs them every LagInterval).
func (m *Metrics) RefreshLag(ctx context.Context, b Broker) { m.refreshLag(ctx, b) }

// brokerCollector reads the broker at each scrape: Stats once and
// OpenPartitions once, and the latest lag round.
type brokerCollector struct {
	m *Metrics
	b Broker
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descCacheHits        = desc("strata_cache_hits_total", "Read-cache block lookups served from memory or disk.")
	descCacheDiskHits    = desc("strata_cache_disk_hits_total", "Read-cache block lookups served from the disk level.")
	descCacheMisses      = desc("strata_cache_misses_total", "Read-cache block lookups that waited for a GET.")
	descCacheGets        = desc("strata_cache_gets_total", "Ranged GETs the read cache issued (blocks and footers).")
	descCacheFetched     = desc("strata_cache_fetched_bytes_total", "Bytes the read cache's GETs returned.")
	descCacheEvictions   = desc("strata_cache_evictions_total", "Blocks evicted from the read cache.")
	descCacheMemory      = desc("strata_cache_memory_bytes", "Compressed block bytes in the read cache's memory now.")
	descCacheDisk        = desc("strata_cache_disk_bytes", "Bytes in the read cache's disk level now.")
	descWALBuffered      = desc("strata_wal_buffered_bytes", "Bytes received but not yet stored in a WAL object (now).")
	descPartitionsOwned  = desc("strata_partitions_owned", "Partitions open for writes on this broker (claimed by it).")
	descLagRecords       = desc("strata_consumer_lag_records", "Records a consumer group has not consumed yet: high watermark minus committed offset.", "group", "topic", "partition")
	descLagSeconds       = desc("strata_consumer_lag_seconds", "Age of the first record a consumer group has not consumed (0 when caught up).", "group", "topic", "partition")
	descLagOmitted       = desc("strata_consumer_lag_omitted_groups", "Consumer groups left out of the latest lag round by the limits (or its timeout).")
	descLagUpdated       = desc("strata_consumer_lag_updated_timestamp_seconds", "When the latest consumer-lag round ended (Unix time; 0 before the first).")
	brokerCollectorDescs = []*prometheus.Desc{
		descCacheHits, descCacheDiskHits, descCacheMisses, descCacheGets, descCacheFetched, descCacheEvictions,
		descCacheMemory, descCacheDisk, descWALBuffered, descPartitionsOwned,
		descLagRecords, descLagSeconds, descLagOmitted, descLagUpdated,
	}
)

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range brokerCollectorDescs {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descCacheHits, st.Cache.Hits)
	counter(descCacheDiskHits, st.Cache.DiskHits)
	counter(descCacheMisses, st.Cache.Misses)
	counter(descCacheGets, st.Cache.Gets)
	counter(descCacheFetched, st.Cache.BytesFetched)
	counter(descCacheEvictions, st.Cache.Evictions)
	gauge(descCacheMemory, float64(st.Cache.MemoryBytes))
	gauge(descCacheDisk, float64(st.Cache.DiskBytes))
	gauge(descWALBuffered, float64(st.WAL.Buffered))
	gauge(descPartitionsOwned, float64(c.b.OpenPartitions()))

	l := &c.m.lag
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.points {
		gauge(descLagRecords, float64(p.records), p.group, p.topic, p.partition)
		gauge(descLagSeconds, p.seconds, p.group, p.topic, p.partition)
	}
	gauge(descLagOmitted, float64(l.omitted))
	var at float64
	if !l.updatedAt.IsZero() {
		at = float64(l.updatedAt.UnixNano()) / 1e9
	}
	gauge(descLagUpdated, at)
}
