// Package queue owns the queue semantics of one share group on one
// partition: which records are available, which are leased to a receiver
// and until when, how many times each was delivered, when a nacked or
// expired one comes back (backoff with jitter), which wait for their
// deliver-at time (delayed delivery, with the far ones spilled out of
// memory in sorted runs), which go to the dead-letter topic, and in what
// order available records are handed out (priority with aging, optionally
// one record per key in flight).
//
// State is a deterministic state machine without I/O: the broker (package
// core) offers it the partition's records in offset order, asks it for
// leases and settles, writes every Event it returns to the partition's
// queue-state log (the same group-committed WAL as records) before it
// answers the client, and snapshots it (Snapshot) to the bucket. A new
// owner rebuilds the same state from the latest snapshot plus the events
// after it (Apply), offering the records again as the events need them.
// What time alone decides (a lease that ran out, a backoff or a delay
// that ended) is not an event: it is recomputed from the event times, and
// the jitter of a backoff is a hash of the group's seed, the offset and
// the delivery count, so a rebuilt state decides as the lost one did.
// One thing is not logged: when a record was offered. A record offered
// again after the snapshot may count as available from a later time than
// it did in the lost state, so the order among such records may differ
// (by priority aging); which records are available, leased, settled or
// spilled does not.
//
// Invariants:
//   - A settled record (acked, or moved to the dead-letter topic) is never
//     handed out again: it is in no list, and every offset below Cursor
//     that is not in Entries or in a spilled run is settled.
//   - A record is leased to at most one receiver at a time; a receipt
//     (offset, delivery count, random token) settles only the lease it was
//     given for, and only before the lease ends.
//   - No record is handed out before its deliver-at time, nor before the
//     end of its backoff after a nack or an expired lease.
//   - A record whose delivery count reached MaxDeliveries, or that was
//     rejected, is handed out no more: it waits (DeadLetterPending) until
//     the broker reports it stored in the dead-letter topic.
//   - Memory is bounded: at most Window records that are not delayed are
//     held (Offer refuses more: CanOffer), and at most MemTimers delayed
//     ones besides those due within 2 × Horizon (never spilled); past
//     that, the latest-due delayed records are spilled to a run (a
//     sorted, immutable object the broker stores) and read back in order
//     as their time comes, into the room there is (LoadCount: the window
//     for records due, MemTimers for records due within the Horizon).
//     When the window is full, records in backoff due beyond 2 × Horizon
//     (outside any key's order) are spilled too, with their delivery
//     state, so a long nack never stalls the partition.
//   - Priority: a receive hands out the available record with the highest
//     effective priority, priority + ⌊waiting time / PriorityAging⌋, ties
//     to the longest waiting, then the lowest offset; so a record of
//     priority p is never passed by a record that became available
//     (9-p) × PriorityAging or more after it, whatever its priority
//     (bounded starvation): behind a stream of higher-priority records
//     that receivers keep up with, it waits at most (9-p) × PriorityAging.
//     (Behind a backlog that grows, it also waits for the part of the
//     backlog older than that.)
//   - OrderedByKey: at most one record per key is in flight (leased, in
//     backoff or waiting for the dead-letter move); the next record of the
//     key becomes available only once the previous one is settled.
//     Records with a deliver-at time leave their key's order (their delay
//     holds back nothing else).
package queue
