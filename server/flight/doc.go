// Package flightserver is the Arrow Flight front end of strata's broker: a
// read-only flight.FlightServer over a core.Broker that serves a topic's
// history as Arrow record batches (docs/flight.md). It owns the formats of
// its descriptors (a PATH of one topic, or a CMD with a JSON range),
// tickets and the report that ends a stream, and the memory bound of
// DoGet streams; the rows are columnar's (the one layout Flight and the
// Parquet export share), the records core.Fetch's.
//
// Invariants:
//   - A ticket names one partition's offsets [from, to) of one topic
//     identity (core.TopicID): GetFlightInfo resolves time ranges to
//     offsets, so a ticket always reads the same records, and a ticket of
//     a deleted and re-created topic is refused (NOT_FOUND), never read
//     against the new topic.
//   - DoGet sends every record of its range exactly once, in offset
//     order, one row each, in record batches built with columnar from
//     core.Fetch results (never through protobuf records); a batch is cut
//     at Config.BatchBytes.
//   - DoGet reads with core.FetchRequest.Batches: the read path's decoded
//     batches themselves, shared with the block cache and every other
//     reader, with no per-record copy. It only reads them (slices them to
//     its range; columnar.Builder copies what it keeps) and never writes
//     to them. The last batch (zero rows for an empty range)
//     carries the Report (rows, and the records that did not fit the
//     topic's value schema) as its app_metadata: a stream without it
//     ended early, and its status says why.
//   - Bad input (a malformed descriptor or ticket, an unknown topic, a
//     partition or offset out of range, a range below the log start)
//     answers a status with a message naming what to do, and nothing
//     else happens; the server stays up. The decoders are fuzzed.
//   - Memory: DoGet streams together hold at most Config.MemoryBytes
//     (Config.StreamBytes each: one read of ReadBytes, the batch being
//     built, its IPC body and its gRPC message); a DoGet beyond it waits
//     for its turn, up to its deadline. A read holds no copy: it refers
//     to decoded blocks (ReadBytes of records; a block the cache evicts
//     stays alive until the read is done). The buffers of batches sent
//     are recycled for the next ones (a pool the garbage collector
//     empties when they stay idle); the builder sizes each batch's
//     buffers once, for the batch before it, and so at most about
//     BatchBytes. gRPC flow control makes a slow
//     reader slow its own stream only. Descriptors and tickets are
//     bounded (MaxCommandBytes, MaxTicketBytes) and messages to the
//     server by ServerOptions.
//   - Every core error leaves as a status with the core's message and the
//     code of its kind (the same table as the gRPC front end's).
//   - Authorization (Rules, for the broker's auth.Guard): describe on the
//     topic for GetFlightInfo and GetSchema, consume for DoGet; ListFlights
//     shows only what Config.Visible lets the caller see.
//
// Concurrency: Server is safe for concurrent use. It does not own its
// core.Broker: stop the gRPC server first, then close the broker.
package flightserver
