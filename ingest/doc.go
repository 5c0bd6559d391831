// Package ingest owns a partition's write path on one broker: the local log
// on disk (LocalLog: dense offsets, CRC-framed batches, fsync by policy,
// torn-tail recovery) and the Partition that seals closed local files into
// compressed segments in the object store, commits them to the partition's
// manifest by compare-and-swap, applies retention, and sweeps garbage.
//
// Invariants:
//   - Offsets are dense: every appended record gets NextOffset, and
//     NextOffset never moves backwards, across restarts included.
//   - A local file is deleted only after the manifest that references its
//     segment has been committed (sealed data is never only in memory).
//   - The manifest is changed only by the partition's owner, by CAS. A failed
//     CAS means another owner took over (tier.ErrFenced): the Partition stops
//     sealing and reports the error; it never retries blindly.
//   - Retention moves the log start in the manifest first and deletes objects
//     second, so a crash in between leaves only unreferenced objects, which
//     Sweep deletes later.
//
// Concurrency: LocalLog and Partition are safe for concurrent use. A
// Partition's background sealer is owned by the Partition and stopped by
// Close.
package ingest
