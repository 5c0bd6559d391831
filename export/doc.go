// Package export owns the Parquet export of a topic: it reads a topic's
// sealed segments from the bucket alone (the topic config, the partition
// manifests and the segments, through fetch with no local log) and writes
// them as Parquet files to a target store, with an export manifest per
// partition there that says which offset ranges are exported. The CLI
// (`strata export parquet`) runs it once; a broker runs it in a loop for
// the topics whose config says export=parquet (Loop). The row layout is
// the topic's (core.TopicLayout: typed columns for a topic with a JSON
// value schema).
//
// Layout at the target (Prefix first when set), Hive style so engines
// read topic, date and partition from the path:
//
//	topic=<T>/date=<YYYY-MM-DD>/partition=<P>/<first:020d>-<last:020d>.parquet
//	_strata/export/<T>/<topic-id>/<P>.json        the export manifest of partition P
//
// date is the UTC date of the records' timestamps; first and last are the
// file's offset range (inclusive), zero padded to 20 digits so that names
// sort by offset. A topic created before topic identities has "_" for its
// id. The manifests end in .json, so `**/*.parquet` never matches them.
// The row layout (the columns) is package columnar's.
//
// Invariants:
//   - A Parquet file is written only by one atomic conditional create
//     (PutIfAbsent) of a complete file: a reader sees a whole file or
//     none, and a file once stored is never replaced or deleted by an
//     exporter. A file's key-value metadata names the topic, its
//     identity, the partition, the offset range and the claim it was
//     written for.
//   - A file holds exactly the records of its range: every record of the
//     partition with first <= offset <= last, once each, in offset order.
//     Its records all have one UTC date. It is cut at a date change and
//     once its records' segment bytes reach FileBytes; row groups are cut
//     at RowGroupBytes of rows (columnar's Builder.Bytes) and never exceed
//     RowGroupLimit unless one row does.
//   - Exactly once: the committed ranges of a partition's manifest are
//     disjoint, each has exactly one file (or is marked lost: retention
//     deleted its records before any exporter read them), and no file
//     exists for offsets outside the committed ranges and the one pending
//     claim. So a reader of `**/*.parquet` counts each exported record
//     once, whatever was killed when, and however many exporters ran.
//   - Memory is bounded whatever the topic size: one row group (at most
//     RowGroupLimit of rows, plus the Parquet encoder's pages), one source
//     read (ReadBytes) and the read cache's bounds. A file is spooled to
//     local disk (Spool, SpoolDir), not held in memory, and streamed from
//     there in its one PUT.
//
// The exactly-once protocol. The export manifest of a partition changes
// only by compare-and-swap on the version read (meta.CAS.Swap: PutIfMatch,
// or PutIfAbsent for the first), and every version carries a fresh write
// id. An exporter loops:
//
//  1. Read the manifest. If it holds a pending claim, finish that claim
//     (step 3), whoever made it: the claim fixes the first and last
//     offsets, the file key and the row-group sizes, so every exporter
//     writes the same rows to the same key.
//  2. Otherwise plan the next range (the first offset not covered by a
//     committed range, up to the sealed end and the run's bounds, cut at a
//     date change or FileBytes) and write it into the manifest as the
//     pending claim by CAS, before writing any file. Losing the CAS: go to 1.
//  3. Build the file in the spool, then PutIfAbsent it at the claim's key.
//     If the key exists, its metadata must name the same topic identity,
//     partition, range and claim (another exporter of the same claim, or
//     an earlier attempt of ours, stored it): it is adopted as ours, never
//     replaced. Anything else at the key is an error; nothing is written.
//  4. Commit by CAS: append the range (rows, bytes, the misfit report)
//     and clear the claim. Losing the CAS: go to 1 (the winner committed
//     it, or the claim is still pending and is finished again).
//
// Why it is safe, by who can write what:
//   - Exporters (any number of CLI runs and broker loops, on any
//     machines) write a manifest only by CAS, so its versions form one
//     sequence; a claim is added only to a version without one, over
//     offsets no committed range covers, and leaves the manifest only by
//     becoming a committed range. So the claims ever made for a partition
//     are disjoint, and each is committed at most once. Exporters write
//     files only at the key of a claim they read from the manifest, only
//     with PutIfAbsent, and only with that claim's rows, so files never
//     overlap and none is replaced. A killed exporter leaves at most a
//     pending claim and perhaps its file: the next exporter of the
//     partition finishes exactly that claim first (no gap, no duplicate).
//     A claim without a file is not a file: readers glob Parquet files.
//   - The one write an exporter makes to the source bucket is core's: a
//     json topic without a value schema gets one inferred from its first
//     sealed records and stored in its config by CAS, only while none is
//     stored (core.TopicLayout), so every exporter and broker uses the
//     one that won and a file's columns never depend on who wrote it.
//   - The stores publish atomically: the file store writes a temporary
//     file under .strata-tmp/ (never named *.parquet) and renames or
//     links it into place; S3 makes a single PUT visible whole.
//   - Brokers' own writers (ingest, retention, topic deletion, WAL
//     collection) write only under topics/, wal/, groups/, producers/ and
//     shares/ (meta/keys.go), never under the export prefix (exports/ by
//     default). Retention may delete a source segment before it is
//     exported: a run skips offsets below the log start (and reports
//     them), and a pending claim whose records are gone is committed as
//     lost, or with its file if one was stored.
//   - A topic deleted and created again has a new identity, hence its own
//     manifests. Its files may have the keys of the old identity's: the
//     conditional create refuses to replace them and the metadata check
//     reports the other identity, so nothing of the old export is lost.
//   - A person or a lifecycle rule deleting or editing objects under the
//     prefix is outside this argument: the decoder refuses a manifest that
//     breaks the invariants above, and an exporter refuses a claim whose
//     key is not the one its range and date give.
//
// Concurrency: an Exporter is safe for concurrent use (two of its Export
// calls on one partition are two exporters racing, which the protocol
// settles). A Loop owns its goroutine; Close stops it and waits.
package export
