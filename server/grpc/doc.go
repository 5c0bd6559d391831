// Package grpcserver is the gRPC front end of strata's broker: it
// implements stratapb.StrataServer over a core.Broker, converting messages
// to the core's types and mapping the core's error kinds to status codes
// (one table, codeOfKind), and it holds what is specific to gRPC: the
// memory limits a client can push on the server (limits.go,
// docs/limits.md).
//
// Invariants:
//   - Every error leaves as a gRPC status with the core's message word for
//     word: the codes follow the error's kind, never its text.
//   - Memory a client can make the server hold is bounded: messages by
//     Limits.MaxMessageBytes; a produce request by records, headers per
//     record and cost (every record and header costs a fixed overhead on
//     top of its bytes, core.RecordOverheadBytes), refused before it is
//     decoded by the server codec; all produce requests together by
//     ProduceBufferBytes (beyond it: RESOURCE_EXHAUSTED, nothing written);
//     fetch response bytes built or queued for a socket per stream by
//     FetchStreamBytes and server-wide by FetchBufferBytes (beyond them a
//     stream waits, blocked). The budgets live here, not in the core,
//     because what they count (decoded messages, encoded buffers in the
//     transport) is the front end's; the core asks a FetchBudget before
//     each read.
//   - A slow reader only slows its own stream (gRPC flow control), never
//     the server's memory.
//   - A fetch with stored_blocks sends sealed blocks as the read cache
//     holds them (docs/fetch.md): the codec puts their bytes into the
//     transport without a copy, framed so the message is byte for byte
//     proto.Marshal's (stored.go), and the response's lease lasts until
//     the transport frees the last piece. The budgets, max_bytes and the
//     fetch quota count their bytes like records'.
//   - Share groups (share.go): a receive's answer is bounded by its
//     max_bytes, held from the fetch budget while it waits; what the core
//     leased and the answer cannot carry is released (no delivery
//     counted). A receive answers before the call's deadline. A settle
//     answers every receipt in request order, NOT_OWNER per receipt in
//     the outcome (reason, owner), never as the call's status.
//
// Concurrency: Server is safe for concurrent use. It does not own its
// core.Broker: stop the gRPC server first, then close the broker.
package grpcserver
