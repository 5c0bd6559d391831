// Package broker wires strata's storage core into a gRPC server: the topic
// registry (topic configs in the bucket, created with a conditional write),
// partitions (ingest write path + fetch read path), produce with key
// hashing, and fetch with long polling.
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
//   - Every topic has an identity made at creation (storage name
//     name/id); a deleted and re-created topic never sees the old data,
//     and a topic deleted elsewhere is dropped at the next topic refresh
//     (its follow streams then end with NOT_FOUND).
//   - A topic exists once its config object exists in the bucket; creation
//     is PutIfAbsent, so two brokers cannot both create one topic with
//     different settings.
//   - A produce request is validated whole before anything is appended: a
//     request with one bad record appends nothing.
//   - Errors leave as gRPC status codes with a message that says what to do.
//   - A consumer-group operation (lag, offset checks, resets) never opens
//     or claims a partition; the groups' own invariants (bounded memory,
//     members kept through store errors) are listed in groups.go.
//   - A tailing fetch never busy-polls: it waits on the partition's append
//     notification, and a slow reader only slows its own stream (gRPC flow
//     control), never the broker's memory.
//   - Memory a client can make the broker hold is bounded (limits.go,
//     docs/limits.md): messages by Limits.MaxMessageBytes; a produce request
//     by records, headers per record and cost (every record and header
//     costs a fixed overhead on top of its bytes), refused before it is
//     decoded; all produce requests together by ProduceBufferBytes (beyond
//     it: RESOURCE_EXHAUSTED, nothing written); fetch response bytes built
//     or queued for a socket per stream by FetchStreamBytes and broker-wide
//     by FetchBufferBytes (beyond them a stream waits, blocked).
//   - Topic configs hold only sizes and durations in range (checkTopicSizes),
//     checked on create and on load.
//
// Concurrency: Broker is safe for concurrent use; Close is idempotent and
// seals every open partition.
package broker
