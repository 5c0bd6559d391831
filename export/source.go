package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// ErrUnknownTopic is wrapped when the source bucket has no config object
// for the topic.
var ErrUnknownTopic = errors.New("export: unknown topic")

// ExportParquet is the value of a topic config's "export" field that asks
// the brokers to export the topic's newly sealed ranges (Loop).
const ExportParquet = "parquet"

// Topic is what export reads of a topic's stored config: its name,
// identity, partition count, colocation and export setting. It is read
// from the bucket (meta.TopicConfigKey), so export needs no broker.
type Topic struct {
	Name       string `json:"name"`
	Partitions int32  `json:"partitions"`
	ID         string `json:"topic_id,omitempty"`
	Colocate   string `json:"colocate,omitempty"`
	// Export is "" or ExportParquet (core.TopicConfig's "export").
	Export string `json:"export,omitempty"`
}

// StorageName is the topic's name in the source bucket's keys.
func (t *Topic) StorageName() string { return meta.StorageName(t.Name, t.ID) }

// maxTopicConfigBytes bounds a topic config read (the broker's own bound).
const maxTopicConfigBytes = 1 << 20

// ReadTopic reads topic name's config from the source bucket.
func ReadTopic(ctx context.Context, src tier.BucketReader, name string) (*Topic, error) {
	if !topicNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: %q is not a topic name (1-200 characters from a-z A-Z 0-9 . _ -)", ErrUnknownTopic, name)
	}
	key := meta.TopicConfigKey(name)
	rc, _, err := src.Get(ctx, key)
	if errors.Is(err, tier.ErrNotFound) {
		return nil, fmt.Errorf("%w: topic %q does not exist in the source bucket (no %s there): check the name and --object-store", ErrUnknownTopic, name, key)
	}
	if err != nil {
		return nil, fmt.Errorf("export: read topic %q config %s: %w", name, key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxTopicConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("export: read topic %q config %s: %w", name, key, err)
	}
	if len(data) > maxTopicConfigBytes {
		return nil, fmt.Errorf("export: topic %q config %s is over %d bytes; it is not a topic config", name, key, maxTopicConfigBytes)
	}
	var t Topic
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("export: topic %q config %s is unreadable: %v", name, key, err)
	}
	switch {
	case t.Name != name:
		return nil, fmt.Errorf("export: topic config %s names topic %q, not %q", key, t.Name, name)
	case t.Partitions <= 0 || t.Partitions > 1<<20:
		return nil, fmt.Errorf("export: topic %q config %s has %d partitions", name, key, t.Partitions)
	case t.ID != "" && !topicIDRE.MatchString(t.ID):
		return nil, fmt.Errorf("export: topic %q config %s has identity %q, not lowercase hex", name, key, t.ID)
	}
	return &t, nil
}

// layoutFor is the row layout of a topic's files. It is the one place the
// layout is chosen: the default layout until topics carry value schemas
// in the bucket; then it becomes the topic's (typed) layout, read from the
// bucket alone. Everything else works with any layout.
func layoutFor(ctx context.Context, src tier.BucketReader, t *Topic) (*columnar.Layout, error) {
	_, _, _ = ctx, src, t
	return columnar.NewLayout(nil)
}
