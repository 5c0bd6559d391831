// Package meta owns the log's metadata in the bucket: the partition
// manifest (sealed segments, log start, owner epoch, WAL owners, the
// idempotent producers' snapshot) with its compare-and-swap store, the one
// read-modify-CAS helper every metadata object is written through (CAS:
// manifests, group state, the producer-id block, topic configs), and the
// name of every object key and local path strata writes (keys.go). The
// blob-store contract it writes through is package tier's.
//
// Invariants:
//   - A metadata object changes only by a conditional write (CAS.Swap) on
//     the ETag its writer read, or on its absence. Every version written
//     is unique to its write (a random write id inside), so a write whose
//     answer was lost, or whose condition failed, is settled by reading
//     the object back: ours is recognized and adopted, never taken for
//     another writer's and redone; another writer's is reported as a
//     conflict with the current version; a read-back that fails leaves
//     the outcome unknown (ErrOutcomeUnknown), never guessed.
//   - A manifest changes only by compare-and-swap on its ETag
//     (ManifestStore.Update); losing it means fenced (tier.ErrFenced).
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
