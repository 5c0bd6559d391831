package export

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// Continuous mode: a broker exports the newly sealed ranges of every topic
// whose config says export=parquet, every Interval. Several brokers may
// run it over one bucket: each exports the partitions it owns when it
// knows (Owns), and the manifest's CAS keeps even overlapping exporters
// exactly-once; TakeOverAfter keeps them from building the same file.

// LoopConfig configures a Loop.
type LoopConfig struct {
	// Interval between rounds. Default 30s.
	Interval time.Duration
	// Owns reports whether this broker should export partition p of t:
	// the partitions it owns, or every one when ownership is unknown.
	// nil: every partition.
	Owns func(t *Topic, p int32) bool
	// RoundTimeout bounds one round. Default 10 minutes.
	RoundTimeout time.Duration
}

// RoundResult is what one round did.
type RoundResult struct {
	Topics  int // topics with export=parquet
	Results []*Result
	Busy    int // partitions skipped for another exporter's fresh claim
}

// ExportMarked runs one round of continuous mode: every partition (that
// owns accepts; nil accepts all) of every topic in the source bucket whose
// config has export=parquet, up to its sealed end. Errors of one topic do
// not stop the others; a busy partition is not an error.
func (e *Exporter) ExportMarked(ctx context.Context, owns func(t *Topic, p int32) bool) (*RoundResult, error) {
	var names []string
	err := e.cfg.Source.List(ctx, meta.TopicsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.TopicNameOfConfigKey(o.Key); ok {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export: list topics: %w", err)
	}
	rr := &RoundResult{}
	var errs []error
	for _, name := range names {
		t, err := ReadTopic(ctx, e.cfg.Source, name)
		if errors.Is(err, ErrUnknownTopic) {
			continue // deleted meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t.Export != ExportParquet {
			continue
		}
		rr.Topics++
		var parts []int32
		for p := range t.Partitions {
			if owns == nil || owns(t, p) {
				parts = append(parts, p)
			}
		}
		if len(parts) == 0 {
			continue
		}
		res, err := e.Export(ctx, name, Bounds{Partitions: parts}, nil)
		if res != nil {
			rr.Results = append(rr.Results, res)
			for _, p := range res.Partitions {
				if p.Busy {
					rr.Busy++
				}
			}
		}
		if err != nil && !onlyBusy(err) {
			errs = append(errs, err)
		}
	}
	return rr, errors.Join(errs...)
}

// onlyBusy reports whether every error joined in err is ErrBusy.
func onlyBusy(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyBusy(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, ErrBusy)
}

// Loop runs ExportMarked every Interval on its own goroutine until Close.
type Loop struct {
	e      *Exporter
	cfg    LoopConfig
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// StartLoop starts continuous mode on e. The Loop owns its goroutine;
// Close stops it. e must outlive the Loop.
func (e *Exporter) StartLoop(cfg LoopConfig) *Loop {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = 10 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{e: e, cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, l.cfg.RoundTimeout)
		rr, err := l.e.ExportMarked(rctx, l.cfg.Owns)
		cancel()
		log := l.e.cfg.Logger
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("export round failed; will retry", "err", err)
		case rr != nil:
			for _, r := range rr.Results {
				files, records, pq, _ := r.Totals()
				if files > 0 {
					log.Info("exported sealed ranges", "topic", r.Topic, "files", files, "records", records, "parquet_bytes", pq)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops the loop (a round in progress is canceled: what it
// committed stays, a claim it left is finished by the next round of any
// exporter) and waits for its goroutine. It is idempotent.
func (l *Loop) Close() {
	l.once.Do(l.cancel)
	<-l.done
}
