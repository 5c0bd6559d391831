// Package tier owns strata's object-store contract and its implementations:
// the embedded file:// store, S3 (MinIO, AWS) through minio-go, an in-memory
// store and a fault-injecting wrapper for tests. What strata stores through
// it (manifests, keys) is package meta's.
//
// Invariants:
//   - Every call takes a context first and honours its cancellation.
//   - A successful Put/PutIfAbsent/PutIfMatch is durable and atomic: a reader
//     sees either the whole previous object or the whole new one, never a part.
//   - PutIfAbsent and PutIfMatch are linearizable per key: among concurrent
//     conditional writers of one key, exactly one succeeds; the others get
//     ErrPreconditionFailed. This is the only coordination strata relies on.
//   - Backend errors are mapped to this package's sentinels (ErrNotFound,
//     ErrPreconditionFailed, ErrInvalidKey, ErrInvalidRange, ErrTimeout)
//     so callers test them with errors.Is; other failures are
//     *StatusError, and IsRetryable tells transient ones from final ones.
//   - Every request of a networked store (S3Store) ends by its deadline
//     (Deadline: a base plus its size at a floor throughput), whatever the
//     connection does; past it the call fails with a retryable
//     *TimeoutError (ErrTimeout). RequestTimeout tells callers that bound
//     attempts themselves the same deadline.
//   - Keys are '/'-separated paths; every backend refuses the keys
//     ValidateKey refuses (the file store two more kinds, see FileStore).
//     List yields keys in lexical byte order.
//   - A write that fails with a retryable error (ErrTimeout included) or
//     the context's error may or may not have applied (the response was
//     lost, or the request was canceled in flight): the caller resolves
//     that by reading the object back. A conditional write that timed out
//     is never reported as success or ErrPreconditionFailed.
//     ErrPreconditionFailed means the write did not apply because another
//     version won (on S3 this includes 409: another conditional write of
//     the key was in flight); the stores never report it for a write of
//     their own that applied.
//
// The acceptance suite in package tiertest pins this contract down; every
// backend runs it.
//
// All Store implementations here are safe for concurrent use.
package tier

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors. Backends wrap them with the key and operation.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("tier: object not found")
	// ErrPreconditionFailed: a conditional write lost (the object exists for
	// PutIfAbsent, or its ETag changed for PutIfMatch).
	ErrPreconditionFailed = errors.New("tier: precondition failed")
	// ErrFenced: a manifest compare-and-swap failed, so another writer owns
	// the partition now. The caller must stop writing it; never retry blindly.
	ErrFenced = errors.New("tier: fenced by a newer writer")
	// ErrInvalidKey: the key is empty, absolute, or contains "." / ".."
	// segments or characters the backend cannot store.
	ErrInvalidKey = errors.New("tier: invalid object key")
	// ErrInvalidRange: GetRange with a negative offset or length, or an
	// offset past the object's end.
	ErrInvalidRange = errors.New("tier: invalid range")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is opaque; pass it back to PutIfMatch unchanged. Every
	// published version with different content has a different ETag, but
	// two versions with the same bytes may share one (S3's ETag of a
	// single-part upload is the content's MD5): a compare-and-swap loop
	// that must not be fooled by A-B-A puts something unique in every
	// version (the manifest's update ID).
	ETag         string
	LastModified time.Time // backend clock; informational
}

// BucketReader is the read-only half of the contract. The read path (fetch)
// depends on this alone.
type BucketReader interface {
	// Get streams the whole object. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// GetRange streams length bytes starting at off. A range that runs past
	// the end is cut at the end; off beyond the end is an error.
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	// Stat returns the object's info or ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order. An error from fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Store is the full object-store contract.
type Store interface {
	BucketReader
	// Put stores the object unconditionally, streaming size bytes from r
	// (size -1 when unknown). Nothing is visible before Put returns nil.
	Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error)
	// PutIfAbsent stores the object only if no object has the key;
	// otherwise it returns ErrPreconditionFailed.
	PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error)
	// PutIfMatch replaces the object only if its current ETag is etag;
	// otherwise (changed or missing) it returns ErrPreconditionFailed.
	PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error)
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases the store's resources. It is idempotent.
	Close() error
}
