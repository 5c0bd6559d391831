package core

// Value layouts: the Arrow row layout of a topic's records (columnar).
//
// A topic with value format "json" reads as one column per value field.
// Its schema is the one declared at create, or, when none was, the one
// inferred from its first records and then fixed: the first reader that
// asks for the layout (ValueLayout in a broker, TopicLayout from the
// bucket alone) samples up to inferSampleRecords records from the log
// start of the partitions, infers a schema (columnar.Infer) and stores it
// into the topic's config with a compare-and-swap on the config as it read
// it before sampling, only if no schema is stored yet. Whoever loses the
// race takes the stored schema, so every broker and exporter uses the one
// schema that won, and it never changes after (a different schema takes a
// new topic). A stored config whose schema does not parse is refused on
// load (decodeTopicConfig).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

const (
	// inferSampleRecords bounds the records a schema is inferred from:
	// the first of each partition, up to this many in all.
	inferSampleRecords = 1000
	// inferSampleBytes bounds the value bytes of the sample.
	inferSampleBytes = 16 << 20
	// inferParallel is how many partitions are sampled at once.
	inferParallel = 8
)

// checkValueConfig checks a config's value format, value schema and
// export, and stores the schema in its compact form. CreateTopic and
// decodeTopicConfig both use it.
func checkValueConfig(cfg *TopicConfig) error {
	if len(cfg.ValueSchema) == 0 || string(cfg.ValueSchema) == "null" {
		cfg.ValueSchema = nil
	}
	switch cfg.ValueFormat {
	case "", ValueFormatJSON:
	default:
		return fmt.Errorf("value_format %q is not one strata knows: use %q (values are JSON objects, read as typed columns) or leave it empty (opaque bytes)", cfg.ValueFormat, ValueFormatJSON)
	}
	if cfg.ValueSchema != nil {
		if cfg.ValueFormat != ValueFormatJSON {
			return fmt.Errorf("value_schema is set without value_format %q: a schema describes JSON values; set value_format %q too, or drop the schema", ValueFormatJSON, ValueFormatJSON)
		}
		spec, err := columnar.ParseSpec(cfg.ValueSchema)
		if err != nil {
			return fmt.Errorf("value_schema: %v", err)
		}
		cfg.ValueSchema = spec.Marshal()
	}
	switch cfg.Export {
	case "", ExportParquet:
	default:
		return fmt.Errorf("export %q is not one strata knows: use %q (the broker exports each newly sealed range as Parquet) or leave it empty (no continuous export)", cfg.Export, ExportParquet)
	}
	return nil
}

// ReadTopicConfig reads topic name's config from the bucket alone (no
// broker needed), checked as a broker checks it on load, and returns it
// with the topic's storage name (what its manifests and segment keys
// carry: meta.StorageName). Errors are *Error: ErrTopicNotFound, or
// ErrInternal for a config object that does not decode.
func ReadTopicConfig(ctx context.Context, store tier.BucketReader, name string) (*TopicConfig, string, error) {
	st, _, err := readStoredTopic(ctx, store, name)
	if err != nil {
		return nil, "", err
	}
	return st.TopicConfig, meta.StorageName(name, st.ID), nil
}

// readStoredTopic reads and decodes topic name's config object, and
// returns it with the object's ETag.
func readStoredTopic(ctx context.Context, store tier.BucketReader, name string) (*storedTopic, string, error) {
	if err := validName(name); err != nil {
		return nil, "", err
	}
	key := meta.TopicConfigKey(name)
	rc, info, err := store.Get(ctx, key)
	if errors.Is(err, tier.ErrNotFound) {
		return nil, "", errorf(ErrTopicNotFound, "topic %q does not exist; create it with `strata topic create %s --partitions N`", name, name)
	}
	if err != nil {
		return nil, "", classify(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, "", classify(fmt.Errorf("topic %q: read config object %s: %w", name, key, err))
	}
	st, err := decodeTopicConfig(name, data)
	if err != nil {
		return nil, "", errorf(ErrInternal, "topic %q: config object %s is unreadable: %v; restore it or delete the topic's objects", name, key, err)
	}
	return st, info.ETag, nil
}

// ValueLayout returns the Arrow row layout of topic's records, for the
// broker's Arrow front ends: the default layout for opaque values, the
// typed one of the topic's value schema for format "json". A "json" topic
// without a schema gets the schema inferred from its first records (read
// through this broker's read path, sealed or not, claiming nothing) and
// stored, unless another broker or exporter stored one first: then that
// one (see the top of value.go). The layout is cached per topic identity.
// A "json" topic with no records yet is ErrFailedPrecondition.
func (b *Broker) ValueLayout(ctx context.Context, topic string) (*columnar.Layout, error) {
	if err := clientTopic(topic, "read"); err != nil {
		return nil, err
	}
	t, err := b.loadTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	if l := t.layout.Load(); l != nil {
		return l, nil
	}
	if t.cfg.ValueFormat != ValueFormatJSON || len(t.cfg.ValueSchema) > 0 {
		l, err := layoutOf(t.cfg)
		if err != nil {
			return nil, err
		}
		t.layout.CompareAndSwap(nil, l)
		return t.layout.Load(), nil
	}
	// One inference per topic at a time; waiters give up with their ctx.
	select {
	case t.inferring <- struct{}{}:
		defer func() { <-t.inferring }()
	case <-ctx.Done():
		return nil, classify(ctx.Err())
	}
	if l := t.layout.Load(); l != nil {
		return l, nil // inferred, or learnt, while we waited
	}
	spec, err := fixedSchema(ctx, b.cfg.Store, t.cfg.Name, t.id, "", func(ctx context.Context, p int32) (*fetch.PartitionReader, error) {
		if t.isDeleted() {
			return nil, errorf(ErrTopicNotFound, "topic %q was deleted", t.cfg.Name)
		}
		v, err := b.view(ctx, t, p)
		if err != nil {
			return nil, err
		}
		return v.reader, nil
	})
	if err != nil {
		return nil, err
	}
	l, err := columnar.NewLayout(spec)
	if err != nil {
		return nil, errorf(ErrInternal, "topic %q: value schema %s makes no layout: %v", t.cfg.Name, spec.Marshal(), err)
	}
	t.layout.CompareAndSwap(nil, l)
	return t.layout.Load(), nil
}

// learnSchema caches the layout of a value schema found stored after t
// was loaded (another broker or an exporter inferred it), so describes
// show it; a schema that does not parse is left for ValueLayout to
// report.
func (t *topic) learnSchema(cfg *TopicConfig) {
	if t.layout.Load() != nil || t.cfg.ValueFormat != ValueFormatJSON || len(cfg.ValueSchema) == 0 {
		return
	}
	if l, err := layoutOf(cfg); err == nil {
		t.layout.CompareAndSwap(nil, l)
	}
}

// describedConfig is t's config as a describe shows it: with the value
// schema learnt or inferred since it was loaded.
func (t *topic) describedConfig() TopicConfig {
	c := *t.cfg
	if l := t.layout.Load(); l != nil && len(c.ValueSchema) == 0 && l.Spec() != nil {
		c.ValueSchema = l.Spec().Marshal()
	}
	return c
}

// TopicLayout returns the Arrow row layout of topic name's records from
// the bucket alone (no broker needed: the Parquet export). Like
// Broker.ValueLayout, a "json" topic without a schema gets one inferred
// and stored (or takes the one stored first), but from its sealed
// segments only; a "json" topic with nothing sealed yet is
// ErrFailedPrecondition. Nothing is cached: a caller keeps the layout.
func TopicLayout(ctx context.Context, store tier.Store, name string) (*columnar.Layout, error) {
	if err := clientTopic(name, "read"); err != nil {
		return nil, err
	}
	st, etag, err := readStoredTopic(ctx, store, name)
	if err != nil {
		return nil, err
	}
	cfg := st.TopicConfig
	if cfg.ValueFormat != ValueFormatJSON || len(cfg.ValueSchema) > 0 {
		return layoutOf(cfg)
	}
	cc := fetch.DefaultCacheConfig()
	cc.MemoryBytes, cc.DecodedBytes, cc.ReadAheadSpans = 32<<20, 32<<20, 0
	cache, err := fetch.NewCache(cc)
	if err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	defer cache.Close()
	storage := meta.StorageName(name, st.ID)
	spec, err := fixedSchemaFrom(ctx, store, st, etag, func(ctx context.Context, p int32) (*fetch.PartitionReader, error) {
		return fetch.NewPartitionReader(cache, store, fetch.NewBucketManifests(store, storage, p, 0), nil), nil
	}, "sealed ")
	if err != nil {
		return nil, err
	}
	l, err := columnar.NewLayout(spec)
	if err != nil {
		return nil, errorf(ErrInternal, "topic %q: value schema %s makes no layout: %v", name, spec.Marshal(), err)
	}
	return l, nil
}

// layoutOf is the layout of a config whose schema is decided: none (opaque
// values, or not inferred yet) or the stored one.
func layoutOf(cfg *TopicConfig) (*columnar.Layout, error) {
	if cfg.ValueFormat != ValueFormatJSON || len(cfg.ValueSchema) == 0 {
		return columnar.NewLayout(nil)
	}
	spec, err := columnar.ParseSpec(cfg.ValueSchema)
	if err == nil {
		var l *columnar.Layout
		if l, err = columnar.NewLayout(spec); err == nil {
			return l, nil
		}
	}
	return nil, errorf(ErrInternal, "topic %q: the stored value schema is unreadable: %v; restore the topic's config object", cfg.Name, err)
}

// readerFunc returns a reader of partition p that claims nothing.
type readerFunc func(ctx context.Context, p int32) (*fetch.PartitionReader, error)

// fixedSchema reads topic name's config afresh (its identity must be id)
// and returns its value schema: the stored one, or one inferred from the
// records read and stored by compare-and-swap on the config as read,
// unless another writer stored one first (then that one).
func fixedSchema(ctx context.Context, store tier.Store, name, id, what string, read readerFunc) (*columnar.Spec, error) {
	st, etag, err := readStoredTopic(ctx, store, name)
	if err != nil {
		return nil, err
	}
	if st.ID != id {
		return nil, errorf(ErrTopicNotFound, "topic %q was deleted (and maybe created again) meanwhile; retry", name)
	}
	return fixedSchemaFrom(ctx, store, st, etag, read, what)
}

// fixedSchemaFrom is fixedSchema from st, read at etag. what qualifies
// the records sampled in messages ("sealed " or "").
func fixedSchemaFrom(ctx context.Context, store tier.Store, st *storedTopic, etag string, read readerFunc, what string) (*columnar.Spec, error) {
	name := st.Name
	if len(st.ValueSchema) > 0 {
		return columnar.ParseSpec(st.ValueSchema) // decodeTopicConfig checked it
	}
	values, err := sampleValues(ctx, name, st.Partitions, read)
	if err != nil {
		return nil, err
	}
	if len(values) == 0 {
		return nil, errorf(ErrFailedPrecondition, "topic %q has value_format json and no value schema yet: the schema is inferred from the first records, and the topic has no %srecords; produce some records first, or create the topic with --value-schema", name, what)
	}
	spec, err := columnar.Infer(values)
	if err != nil {
		return nil, &Error{Kind: ErrFailedPrecondition, Cause: err, Msg: fmt.Sprintf("topic %q has value_format json and no value schema, and none can be inferred from its first %d records: %v (a topic's schema is fixed once stored: a declared one takes a new topic)", name, len(values), err)}
	}
	if testHookSchemaInferred != nil {
		testHookSchemaInferred(name, spec)
	}
	key := meta.TopicConfigKey(name)
	for range 20 {
		next := *st.TopicConfig
		next.ValueSchema = spec.Marshal()
		// Two writers that inferred the same schema write the same bytes:
		// CAS then takes the other's write for ours, which is the same
		// outcome.
		_, err := meta.CAS{Store: store}.Swap(ctx, key, etag, encodeTopicConfig(&next, st.ID))
		var cerr *meta.ConflictError
		switch {
		case err == nil:
			return spec, nil
		case !errors.As(err, &cerr):
			return nil, classify(fmt.Errorf("topic %q: store the inferred value schema: %w", name, err))
		case !cerr.Current.Exists():
			return nil, errorf(ErrTopicNotFound, "topic %q was deleted while its value schema was inferred", name)
		}
		cur, derr := decodeTopicConfig(name, cerr.Current.Data)
		switch {
		case derr != nil:
			return nil, errorf(ErrInternal, "topic %q: config object %s is unreadable: %v; restore it or delete the topic's objects", name, key, derr)
		case cur.ID != st.ID:
			return nil, errorf(ErrTopicNotFound, "topic %q was deleted and created again while its value schema was inferred; retry", name)
		case len(cur.ValueSchema) > 0:
			return columnar.ParseSpec(cur.ValueSchema) // another writer's won
		}
		st, etag = cur, cerr.Current.ETag // changed otherwise: try again on it
	}
	return nil, errorf(ErrConflict, "topic %q: its config kept changing while the inferred value schema was stored; retry", name)
}

// testHookSchemaInferred, when set by a test, runs after a schema was
// inferred and before it is stored.
var testHookSchemaInferred func(topic string, spec *columnar.Spec)

// sampleValues reads the first records of partitions 0..n-1, from each
// one's log start, up to inferSampleRecords in all (an equal share each,
// at least one) and inferSampleBytes of values, and returns their values
// (copied; tombstones as nil), partition by partition in order.
func sampleValues(ctx context.Context, name string, n int32, read readerFunc) ([][]byte, error) {
	share := max(1, (inferSampleRecords+int(n)-1)/int(n))
	shareBytes := max(64<<10, inferSampleBytes/int(n))
	var (
		mu    sync.Mutex
		total int // records sampled so far, under mu
		first error
	)
	out := make([][][]byte, n)
	sem := make(chan struct{}, inferParallel)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for p := int32(0); p < n; p++ {
		mu.Lock()
		done := total >= inferSampleRecords || first != nil
		mu.Unlock()
		if done {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			vals, err := samplePartition(ctx, p, share, shareBytes, read)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
				cancel()
			}
			out[p] = vals
			total += len(vals)
		}()
	}
	wg.Wait()
	var ce *Error
	switch {
	case errors.As(first, &ce):
		return nil, ce
	case first != nil:
		return nil, classify(fmt.Errorf("topic %q: read the first records to infer the value schema: %w", name, first))
	}
	if err := ctx.Err(); err != nil {
		return nil, classify(err)
	}
	var values [][]byte
	for _, vals := range out {
		values = append(values, vals...)
	}
	if len(values) > inferSampleRecords {
		values = values[:inferSampleRecords]
	}
	return values, nil
}

// samplePartition reads up to limit records (maxBytes of values) of
// partition p from its log start.
func samplePartition(ctx context.Context, p int32, limit, maxBytes int, read readerFunc) ([][]byte, error) {
	r, err := read(ctx, p)
	if err != nil {
		return nil, err
	}
	var (
		vals [][]byte
		size int
		from int64
	)
	for retried := false; len(vals) < limit && size < maxBytes; {
		res, err := r.Read(ctx, from, min(1<<20, maxBytes-size))
		var oor *fetch.OutOfRangeError
		if errors.As(err, &oor) && !retried {
			// Below the log start (offset 0 was trimmed), or retention
			// moved it since: start there.
			from, retried = oor.LogStartOffset, true
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		if len(res.Records) == 0 {
			break // the end of the partition
		}
		for i := range res.Records {
			if len(vals) == limit {
				break
			}
			vals = append(vals, cloneValue(&res.Records[i]))
			size += len(res.Records[i].Value)
		}
		from = res.NextOffset
	}
	return vals, nil
}

// cloneValue copies a record's value (nil stays nil: a tombstone).
func cloneValue(r *segment.Record) []byte {
	if r.Value == nil {
		return nil
	}
	return bytes.Clone(r.Value)
}
