package meta

// Every object key strata writes in the bucket, and every local path it
// writes under a broker's data directory, is named here and nowhere else.
//
// Bucket layout:
//
//	topics/<name>/config.json                          topic config and identity
//	topics/<topic>/partitions/<p>/manifest.json        partition manifest
//	topics/<topic>/partitions/<p>/segments/<base:020d>-<epoch>-<rand>.seg
//	wal/<incarnation>/<seq:020d>                       WAL object or fence
//	groups/<group>/state.json                          consumer-group offsets
//	producers/next-id.json                             producer-id allocator
//	shares/<topic>/<group>/config.json                 share-group config
//	shares/<topic>/<group>/<p>/snapshots/<seed>/<off:020d>  share-group state of a partition at state-log offset off
//	shares/<topic>/<group>/<p>/runs/<rand>             spilled delayed records (queue.Run)
//	acls/acls.json                                     the cluster's ACLs (package auth)
//	exports/...                                        a broker's continuous Parquet export (package export names its keys)
//
// <topic> is a topic's storage name: <name>/<id> (StorageName), or just
// <name> for a topic created before topic identities.
//
// Local layout: <data dir>/partitions/<name>-<id>-<p>/ (<name>-<p> for a
// topic without identity) holds a partition's local log.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ExportsPrefix is where a broker's continuous Parquet export writes in
// its own bucket (serve's default --export-to); the keys under it are
// package export's (export/keys.go).
const ExportsPrefix = "exports/"

// TopicsPrefix is the prefix of every topic's objects.
const TopicsPrefix = "topics/"

// TopicConfigKey is the object key of a topic's config.
func TopicConfigKey(name string) string { return TopicsPrefix + name + "/config.json" }

// TopicPrefix is the prefix of everything stored for a topic name, every
// identity it had included.
func TopicPrefix(name string) string { return TopicsPrefix + name + "/" }

// TopicNameOfConfigKey returns the topic name of a config key, or false
// for any other key.
func TopicNameOfConfigKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, TopicsPrefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/config.json")
	if !ok || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// StorageName is how a topic's objects and WAL entries name it: name/id,
// or name for a topic without identity (created before identities).
func StorageName(name, id string) string {
	if id == "" {
		return name
	}
	return name + "/" + id
}

// SplitStorageName undoes StorageName.
func SplitStorageName(s string) (name, id string) {
	name, id, _ = strings.Cut(s, "/")
	return name, id
}

// NewTopicID makes a topic identity: 16 random bytes in hex.
func NewTopicID() string { return randomID(16) }

// NewWriteID returns a random id that makes one write of a metadata object
// unique (see CAS).
func NewWriteID() string { return randomID(8) }

// PartitionPrefix is the key prefix of everything a partition stores;
// topic is the storage name.
func PartitionPrefix(topic string, partition int32) string {
	return TopicsPrefix + topic + "/partitions/" + strconv.Itoa(int(partition)) + "/"
}

// ManifestKey is the object key of a partition's manifest.
func ManifestKey(topic string, partition int32) string {
	return PartitionPrefix(topic, partition) + "manifest.json"
}

// SegmentPrefix is the key prefix under which a partition's segments live.
func SegmentPrefix(topic string, partition int32) string {
	return PartitionPrefix(topic, partition) + "segments/"
}

// SegmentKey names a new segment object. The name sorts by base offset and
// carries the writer's epoch and a random suffix, so an upload by a fenced
// writer can never replace a segment the manifest references.
func SegmentKey(topic string, partition int32, baseOffset, epoch int64) string {
	return fmt.Sprintf("%s%020d-%d-%s.seg", SegmentPrefix(topic, partition), baseOffset, epoch, randomID(4))
}

// WALPrefix is the prefix of every WAL object.
const WALPrefix = "wal/"

// WALKey is the object key of sequence number seq of an incarnation.
func WALKey(incarnation string, seq uint64) string {
	return WALPrefix + incarnation + "/" + fmt.Sprintf("%020d", seq)
}

// WALIncarnationPrefix is the prefix under which an incarnation's objects
// live.
func WALIncarnationPrefix(incarnation string) string { return WALPrefix + incarnation + "/" }

// ParseWALKey splits a WAL object key into incarnation and sequence number.
func ParseWALKey(key string) (incarnation string, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(key, WALPrefix)
	if !ok {
		return "", 0, false
	}
	inc, s, ok := strings.Cut(rest, "/")
	if !ok || inc == "" || len(s) != 20 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return inc, n, true
}

// GroupsPrefix is the prefix of every consumer group's state.
const GroupsPrefix = "groups/"

// GroupKey is the object key of a consumer group's state.
func GroupKey(name string) string { return GroupsPrefix + name + "/state.json" }

// GroupNameOfKey returns the group name of a state key, or false.
func GroupNameOfKey(key string) (string, bool) {
	return strings.CutSuffix(strings.TrimPrefix(key, GroupsPrefix), "/state.json")
}

// SharesPrefix is the prefix of every share group's objects.
const SharesPrefix = "shares/"

// ShareTopicPrefix is the prefix of the share groups of a topic (storage
// name), or of every identity of a topic name when given just the name.
func ShareTopicPrefix(topic string) string { return SharesPrefix + topic + "/" }

// ShareConfigKey is the object key of a share group's config.
func ShareConfigKey(topic, group string) string {
	return ShareTopicPrefix(topic) + group + "/config.json"
}

// ShareGroupOfConfigKey returns the group of a config key listed under
// ShareTopicPrefix(topic), or false for any other key.
func ShareGroupOfConfigKey(topic, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, ShareTopicPrefix(topic))
	if !ok {
		return "", false
	}
	g, ok := strings.CutSuffix(rest, "/config.json")
	if !ok || g == "" || strings.Contains(g, "/") {
		return "", false
	}
	return g, true
}

// ShareGroupPrefix is the prefix of everything a share group stores.
func ShareGroupPrefix(topic, group string) string { return ShareTopicPrefix(topic) + group + "/" }

// ShareSnapshotPrefix is the prefix of the snapshots of one partition of
// one creation of a share group (inst: its seed, so a group deleted and
// created again never takes the old one's snapshots).
func ShareSnapshotPrefix(topic, group, inst string, p int32) string {
	return ShareGroupPrefix(topic, group) + strconv.Itoa(int(p)) + "/snapshots/" + inst + "/"
}

// ShareSnapshotKey names the snapshot that covers the state-log events
// below offset off.
func ShareSnapshotKey(topic, group, inst string, p int32, off int64) string {
	return ShareSnapshotPrefix(topic, group, inst, p) + fmt.Sprintf("%020d", off)
}

// ShareSnapshotOffset parses the offset of a snapshot key.
func ShareSnapshotOffset(key string) (int64, bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 || len(key)-i-1 != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(key[i+1:], 10, 64)
	return n, err == nil && n >= 0
}

// ShareRunKey names a new run of spilled delayed records.
func ShareRunKey(topic, group string, p int32) string {
	return ShareGroupPrefix(topic, group) + strconv.Itoa(int(p)) + "/runs/" + randomID(8)
}

// ACLKey holds the cluster's ACLs (package auth), written through CAS.
const ACLKey = "acls/acls.json"

// ProducerIDKey holds the next unallocated producer-id block.
const ProducerIDKey = "producers/next-id.json"

// PartitionDir is the local directory of a partition's log under a
// broker's data directory.
func PartitionDir(dataDir, name, id string, partition int32) string {
	dir := name + "-" + strconv.Itoa(int(partition))
	if id != "" {
		dir = name + "-" + id + "-" + strconv.Itoa(int(partition))
	}
	return filepath.Join(dataDir, "partitions", dir)
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("meta: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
