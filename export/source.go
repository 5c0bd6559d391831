package export

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// ErrUnknownTopic is wrapped when the source bucket has no config object
// for the topic.
var ErrUnknownTopic = errors.New("export: unknown topic")

// ExportParquet is the value of a topic config's "export" field that asks
// the brokers to export the topic's newly sealed ranges (Loop).
const ExportParquet = core.ExportParquet

// Topic is what export needs of a topic's stored config: its name,
// identity, partition count, colocation and export setting. It is read
// from the bucket alone (core.ReadTopicConfig), so export needs no broker.
type Topic struct {
	Name       string
	Partitions int32
	ID         string // "" for a topic created before topic identities
	Colocate   string
	Export     string // "" or ExportParquet
}

// StorageName is the topic's name in the source bucket's keys.
func (t *Topic) StorageName() string { return meta.StorageName(t.Name, t.ID) }

// ReadTopic reads topic name's config from the source bucket, checked as
// a broker checks it.
func ReadTopic(ctx context.Context, src tier.BucketReader, name string) (*Topic, error) {
	cfg, storage, err := core.ReadTopicConfig(ctx, src, name)
	switch {
	case errors.Is(err, core.ErrTopicNotFound), errors.Is(err, core.ErrInvalidArgument):
		return nil, fmt.Errorf("%w: %v (in the source bucket: check the name and --object-store)", ErrUnknownTopic, err)
	case err != nil:
		return nil, fmt.Errorf("export: read topic %q: %w", name, err)
	}
	_, id := meta.SplitStorageName(storage)
	return &Topic{Name: cfg.Name, Partitions: cfg.Partitions, ID: id, Colocate: cfg.Colocate, Export: cfg.Export}, nil
}

// layoutFor is the row layout of a topic's files: the default one for
// opaque values, the typed one of the topic's value schema for a "json"
// topic (core.TopicLayout: a json topic without a schema yet gets one
// inferred from its sealed records and stored in its config by CAS, the
// one write export makes to the source bucket, so every broker and
// exporter uses the same schema). It is the one place the layout is
// chosen; everything else works with any layout.
func layoutFor(ctx context.Context, src tier.Store, t *Topic) (*columnar.Layout, error) {
	return core.TopicLayout(ctx, src, t.Name)
}
