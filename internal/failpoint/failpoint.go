// Package failpoint lets fault tests crash the strata binary at named points
// of the write path, to prove that a crash there loses nothing.
//
// Failpoints exist only in binaries built with the build tag "failpoints";
// in every other build Hit is an empty function the compiler removes. In a
// failpoints build, the environment variable STRATA_FAILPOINTS lists the
// armed points as name=N pairs separated by commas: the N-th time Hit(name)
// is called (1 when N is omitted), the process exits at once with status
// ExitCode, as a kill -9 would leave it (no deferred calls, no flushing).
package failpoint

// ExitCode is the status a failpoint crash exits with.
const ExitCode = 77

// The failpoints strata defines.
const (
	// WALUploaded: a WAL object was stored but no producer was acked yet.
	WALUploaded = "wal-uploaded"
	// SegmentUploaded: a sealed segment was uploaded but the manifest does
	// not reference it yet.
	SegmentUploaded = "segment-uploaded"
	// ManifestCommitted: the manifest now references a new segment but the
	// broker has not trimmed anything yet.
	ManifestCommitted = "manifest-committed"
	// ExportFileStored: an export stored a Parquet file but has not
	// committed its range in the export manifest yet.
	ExportFileStored = "export-file-stored"
)
