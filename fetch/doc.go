// Package fetch owns strata's read path: reading a partition from an offset
// or a timestamp, from the local log when the data is still there (hot) and
// otherwise from sealed segments in the object store (cold), through a
// shared, bounded block cache.
//
// Invariants:
//   - A read never returns a record below the requested offset, never skips
//     one, and returns records in offset order.
//   - A read below the log start fails with *OutOfRangeError carrying the
//     current log start; a read at or past the high watermark returns no
//     records and no error. A segment that vanishes under a read because
//     retention deleted it is reported the same way, once the manifest
//     shows the new log start. A negative offset fails with
//     ErrInvalidOffset.
//   - Cold reads fetch only the block ranges they need: opening a segment
//     costs one ranged GET of its tail (two when the footer is large), a
//     block span costs one ranged GET. Concurrent readers of one block cause
//     one GET (single flight).
//   - The cache is bounded: memory by CacheConfig.MemoryBytes, disk by
//     CacheConfig.DiskBytes. Cold GETs run under their own concurrency
//     budget (MaxConcurrentGets), so replay cannot starve the tail.
//   - ReadStored answers with sealed blocks exactly as stored (never
//     decompressed here, nor decoded ahead) and then local records; the
//     blocks' records at or after Result.SkipBefore, then Records, are
//     what Read would return from the same offset, in offset order. Its
//     answer costs at most maxBytes (a block's stored bytes plus
//     StoredBlockOverhead) unless a single block or record is over it: a
//     block over it alone is sent as its records, cut to maxBytes.
//   - fetch depends on tier.BucketReader only: the read path cannot write.
//   - Decoded batches are immutable and shared: the cache hands the same
//     decoded blocks to every reader and never writes to or reuses their
//     memory (eviction only drops its reference). Read copies the records
//     out (their bytes still shared); ReadBatches hands out views of the
//     decoded batches themselves, sliced to the range, with no spare
//     capacity: read-only for the caller, valid while it holds them.
//
// Concurrency: Cache and PartitionReader are safe for concurrent use. The
// Cache owns its read-ahead goroutines and stops them in Close.
package fetch
