package export

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The keys export writes at its target, relative to the target store (the
// layout is in the package doc). Every key is built here.

// joinPrefix puts the export's prefix in front of a key.
func joinPrefix(prefix, key string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return key
	}
	return prefix + "/" + key
}

// FileKey is the key of the Parquet file of offsets first..last of
// partition p of topic, dated date.
func FileKey(prefix, topic, date string, p int32, first, last int64) string {
	return joinPrefix(prefix, fmt.Sprintf("topic=%s/date=%s/partition=%d/%020d-%020d.parquet", topic, date, p, first, last))
}

// noTopicID stands in the manifest key for the identity of a topic created
// before topic identities (hex ids never collide with it).
const noTopicID = "_"

// ManifestPrefix is the prefix of every export manifest under prefix.
func ManifestPrefix(prefix string) string { return joinPrefix(prefix, "_strata/export/") }

// ManifestKey is the key of the export manifest of partition p of one
// identity of a topic.
func ManifestKey(prefix, topic, topicID string, p int32) string {
	if topicID == "" {
		topicID = noTopicID
	}
	return ManifestPrefix(prefix) + topic + "/" + topicID + "/" + strconv.Itoa(int(p)) + ".json"
}

// DateOf is the UTC date (YYYY-MM-DD) of a record timestamp in
// milliseconds since the Unix epoch: the date= part of its file's key.
func DateOf(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }
