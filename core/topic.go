package core

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/stratalog/strata/segment"
)

// TopicConfig is a topic's settings, as clients set them and as the bucket
// stores them. The JSON field names are the stored format and are fixed
// forever: a bucket written by an older broker loads (a field it lacks is
// empty, which every field gives its default meaning), and a field added
// later is omitted when empty, so older configs stay byte-for-byte what
// they were.
type TopicConfig struct {
	Name           string `json:"name,omitempty"`
	Partitions     int32  `json:"partitions,omitempty"`
	RetentionMs    int64  `json:"retention_ms,omitempty"`    // 0: keep forever
	RetentionBytes int64  `json:"retention_bytes,omitempty"` // per partition; 0: no limit
	Compression    string `json:"compression,omitempty"`     // zstd (default), s2, none
	SegmentBytes   int64  `json:"segment_bytes,omitempty"`   // 0: the broker's SealBytes
	// Colocate names the topic whose partition owners own this topic's
	// partitions too (same partition numbers): set by the broker on the
	// topics it creates for a share group (its state log, its default
	// dead-letter topic).
	Colocate string `json:"colocate,omitempty"`
	// ConsumedBy names share groups: once every one of them has settled
	// a record (acked or dead-lettered), retention may drop it (whole
	// segments), on top of the time and size limits. Empty: replay
	// topics, kept by time and size alone.
	ConsumedBy []string `json:"consumed_by,omitempty"`
	// DedupWindowMs: a record whose message id (HeaderMsgID) its
	// partition stored this long before is not stored again (dedup.go).
	// 0: 2 minutes.
	DedupWindowMs int64 `json:"dedup_window_ms,omitempty"`
	// ValueFormat says what the topic's values are: "" opaque bytes,
	// ValueFormatJSON JSON objects, which the Arrow front ends (Flight,
	// the Parquet export) read as one column per field (value.go).
	ValueFormat string `json:"value_format,omitempty"`
	// ValueSchema is the columnar.Spec of a "json" topic's values, stored
	// compact (columnar.Spec.Marshal). Empty with format "json": inferred
	// from the topic's first records the first time a reader asks for the
	// layout, then stored here and fixed (value.go). Only with format
	// "json".
	ValueSchema json.RawMessage `json:"value_schema,omitempty"`
	// Export is "" or ExportParquet: the broker exports each newly
	// sealed range of the topic to Parquet.
	Export string `json:"export,omitempty"`
}

// Values of TopicConfig.ValueFormat and TopicConfig.Export.
const (
	ValueFormatJSON = "json"
	ExportParquet   = "parquet"
)

// Ranges of the sizes and durations a client sets in a topic config. Zero
// means the default each field documents (keep forever, no size limit,
// the broker's SealBytes).
const (
	// MaxRetentionMs is 100 years: far from the int64 nanoseconds a
	// time.Duration holds (292 years), so retention arithmetic cannot wrap.
	MaxRetentionMs = 36525 * 24 * 3600 * 1000
	// MaxRetentionBytes is 1 EiB per partition.
	MaxRetentionBytes = 1 << 60
	// MinSegmentBytes and MaxSegmentBytes bound segment_bytes: tiny
	// segments flood the manifest, and a segment is stored with one PUT.
	MinSegmentBytes = 64 << 10
	MaxSegmentBytes = maxObjectBytes
)

// maxStoredPartitions bounds the partition count a stored topic config may
// claim, whatever the broker's MaxPartitions (which may have changed).
const maxStoredPartitions = 1 << 20

// checkTopicSizes checks the client-set sizes of a topic config; the error
// says the allowed range. CreateTopic and decodeTopicConfig both use it.
func checkTopicSizes(cfg *TopicConfig) error {
	switch {
	case cfg.RetentionMs < 0 || cfg.RetentionMs > MaxRetentionMs:
		return fmt.Errorf("retention_ms %d is out of range: use 0 (keep forever) or 1 to %d (100 years)", cfg.RetentionMs, int64(MaxRetentionMs))
	case cfg.RetentionBytes < 0 || cfg.RetentionBytes > MaxRetentionBytes:
		return fmt.Errorf("retention_bytes %d is out of range: use 0 (no size limit) or 1 to %d (1 EiB) per partition", cfg.RetentionBytes, int64(MaxRetentionBytes))
	case cfg.SegmentBytes != 0 && (cfg.SegmentBytes < MinSegmentBytes || cfg.SegmentBytes > MaxSegmentBytes):
		return fmt.Errorf("segment_bytes %d is out of range: use 0 (the broker's default) or %d (64 KiB) to %d (1 GiB)", cfg.SegmentBytes, MinSegmentBytes, MaxSegmentBytes)
	}
	return checkDedupWindow(cfg)
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

// internalPrefix starts the names of the topics the broker creates for
// itself (share-group state logs); a client cannot create one.
const internalPrefix = "__"

// shareLogPrefix + a topic's name is the name of its share groups' state log.
const shareLogPrefix = internalPrefix + "share."

func validName(name string) error {
	if rest, ok := strings.CutPrefix(name, shareLogPrefix); ok && topicName.MatchString(rest) {
		return nil
	}
	if !topicName.MatchString(name) || name == "." || name == ".." {
		return errorf(ErrInvalidArgument, "invalid topic name %q: use 1-200 characters from a-z A-Z 0-9 . _ -", name)
	}
	return nil
}

// clientTopic refuses a client's request to op on one of the broker's
// own topics: a share group's state log holds lease tokens, and a record
// written into it would be taken for the group's own events.
func clientTopic(name, op string) error {
	if strings.HasPrefix(name, internalPrefix) {
		return errorf(ErrInvalidArgument, "topic %q is strata's own (names starting with %q hold share-group state): clients cannot %s it", name, internalPrefix, op)
	}
	return nil
}

// validNewName checks the name of a topic a client creates: valid, and
// not one the broker keeps for itself.
func validNewName(name string) error {
	if strings.HasPrefix(name, internalPrefix) {
		return errorf(ErrInvalidArgument, "invalid topic name %q: names starting with %q are kept for strata's own topics; choose another name", name, internalPrefix)
	}
	return validName(name)
}

// storedTopic is a topic config as the bucket holds it: the config and the
// topic's identity, in one JSON object.
type storedTopic struct {
	*TopicConfig
	ID string `json:"topic_id,omitempty"`
}

// encodeTopicConfig is the stored form of cfg with identity id.
func encodeTopicConfig(cfg *TopicConfig, id string) []byte {
	data, _ := json.Marshal(&storedTopic{TopicConfig: cfg, ID: id})
	return data
}

// decodeTopicConfig parses a stored topic config and checks what CreateTopic
// checked when it wrote it.
func decodeTopicConfig(name string, data []byte) (*storedTopic, error) {
	st := &storedTopic{TopicConfig: &TopicConfig{}}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, err
	}
	if st.TopicConfig == nil {
		st.TopicConfig = &TopicConfig{}
	}
	if len(st.ID) > 64 || strings.ContainsAny(st.ID, "/\\") || st.ID == "." || st.ID == ".." {
		return nil, fmt.Errorf("topic id %q is not a valid identity", st.ID)
	}
	for _, c := range st.ID {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return nil, fmt.Errorf("topic id %q is not lowercase hex", st.ID)
		}
	}
	cfg := st.TopicConfig
	switch {
	case cfg.Name != name:
		return nil, fmt.Errorf("it names topic %q", cfg.Name)
	case cfg.Partitions <= 0 || cfg.Partitions > maxStoredPartitions:
		return nil, fmt.Errorf("partitions %d is not in 1-%d", cfg.Partitions, maxStoredPartitions)
	}
	if err := checkTopicSizes(cfg); err != nil {
		return nil, err
	}
	if _, err := segment.ParseCodec(cfg.Compression); err != nil {
		return nil, err
	}
	if err := checkValueConfig(cfg); err != nil {
		return nil, err
	}
	return st, nil
}
