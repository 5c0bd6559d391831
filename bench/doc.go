// Package bench holds strata's workloads: the demo that cmd/strata runs, and
// (as the broker grows) the produce, replay and peer benchmarks. Workloads
// live here rather than in cmd so tests can call them.
//
// Invariants: every workload is bounded in records and time, talks only to
// the store it is given (file:// or loopback MinIO), and verifies what it
// reads back rather than trusting counts.
package bench
