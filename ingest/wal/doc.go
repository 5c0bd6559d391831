// Package wal owns strata's object-store write-ahead log: the WAL objects a
// broker stores so that an acknowledged record survives the loss of the
// broker and its disk.
//
// A broker process is one incarnation (NewIncarnation). Its Writer
// group-commits everything the broker receives, across all partitions,
// into one object per flush, under wal/<incarnation>/<seq:020d>. Up to
// MaxInFlight (at most MaxPipeline) uploads are in flight at once, and
// uploads start at most one per FlushInterval (the linger), sooner when
// FlushBytes are buffered: a record waits at most the linger for its
// upload to start while a slot is free, and one after a quiet spell goes
// at once. A record is durable (and its producer may be
// acked) once the object holding it and every lower object are stored.
//
// Invariants:
//   - Objects are created only if absent, with sequence numbers 0, 1, 2,
//     ...; sequence s is started only once every sequence up to
//     s-MaxPipeline is stored, and objects are committed (their records
//     acked, sinks called) in sequence order, so what is acknowledged is
//     always a prefix of the sequence. Two processes can never both store
//     the same object.
//   - A recoverer fences an incarnation by taking, with fence objects,
//     every free sequence number from N-MaxPipeline+1 to N+MaxPipeline
//     (N: its newest stored object); every PUT the writer could still
//     make lies there, so each fails (an idle writer also looks for a
//     fence at its next sequence every ProbeInterval, and any read of
//     the broker's Reader that finds a fence under its own prefix tells
//     the writer: WatchOwnFences), it learns it is fenced (ErrFenced),
//     and it never acks anything again. Everything it ever acked as
//     durable is in a stored object below N+1.
//   - A crashed or fenced writer may leave a hole: a sequence it never
//     stored (now a fence) with stored objects above it. Nothing at or
//     above a hole was acked. Recovery (ReadTail) of a partition ends
//     where its offsets jump past a fence; a partition whose offsets run
//     on across the hole keeps the records above it. A reader's view
//     (Entries, cut at the first gap in offsets) shows no more than
//     recovery keeps.
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
//     incarnation's topmost object; fences are never deleted. So at every
//     moment an incarnation's topmost object exists and Fence's listing
//     finds it: a WAL object, or a fence that lies at most MaxPipeline
//     above a WAL object the incarnation stored (a Fence puts none
//     higher), so Fence takes N as at least the topmost fence minus
//     MaxPipeline, and once Fence returns no write of that incarnation
//     can succeed, whatever garbage collection deleted before, also
//     after a Fence that gave up halfway. (Cost: one object per
//     incarnation, and its fences, stay in the bucket.) Listing and
//     putting fences are not atomic (the
//     collector may free slots while the writer stores past them), so
//     Fence lists again after each round and is done only when every
//     slot in its range is taken; a fence that landed in a freed slot
//     below stored objects is harmless, and recovery reads past it when
//     the partition's offsets run on.
//   - Add and AddEncoded copy the batch's bytes before they return (the
//     caller's buffers may be reused at once). A chunk's buffer is reused
//     for later chunks only after its object is committed and was stored
//     by its only PUT attempt (a timed-out attempt's transport may still
//     read its body).
//   - The Reader's header cache is bounded and drops the headers of
//     collected objects.
//
// Every decoder here is fuzzed and returns an error wrapping ErrCorrupt
// on bad input, never a panic.
package wal
