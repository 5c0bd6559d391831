package core

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// The value fields' stored form: omitted when empty (configs written
// before them decode, and are written the same), the schema compact.
func TestValueConfigStoredFormat(t *testing.T) {
	const stored = `{"name":"v","partitions":2,"compression":"zstd","value_format":"json","value_schema":{"fields":[{"name":"a","type":"int64"}]},"export":"parquet","topic_id":"0a"}`
	cfg := &TopicConfig{Name: "v", Partitions: 2, Compression: "zstd", ValueFormat: "json", ValueSchema: json.RawMessage(`{"fields":[{"name":"a","type":"int64"}]}`), Export: "parquet"}
	if got := string(encodeTopicConfig(cfg, "0a")); got != stored {
		t.Fatalf("stored as\n%s\nwant\n%s", got, stored)
	}
	st, err := decodeTopicConfig("v", []byte(stored))
	if err != nil || !reflect.DeepEqual(*st.TopicConfig, *cfg) {
		t.Fatalf("decoded %+v, %v", st.TopicConfig, err)
	}
	// Written before value formats existed.
	const old = `{"name":"old","partitions":1,"compression":"zstd","topic_id":"0b"}`
	st, err = decodeTopicConfig("old", []byte(old))
	if err != nil || st.ValueFormat != "" || st.ValueSchema != nil || st.Export != "" {
		t.Fatalf("old config: %+v, %v", st, err)
	}
	if got := string(encodeTopicConfig(st.TopicConfig, st.ID)); got != old {
		t.Fatalf("old config written back as %s", got)
	}
	// A schema stored null is no schema.
	st, err = decodeTopicConfig("n", []byte(`{"name":"n","partitions":1,"value_format":"json","value_schema":null}`))
	if err != nil || st.ValueSchema != nil {
		t.Fatalf("null schema: %+v, %v", st, err)
	}
}

// Bad value configs are refused on create (invalid argument, saying what
// to write) and, stored, on load.
func TestValueConfigRefused(t *testing.T) {
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  TopicConfig
		says string
	}{
		{TopicConfig{ValueFormat: "avro"}, `value_format "avro" is not one strata knows: use "json"`},
		{TopicConfig{ValueFormat: "JSON"}, `value_format "JSON" is not one strata knows`},
		{TopicConfig{ValueSchema: json.RawMessage(`{"fields":[{"name":"a","type":"int64"}]}`)}, `value_schema is set without value_format "json"`},
		{TopicConfig{ValueFormat: "json", ValueSchema: json.RawMessage(`{"fields":[{"name":"a","type":"int"}]}`)}, `value_schema: columnar: invalid value schema: field "a" has type "int"; the types are bool, int32`},
		{TopicConfig{ValueFormat: "json", ValueSchema: json.RawMessage(`{"feilds":[]}`)}, `unknown member "feilds"`},
		{TopicConfig{ValueFormat: "json", ValueSchema: json.RawMessage(`{"fields":[{"name":"offset","type":"int64"}]}`)}, `own columns`},
		{TopicConfig{Export: "csv"}, `export "csv" is not one strata knows: use "parquet"`},
	} {
		tc.cfg.Name, tc.cfg.Partitions = "bad", 1
		_, err := b.CreateTopic(ctx, tc.cfg)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "nothing was created") {
			t.Errorf("%+v: %v; want ErrInvalidArgument saying %q", tc.cfg, err, tc.says)
		}
		data, _ := json.Marshal(tc.cfg)
		if _, err := decodeTopicConfig("bad", data); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("stored %s: %v", data, err)
		}
	}
	if _, err := b.DescribeTopic(ctx, "bad"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("a refused create stored something: %v", err)
	}
	// A corrupt schema in the bucket: the topic does not load, and says so.
	putConfig(t, store, "corrupt", `{"name":"corrupt","partitions":1,"value_format":"json","value_schema":{"fields":"x"},"topic_id":"0c"}`)
	for _, err := range []error{
		func() error { _, err := b.DescribeTopic(ctx, "corrupt"); return err }(),
		func() error { _, _, err := ReadTopicConfig(ctx, store, "corrupt"); return err }(),
		func() error { _, err := TopicLayout(ctx, store, "corrupt"); return err }(),
	} {
		if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "value_schema") || !strings.Contains(err.Error(), "unreadable") {
			t.Errorf("corrupt stored schema: %v", err)
		}
	}
}

func putConfig(t *testing.T, store tier.Store, name, data string) {
	t.Helper()
	if _, err := store.Put(context.Background(), meta.TopicConfigKey(name), strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// A declared schema is stored compact and gives the typed layout; an
// opaque topic gives the default layout.
func TestValueLayoutDeclared(t *testing.T) {
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	got, err := b.CreateTopic(ctx, TopicConfig{Name: "typed", Partitions: 1, ValueFormat: "json", Export: "parquet",
		ValueSchema: json.RawMessage(`{ "fields" : [ {"type": "string", "name": "user"} ] }`)})
	if err != nil {
		t.Fatal(err)
	}
	const compact = `{"fields":[{"name":"user","type":"string"}]}`
	if string(got.ValueSchema) != compact {
		t.Fatalf("create returned schema %s", got.ValueSchema)
	}
	cfg, storage, err := ReadTopicConfig(ctx, store, "typed")
	if err != nil || string(cfg.ValueSchema) != compact || cfg.Export != "parquet" || !strings.HasPrefix(storage, "typed/") {
		t.Fatalf("stored %+v as %q, %v", cfg, storage, err)
	}
	l, err := b.ValueLayout(ctx, "typed")
	if err != nil || l.Spec() == nil || string(l.Spec().Marshal()) != compact {
		t.Fatalf("layout %v, %v", l, err)
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "opaque", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	l, err = b.ValueLayout(ctx, "opaque")
	if err != nil || l.Spec() != nil || l.Schema().Field(4).Name != columnar.ColValue {
		t.Fatalf("opaque layout %v, %v", l, err)
	}
	if _, err := b.ValueLayout(ctx, "missing"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func produceJSON(t *testing.T, b *Broker, topic string, p int32, values ...string) {
	t.Helper()
	var recs []segment.Record
	for _, v := range values {
		recs = append(recs, segment.Record{Value: []byte(v)})
	}
	if _, err := b.Produce(context.Background(), &ProduceRequest{Topic: topic, Partition: p, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

func specOf(t *testing.T, l *columnar.Layout) string {
	t.Helper()
	if l.Spec() == nil {
		t.Fatal("default layout, want a typed one")
	}
	return string(l.Spec().Marshal())
}

// A json topic without a schema: no records is a failed precondition
// that says what to do; then the schema is inferred from the first
// records, stored, shown by describe, taken as is by a second broker, and
// fixed: later records of another shape do not change it.
func TestValueLayoutInfersOnceAndFixes(t *testing.T) {
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "ev", Partitions: 2, ValueFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.ValueLayout(ctx, "ev")
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "produce some records first, or create the topic with --value-schema") {
		t.Fatalf("no records yet: %v", err)
	}
	produceJSON(t, b, "ev", 0, `{"id": 1, "user": "ann"}`, `not json`)
	produceJSON(t, b, "ev", 1, `{"id": 2, "amount": 2.5}`)
	l, err := b.ValueLayout(ctx, "ev")
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"fields":[{"name":"id","type":"int64"},{"name":"user","type":"string"},{"name":"amount","type":"float64"}]}`
	if got := specOf(t, l); got != want {
		t.Fatalf("inferred %s, want %s", got, want)
	}
	cfg, _, err := ReadTopicConfig(ctx, store, "ev")
	if err != nil || string(cfg.ValueSchema) != want {
		t.Fatalf("stored schema %s, %v", cfg.ValueSchema, err)
	}
	d, err := b.DescribeTopic(ctx, "ev")
	if err != nil || string(d.Config.ValueSchema) != want {
		t.Fatalf("describe shows schema %s, %v", d.Config.ValueSchema, err)
	}
	// Fixed: records of another shape change nothing, here or on a broker
	// that loads the topic now (it reads the stored schema, infers nothing).
	produceJSON(t, b, "ev", 0, `{"other": true}`)
	inferred := 0
	testHookSchemaInferred = func(string, *columnar.Spec) { inferred++ }
	defer func() { testHookSchemaInferred = nil }()
	if l2, err := b.ValueLayout(ctx, "ev"); err != nil || specOf(t, l2) != want {
		t.Fatalf("again: %v", err)
	}
	b2 := newBroker(t, testConfig(t, store))
	l2, err := b2.ValueLayout(ctx, "ev")
	if err != nil || specOf(t, l2) != want || inferred != 0 {
		t.Fatalf("second broker: %v (inferred %d times)", err, inferred)
	}
}

// Records none of which is a JSON object: a failed precondition saying
// to declare a schema, and nothing stored.
func TestValueLayoutNotObjects(t *testing.T) {
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "raw", Partitions: 1, ValueFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	produceJSON(t, b, "raw", 0, `1`, `[2]`)
	_, err := b.ValueLayout(ctx, "raw")
	if !errors.Is(err, ErrFailedPrecondition) || !errors.Is(err, columnar.ErrCannotInfer) || !strings.Contains(err.Error(), "none of the 2 sampled values is a JSON object") || !strings.Contains(err.Error(), "--value-schema") {
		t.Fatalf("not objects: %v", err)
	}
	if cfg, _, _ := ReadTopicConfig(ctx, store, "raw"); cfg.ValueSchema != nil {
		t.Fatalf("stored %s", cfg.ValueSchema)
	}
}

// Two brokers infer different schemas at once (the second saw records the
// first did not): the compare-and-swap lets one store its schema, and
// both end with that one.
func TestValueSchemaCASRace(t *testing.T) {
	store := tier.NewMemStore()
	a := newBroker(t, testConfig(t, store))
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	if _, err := a.CreateTopic(ctx, TopicConfig{Name: "race", Partitions: 2, ValueFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	produceJSON(t, a, "race", 0, `{"a": 1}`)
	var (
		mu       sync.Mutex
		inferred []string
	)
	aInferred, release := make(chan struct{}), make(chan struct{})
	testHookSchemaInferred = func(_ string, s *columnar.Spec) {
		mu.Lock()
		inferred = append(inferred, string(s.Marshal()))
		first := len(inferred) == 1
		mu.Unlock()
		if first { // broker a's: wait until b has stored its own
			close(aInferred)
			<-release
		}
	}
	defer func() { testHookSchemaInferred = nil }()
	type result struct {
		l   *columnar.Layout
		err error
	}
	aDone := make(chan result, 1)
	go func() {
		l, err := a.ValueLayout(ctx, "race")
		aDone <- result{l, err}
	}()
	<-aInferred
	produceJSON(t, a, "race", 1, `{"b": "x"}`)
	lb, err := b.ValueLayout(ctx, "race")
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	ra := <-aDone
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	const won = `{"fields":[{"name":"a","type":"int64"},{"name":"b","type":"string"}]}`
	if len(inferred) != 2 || inferred[0] == inferred[1] {
		t.Fatalf("inferred %q: want two different schemas", inferred)
	}
	if specOf(t, lb) != won || specOf(t, ra.l) != won {
		t.Fatalf("a has %s, b has %s; both should have b's %s", specOf(t, ra.l), specOf(t, lb), won)
	}
	cfg, _, err := ReadTopicConfig(ctx, store, "race")
	if err != nil || string(cfg.ValueSchema) != won {
		t.Fatalf("stored %s, %v", cfg.ValueSchema, err)
	}
}

// A broker that loaded a json topic before another broker inferred its
// schema learns it at its next topic refresh (describe shows it).
func TestRefreshLearnsValueSchema(t *testing.T) {
	store := tier.NewMemStore()
	a := newBroker(t, testConfig(t, store))
	b := newBroker(t, testConfig(t, store))
	ctx := context.Background()
	if _, err := a.CreateTopic(ctx, TopicConfig{Name: "learn", Partitions: 1, ValueFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	if d, err := b.DescribeTopic(ctx, "learn"); err != nil || d.Config.ValueSchema != nil {
		t.Fatalf("before: %v", err)
	}
	produceJSON(t, a, "learn", 0, `{"ok": true}`)
	if _, err := a.ValueLayout(ctx, "learn"); err != nil {
		t.Fatal(err)
	}
	if err := b.RefreshTopics(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := b.DescribeTopic(ctx, "learn")
	if err != nil || string(d.Config.ValueSchema) != `{"fields":[{"name":"ok","type":"bool"}]}` {
		t.Fatalf("after refresh: %s, %v", d.Config.ValueSchema, err)
	}
}

// From the bucket alone (the export's way): a json topic with nothing
// sealed is a failed precondition; once sealed, the schema is inferred
// from the sealed segments and stored, and a broker then takes it.
func TestTopicLayoutFromBucket(t *testing.T) {
	store := tier.NewMemStore()
	ctx := context.Background()
	b, err := New(testConfig(t, store))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "cold", Partitions: 1, ValueFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	produceJSON(t, b, "cold", 0, `{"n": 1, "tags": ["a"]}`, `{"n": 2}`)
	_, err = TopicLayout(ctx, store, "cold")
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "no sealed records") {
		t.Fatalf("nothing sealed: %v", err)
	}
	if err := b.Close(ctx); err != nil { // seals
		t.Fatal(err)
	}
	l, err := TopicLayout(ctx, store, "cold")
	const want = `{"fields":[{"name":"n","type":"int64"},{"name":"tags","type":"json"}]}`
	if err != nil || specOf(t, l) != want {
		t.Fatalf("from the bucket: %v", err)
	}
	cfg, storage, err := ReadTopicConfig(ctx, store, "cold")
	if err != nil || string(cfg.ValueSchema) != want || storage != meta.StorageName("cold", storageID(storage)) {
		t.Fatalf("stored %s at %q, %v", cfg.ValueSchema, storage, err)
	}
	b2 := newBroker(t, testConfig(t, store))
	if l2, err := b2.ValueLayout(ctx, "cold"); err != nil || specOf(t, l2) != want {
		t.Fatalf("broker after the export inferred: %v", err)
	}
	if _, err := TopicLayout(ctx, store, "nope"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func storageID(storage string) string {
	_, id, _ := strings.Cut(storage, "/")
	return id
}
