// Package wal owns strata's object-store write-ahead log: the WAL objects a
// broker stores so that an acknowledged record survives the loss of the
// broker and its disk.
//
// A broker process is one incarnation (NewIncarnation). Its Writer
// group-commits everything the broker receives, across all partitions,
// into one object per flush, under wal/<incarnation>/<seq:020d>; a flush
// starts FlushInterval after the first unflushed record arrived, or as soon
// as FlushBytes are buffered. A record is durable (and its producer may be
// acked) once the object holding it is stored.
//
// Invariants:
//   - Objects are created only if absent, with sequence numbers 0, 1, 2, ...
//     in order; the next is started only after the previous one is stored.
//     So an incarnation's stored objects are always a prefix of its
//     sequence, and two processes can never both store the same object.
//   - A recoverer fences an incarnation by creating a fence object at its
//     next sequence number; the incarnation's next PUT then fails (an idle
//     writer also looks for it every ProbeInterval), it learns it is
//     fenced (ErrFenced), and it never acks anything again.
//     Everything it ever acked as durable is in an object below the fence.
//   - A lost PUT response is resolved by reading the object back: a WAL
//     object at our key is ours (nobody else writes WAL objects under our
//     prefix); a fence means we are fenced. Each PUT attempt ends by the
//     store's deadline for its size (tier.RequestTimeout), so a hung
//     connection costs one deadline; the timed-out attempt is resolved the
//     same way by the next one.
//   - Each object's header lists, per partition, the offset range and byte
//     range it holds, so recovery fetches only the header and the ranges of
//     the partitions it recovers.
//   - Memory for received but unstored data is bounded (MaxBufferedBytes);
//     Reserve waits for space and gives up with ErrBackpressure when its
//     context ends.
//   - An object is deleted (Collect) only once every partition in it is
//     sealed past the offsets it holds, and never while it is its
//     incarnation's newest object; fences are never deleted. So at every
//     moment an incarnation's newest object exists, the highest sequence
//     Fence lists is at least the highest the incarnation used, and once
//     Fence returns no write of that incarnation can succeed, whatever
//     garbage collection deleted before. (Cost: one object per
//     incarnation stays in the bucket.) Listing and putting a fence are
//     not atomic (the collector may free the slot a fence aims at while
//     the writer stores past it), so Fence lists again after each attempt
//     and is done only when a fence is the incarnation's newest object;
//     readers read past a lower fence, since objects above it were
//     stored before the fence that holds.
//   - The Reader's header cache is bounded and drops the headers of
//     collected objects.
//
// Every decoder here is fuzzed and returns an error wrapping ErrCorrupt
// on bad input, never a panic.
package wal
