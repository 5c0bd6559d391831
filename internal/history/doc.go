// Package history records and checks Jepsen-style histories of producing to
// and consuming from strata topics during fault tests.
//
// It owns the history format (one JSON [Event] per line, "JSONL"), its writer
// ([Recorder]), its reader ([Decode], [ReadFiles], [Encode]) and the checker
// ([Check], [CheckFiles]), which looks for the anomalies a durable log with
// dense per-partition offsets must never show. It is modeled on the Jepsen
// Kafka and total-queue checkers.
//
// # Recording
//
// A producer records [TypeSend] just before each attempt to produce a value,
// then exactly one outcome: [TypeAck] (the broker acknowledged it at a
// partition and offset), [TypeFail] (the value was definitely NOT written,
// e.g. rejected with a non-retryable error before it was sent) or
// [TypeUnknown] (it may or may not have been written: timeout, connection
// lost). A consumer records [TypeRead] for every batch of records it
// observes, and after the final drain [TypeHWM] with the high watermark of
// each partition. Every produced value must be unique across the history
// (e.g. "p1-000123"); values identify records.
//
// # Anomalies
//
// All definitions are per topic. The observed records are the
// (partition, offset, value) triples of all read events of all consumers.
//
//   - Lost: a value that was acked but never observed. This assumes the
//     history ends with a full drain of every partition; without one, every
//     acked record that was not read is reported lost.
//   - Duplicate: one value observed at more than one (partition, offset).
//   - Inconsistent: one (partition, offset) observed with two or more
//     different values (across all reads of all consumers).
//   - Ack mismatch: a value acked at (partition, offset) that was observed,
//     but not at that position. A value observed both at its acked position
//     and elsewhere is a Duplicate, not an Ack mismatch.
//   - Gap: for each partition with an hwm event (the maximum hwm is used),
//     a range of offsets in [lowest observed offset, hwm) that no read
//     observed, reported as half-open [From, To) ranges. A partition with an
//     hwm but no observed record at all has the gap [0, hwm). Partitions
//     without an hwm event are not checked for gaps.
//   - Unexpected: a value observed that no send event ever attempted
//     (a phantom write).
//   - Failed but present: a value recorded fail yet observed.
//
// Values recorded unknown, and values sent with no outcome at all (the
// producer crashed), may or may not be observed: both are fine. How many
// unknown values were present or absent is reported for information only.
//
// # Invariants
//
//   - A [Recorder] is safe for concurrent use. It writes each event as one
//     JSON object followed by a newline, so lines of concurrent events never
//     interleave. It is buffered: call [Recorder.Flush] or [Recorder.Close]
//     to get the events to the writer. The first write error is kept and
//     reported by [Recorder.Err] and [Recorder.Close].
//   - [Decode] is strict: a malformed line (bad JSON, unknown field, unknown
//     or missing type, missing value for send/ack/fail/unknown, negative
//     partition, offset or hwm) is an error naming the file, when known, and
//     the line number. Blank lines are skipped. A read with no records is
//     valid. Lines up to [MaxLineSize] bytes are accepted.
//   - Decoding and re-encoding a history gives back equal events.
//   - [Check] never mutates its input and its report is deterministic for a
//     given input: anomalies are sorted by topic, then partition and offset
//     or value. It runs in time linear in the size of the history (plus
//     sorting), using maps keyed by value and by (partition, offset).
package history
