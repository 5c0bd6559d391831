// Package sim is a seeded, deterministic simulation of strata's ownership
// protocol, in the manner of FoundationDB's simulator: several brokers in
// one process on one shared in-memory bucket, each behind its own fault
// wrapper and with its own crash-modelling disk, on the fake clock of a
// testing/synctest bubble, driven by a schedule that is a pure function
// of a seed, and checked at the end by the history checker
// (internal/history).
//
// # What it models
//
//   - The bucket: one tier.MemStore (conditional writes are exact).
//   - Per broker process, a store wrapper that injects 503s (nothing
//     applied), lost responses (applied, then an error), hung requests
//     (a write is held until the caller's context ends or the burst
//     heals, then applied or not; a read times out), and pause, a
//     SIGSTOP: every write in flight or new is held and applied only at
//     resume, whatever its context says by then, and client requests
//     wait for the resume too. A kill cuts the wrapper off for good:
//     every later call fails, so do the held ones, and none applies, so
//     a dead broker has no further effect on the bucket; then the broker
//     is closed with a canceled context.
//   - Per broker slot, a vfs.Mem disk: a kill "with the disk" keeps what
//     was fsynced (optionally a torn tail of unsynced appends), "without
//     the disk" loses it; a restart is a new process (new incarnation) on
//     whatever disk the slot has.
//   - Background work is the brokers' own: WAL flushes, seals (2 KiB or
//     2 s), WAL garbage collection (every 500 ms) and, with Sweeps, the
//     partitions' sweeps (every 10 min, 1 h grace: core.Config has no
//     knob for them, so a sweep needs a 70-minute advance); plus explicit
//     GC steps (Broker.CollectWAL).
//   - Writes go mostly to a partition's "home" broker, as a client routed
//     by ownership would send them, and sometimes elsewhere, which moves
//     ownership; reads go anywhere.
//   - Clients call the gRPC front end's methods directly (server/grpc
//     over core: Produce, Fetch through an in-memory stream,
//     DescribeTopic, ListOffsets, CreateTopic, DeleteTopic,
//     InitProducer): produce with durable and
//     local acks, with and without an idempotent producer (which retries
//     an unknown batch with the same sequence), reads from random
//     offsets, and delete and re-create of topic b (topic a lives
//     throughout, so most of the history is checked in one era). Some
//     produces to topic a carry a delivery delay (core.HeaderDelay).
//   - A share group ("g") on topic a, created early (before most
//     produces) with short leases and backoffs and MaxDeliveries 3; its
//     clients call the core's methods directly (core.Broker's
//     CreateShareGroup, Receive, Settle, DescribeShareGroup), not the
//     front end's share handlers, which were written beside this
//     simulation. A receive goes mostly to a partition's home broker,
//     else anywhere for every partition (both claim the topic's
//     partition and its state-log partition, so they move ownership like
//     writes); the client holds what it got, forgets
//     some of it (those leases run out), and acks, nacks, releases or
//     rejects random subsets of what it holds, sometimes settling a
//     lease that ended, and again a receipt whose outcome it does not
//     know. The history keeps every delivery (partition and offset,
//     delivery count, lease end, receipt) and every settle's outcome per
//     receipt (settled, certainly not applied, or unknown).
//
// Even seeds run the WAL writer with one PUT in flight, odd seeds with
// the default (several, committed in order), so both are covered.
//
// It does not model a real network (no gRPC, no connection reuse or
// reordering beyond what the wrapper injects), real fsync timing or disk
// errors other than a crash, memory limits, clock skew between brokers
// (they share the bubble's clock), consumer groups, membership, share
// groups' extend, alter, delete, priorities, ordering by key or spilled
// delays (the group is small), or an object store that reorders writes
// of one key.
//
// # The check
//
// At the end every fault heals and paused brokers resume; every running
// broker must then take a durable write to every partition within five
// tries (liveness: a broker fenced for a partition claims it again rather
// than refuse writes for good); every broker is closed gracefully (it
// seals); a fresh broker produces one record to every partition (so it
// owns it and recovers the WAL of every earlier owner) and reads
// everything; a second fresh broker reads everything again. The history
// of every client's sends, acks and reads then must show:
//
//   - no durable ack lost;
//   - no local ack lost unless its broker was killed, or fenced (the
//     partition's ownership moved, or its incarnation was fenced) while
//     it could not know yet and its local-ack lease held, before the
//     record reached the bucket (runner.excuse states the rule exactly);
//   - no offset with two values, no record read at another offset than
//     acked, no gaps;
//   - no record at two offsets (no duplicates of idempotent batches;
//     plain batches are never retried);
//   - no record of a deleted topic in its re-created namesake: every era
//     of a topic name is its own topic for the checker ("b#2" is the
//     second topic named b). A request belongs to the topic its broker
//     resolved the name to: the identity in the WAL entry that holds the
//     record, or else any era from the client's view and the broker's
//     last config load (a broker that has not noticed a delete yet
//     writes to the deleted topic, and those acks go with it, as
//     docs/durability.md says); a request that may belong to more than
//     one era counts as sent, outcome unknown, in each, and such reads
//     are dropped;
//   - nothing refused as not written (NotFound, InvalidArgument, an
//     out-of-order sequence) yet stored.
//
// Then every fault is still healed and every other broker closed, and a
// fresh broker drains the share group: it receives with one-second leases
// and acks everything, letting fake time pass for backoffs, delays and
// the leases still running, until the group holds nothing and has read
// every partition to its end; and it reads the dead-letter topic
// (a.dlq.g). The share history must show (checkShare):
//
//  1. ack durability: no record is handed out again after an ack of it
//     was answered without error for its receipt (a lease that began after
//     the ack was sent), nor moved to the dead-letter topic, through every
//     takeover and disk loss;
//  2. lease exclusivity: no record is handed out while an earlier lease of
//     it had not reached its LeaseUntil and no settle of that delivery had
//     been sent (one that was refused does not count); times are the fake
//     clock's, in milliseconds, as the queue state keeps them;
//  3. at least once: every record of topic a at or past the group's start
//     offsets (read from its stored config) in the final log, and every
//     durable produce ack there, is in the end acked by someone (an ack
//     answered ok or of unknown outcome) or in the dead-letter topic;
//     every dead-letter copy carries the origin headers
//     (core.HeaderDLQOriginOffset and the others) naming a record of the
//     log with the same value, and no origin appears twice;
//  4. delivery counts grow: a record's next delivery has a higher count
//     than the one before, or the same count only when that one's release
//     was sent; and no count exceeds MaxDeliveries;
//
// beside consistency checks (a delivered record is the log's record at
// that offset, at or past the group's start; a lease begins within its
// receive) and that the drain ends.
//
// Beside the history: a read-only request (Fetch, DescribeTopic,
// ListOffsets, marked with ReadOnly in its context) must never write a
// manifest, and the final drain must be able to open and read every
// partition.
//
// Not every broker call can be held: goroutines blocked on a sync.Mutex
// stop synctest's clock, and the broker reads a bucket view's manifest
// and WAL under the view's lock, which other requests wait for. So reads
// never wait (no latency; a hang is an immediate timeout; a pause does not
// hold them). Every write can be held: the broker writes under no lock
// that other requests take (the producer-id block is taken under a
// channel token its waiters can leave).
//
// # Determinism and replay
//
// The schedule (NewPlan) is a pure function of the seed, and so are the
// fault decisions' random streams; the fake clock makes timers
// deterministic. Goroutine interleaving is not: the Go scheduler still
// decides which runnable goroutine goes first, and the brokers draw
// backoff jitter and object names from unseeded sources, so a failing
// seed replays the same schedule but not always the same run. Replay one
// with the command a failure prints, e.g.
//
//	go test ./internal/sim -run 'TestSim$' -sim.seed=N -v
//
// which prints the checker's findings and the schedule with what happened
// at each step (add -sim.logs for the brokers' logs). Run many with
// -sim.seeds=N (and -sim.first=M); -sim.disable=gc,delete-topic,... leaves
// step kinds out (to tell which one a failure needs; share-create leaves
// the share group out altogether); `make sim` runs
// thousands. Defaults (sim_test.go): 300 seeds of 250 steps (seconds on
// two cores), 60 under -race, 20 with -short.
//
// Concurrency: Run must be called inside a synctest bubble; one Run owns
// its World.
package sim
