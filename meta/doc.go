// Package meta owns the log's metadata in the bucket: the partition
// manifest (sealed segments, log start, owner epoch, WAL owners, the
// idempotent producers' snapshot) with its compare-and-swap store, and the
// name of every object key and local path strata writes (keys.go). The
// blob-store contract it writes through is package tier's.
//
// Invariants:
//   - A manifest changes only by compare-and-swap on its ETag
//     (ManifestStore.Update); a write whose answer was lost is recognized
//     by its random UpdateID, never taken for another writer's.
//   - A manifest with a newer format version is refused, never rewritten.
//   - Decoding validates every invariant a writer relies on (segments
//     sorted and disjoint, the log start inside them, incarnation names
//     that are safe as key parts, producer states in range); the decoder
//     is fuzzed.
//   - Every key is built by a function here; no other package spells a
//     key.
//
// Everything here is safe for concurrent use.
package meta
