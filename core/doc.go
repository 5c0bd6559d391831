// Package core is strata's protocol-free broker: the topic registry (topic
// configs in the bucket, created with a conditional write), partitions
// (ingest write path + fetch read path), produce with ack modes and key
// hashing, fetch with long polling, consumer groups, producer ids, WAL
// incarnations and their garbage collection. It knows nothing of any wire
// protocol: front ends (server/grpc today) convert their messages to the
// calls here and map its errors (the Err* kinds of *Error) to their codes.
// Nothing here imports gRPC, protobuf or api/stratapb (deps_test.go).
// What happens is published through small hook interfaces (hooks.go:
// Config.Hooks), which package metrics adapts to Prometheus; no metrics
// library is imported here either.
//
// Invariants:
//   - Only the write path (Produce) opens a partition, which claims it.
//     Fetch, ListOffsets, DescribeTopic, DescribeGroup and ResetOffsets
//     never claim: a partition not open here is read from the bucket
//     (sealed segments plus the owners' durable WAL tail, unfenced).
//   - When another broker fences this broker's WAL incarnation, the broker
//     drops the partitions opened under it and starts a new incarnation;
//     the partitions it still owns reopen on their next write. A dropped
//     partition is reopened only once its old Partition is closed, so two
//     never share a local directory.
//   - In a cluster (Config.Cluster), a broker takes writes only for the
//     partitions proposed to it (ErrNotOwner otherwise, naming the owner),
//     hands a partition off when the proposal moves (seal, then mark the
//     manifest unowned), and before claiming waits, up to releaseWait,
//     for a live previous owner's hand-off: membership proposes, the
//     bucket's CAS decides (cluster.go).
//   - Every topic has an identity made at creation (storage name
//     name/id); a deleted and re-created topic never sees the old data,
//     and a topic deleted elsewhere is dropped at the next topic refresh
//     (its follow streams then end with ErrTopicNotFound).
//   - A topic exists once its config object exists in the bucket; creation
//     is PutIfAbsent, so two brokers cannot both create one topic with
//     different settings. The stored object is the JSON of TopicConfig
//     plus "topic_id" (field names fixed: buckets written by older
//     brokers load).
//   - A produce request is validated whole before anything is appended: a
//     request with one bad record appends nothing.
//   - Every error is an *Error with a kind (ErrTopicNotFound, ...) and a
//     message that says what happened, what is stored and what to do.
//   - A consumer-group operation (lag, offset checks, resets) never opens
//     or claims a partition; the groups' own invariants (bounded memory,
//     members kept through store errors, locks) are listed in groups.go.
//   - A tailing fetch never busy-polls: it waits on the partition's append
//     notification; a FetchBudget given by the front end bounds the bytes
//     of results held at once. A Stored fetch hands sealed blocks on as
//     stored (never decompressed in the broker), counted by their stored
//     bytes in MaxBytes and the budget.
//   - Hooks (Config.Hooks) are called synchronously where their event
//     happens and must be cheap and never block; without hooks nothing
//     is computed for them.
//   - Topic configs hold only sizes and durations in range (checkTopicSizes),
//     and only known value formats, valid value schemas and known exports
//     (checkValueConfig), checked on create and on load.
//   - A topic's value schema (value format "json") is declared at create
//     or inferred from its first records by the first reader that asks
//     for its layout, and stored by a compare-and-swap on the topic config
//     only while none is stored: every broker and exporter ends with the
//     same schema, and it never changes after (value.go).
//   - Share groups (share.go, share_runtime.go, share_ops.go): a group's
//     state on a partition lives only with the partition's owner; every
//     change of it is an event in the partition of the colocated state
//     log "__share.<topic>" (same owner, same WAL), and a receive or
//     settle answers only once its events are durable. A new owner
//     rebuilds the state from the latest snapshot (of a logged moment: a
//     tick event stored after every event it covers, so a fenced owner
//     stores none) plus the events after it; snapshot keys carry the
//     group's creation. A dead-letter
//     move is written with a producer sequence logged first, so a retried
//     move is a duplicate. Names starting with "__" are the broker's.
//   - No broker-wide lock is held across I/O: a topic's config is read from
//     the bucket without Broker.mu (a load racing a removal reads again),
//     group state is written under the group's own write lock only, and
//     Close seals partitions without holding a topic's lock. Close and
//     DeleteTopic agree on who closes a partition: DeleteTopic abandons
//     what Close has not taken, and waits for what Close is sealing before
//     it deletes the topic's objects.
//
// Concurrency: Broker is safe for concurrent use; Close is idempotent and
// seals every open partition.
package core
