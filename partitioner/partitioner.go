// Package partitioner is strata's key partitioner, the one function the
// broker and every client use to place a keyed record: FNV-1a 32 of the
// key, modulo the partition count.
//
// Invariant: the mapping is stable forever. A record with a given key and
// partition count lands on the same partition in every strata version and
// in every client, so per-key ordering holds across producers; the golden
// test pins it. Changing it would split keys across partitions.
package partitioner

import "hash/fnv"

// ForKey returns the partition, in [0, partitions), of a record with key.
// partitions must be positive.
func ForKey(key []byte, partitions int32) int32 {
	h := fnv.New32a()
	h.Write(key)
	return int32(h.Sum32() % uint32(partitions))
}
