// Package ingest owns a partition's write path on one broker: the local log
// on disk (LocalLog: dense offsets, CRC-framed batches, fsync by policy,
// repair of torn or damaged files at open) and the Partition that seals closed local files into
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
//   - Opening a partition claims it (bumps the epoch) only after the local
//     log is open and checked: a failed open claims nothing. Reads never
//     open a partition.
//   - Local data is trusted only when the incarnation that wrote it is the
//     manifest's current owner; otherwise another owner may have acked
//     other records at its offsets, and it is removed.
//   - A manifest that beat our CAS but carries our epoch and owner is the
//     result of our own earlier write (its answer lost): it is adopted,
//     never taken for a takeover.
//   - An incarnation never reopens a partition it is an earlier owner of
//     (in the manifest's WAL owners, another owner since): its records of
//     the partition may be only in its own WAL, which recovery cannot
//     read without fencing itself (ErrStaleIncarnation; the broker opens
//     the partition under a new incarnation instead).
//   - A released partition (Release) is fully sealed before its manifest
//     says Owner "": an unowned manifest has nothing in any WAL, so the
//     next owner claims it without fencing anyone. A release that could
//     not seal everything leaves the owner named, to be fenced.
//   - Idempotent-producer state expires by broker time, never by record
//     timestamps, and remembers as many batches per producer as a client
//     may have in flight (rememberBatches).
//   - With DedupWindow, a record whose message id the partition stored
//     within the window (by broker time) is not stored again; the check
//     runs under the lock that assigns offsets, so one id is stored once
//     however many writes race. The ids are bounded (DedupMaxIDs) and
//     rebuilt from the log on open, never forgotten before the window.
//   - A `local` ack is refused once the WAL incarnation is fenced, and
//     waits for the WAL when it stored nothing within LocalAckLease.
//   - Retention moves the log start in the manifest first and deletes objects
//     second, so a crash in between leaves only unreferenced objects, which
//     Sweep deletes later. Sweep deletes without a CAS, so it deletes only
//     while the bucket's manifest (read after its listing) still carries
//     our epoch and owner, and keeps what either manifest references: an
//     owner taken over while idle never deletes the new owner's segments.
//     A partition sweeps only when garbage may be there (an upload not
//     committed, a failed delete, a takeover, young leftovers of the last
//     sweep), and at least every IdleSweepInterval (retention.go).
//   - An idle partition holds no buffer and no goroutine and makes no
//     object-store request: frames are encoded in buffers shared by every
//     local log and held only during a Write (a batch is encoded once:
//     the WAL copies the frame's payload before the buffer is released), the interval fsync and
//     the background rounds are timers armed for the next thing due
//     (maintain.go), and no round of a partition with nothing to seal,
//     expire or sweep touches the object store.
//   - Partitions sharing a SealLimiter (a broker's) seal at most its
//     bound at once: a seal holds its segment in memory, and partitions
//     opened together reach SealInterval together.
//
// Concurrency: LocalLog and Partition are safe for concurrent use. A
// Partition's background rounds (sealing, retention, sweeping) run on a
// timer owned by the Partition, one round at a time, and Close stops it
// and waits for a round in progress; a LocalLog's interval fsync is a
// timer that Close stops the same way. LocalLog holds its lock only to pick what to read: reads from disk
// run outside it (a read never blocks Append), holding a reference that
// keeps each file they read open until they are done, even when DropBefore
// or Close has removed it from the log meanwhile.
//
// Files: locallog.go is the local log (format, recovery, appends, reads);
// the Partition is split by concern: partition.go (the type, Close,
// accessors), config.go (PartitionConfig), maintain.go (the timer of the
// background rounds), open.go (claim, adoption of local
// data, recovery from the WAL), write.go (offset assignment, idempotent
// duplicates, WAL adds), ack.go (high watermark and ack waits), seal.go
// (sealing and the manifest commit), retention.go (local trim, retention,
// sweep), hot.go (hot reads cut at the high watermark), producers.go
// (idempotent-producer state) and dedup.go (message-id dedup).
package ingest
