package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stratalog/strata/tier"
)

// The read-modify-CAS of every metadata object strata keeps in the bucket
// (partition manifests, consumer-group state, the producer-id block, topic
// configs) goes through CAS: one place that settles a conditional write's
// outcome, so no caller takes its own lost write for another writer's, or
// another writer's for its own.
//
// The rule that makes a write's outcome knowable: every version a caller
// writes is unique to that write (it carries a random write id: the
// manifest's UpdateID, the group state's UpdateID, the producer-id block's
// writer id, the topic's identity). So when the answer to a write is lost
// (a timeout, a reset, a 503, a canceled context) or its condition fails,
// reading the object back tells exactly what happened: the stored bytes are
// ours, or they are not and our write did not take effect (or did and was
// replaced since, which a caller treats the same way: someone else's
// version is current).

// Version is one stored version of a metadata object. The zero Version
// stands for an absent object.
type Version struct {
	Data []byte
	ETag string // "" when the object is absent
}

// Exists reports whether the version is a stored object.
func (v Version) Exists() bool { return v.ETag != "" }

// ConflictError is returned by Swap when the object is at another version
// than the one the swap was based on: another writer's write is current,
// and ours is not stored (or was stored and replaced since, when Lost is
// set). Current is what the object holds now. It wraps
// tier.ErrPreconditionFailed.
type ConflictError struct {
	Key     string
	Current Version
	// Lost is the error of our write when its answer was lost, so it may
	// have been stored before Current replaced it; nil when the store
	// refused the write.
	Lost error
}

func (e *ConflictError) Error() string {
	state := "absent"
	if e.Current.Exists() {
		state = "at ETag " + e.Current.ETag
	}
	if e.Lost != nil {
		return fmt.Sprintf("meta: %s was changed by another writer (now %s); the answer to our write was lost (%v), so it may have been stored and then replaced", e.Key, state, e.Lost)
	}
	return fmt.Sprintf("meta: %s was changed by another writer (now %s); our write was not stored", e.Key, state)
}

func (e *ConflictError) Unwrap() error { return tier.ErrPreconditionFailed }

// ErrOutcomeUnknown is wrapped when the answer to a write was lost and
// reading the object back failed too: the write may or may not be stored.
// Retrying the same bytes is safe (Swap recognizes them); writing other
// bytes must start from a fresh Read.
var ErrOutcomeUnknown = errors.New("meta: the write may or may not be stored")

// settleTimeout bounds the read that settles a write whose caller's context
// ended meanwhile.
const settleTimeout = 10 * time.Second

// CAS reads and conditionally writes small metadata objects.
type CAS struct {
	Store tier.Store
	// Retry retries transient failures of a read, and of a write whose
	// read-back shows it not stored. The zero value is the default backoff.
	Retry tier.Backoff
	// Limit bounds the bytes Read accepts (0: 16 MiB); a larger object is
	// an error, never read whole into memory.
	Limit int64
}

func (c CAS) limit() int64 {
	if c.Limit > 0 {
		return c.Limit
	}
	return 16 << 20
}

// Read returns the current version of key; an absent object is the zero
// Version and no error.
func (c CAS) Read(ctx context.Context, key string) (Version, error) {
	var v Version
	err := c.Retry.Do(ctx, func(ctx context.Context) error {
		rc, info, err := c.Store.Get(ctx, key)
		if errors.Is(err, tier.ErrNotFound) {
			v = Version{}
			return nil
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, c.limit()+1))
		if err != nil {
			return err
		}
		if int64(len(data)) > c.limit() {
			return fmt.Errorf("meta: %s is over %d bytes, more than any object strata writes there: restore it from a backup or delete it", key, c.limit())
		}
		v = Version{Data: data, ETag: info.ETag}
		return nil
	})
	if err != nil {
		return Version{}, fmt.Errorf("meta: read %s: %w", key, err)
	}
	return v, nil
}

// Swap stores next at key if the object is still at prev (prev "": it
// must be absent), and returns the new version's ETag. next must be unique
// to this write (see above). The result is settled unless it wraps
// ErrOutcomeUnknown or the caller's context ended before the write was
// sent: nil means next is stored; a *ConflictError means another writer's
// version is current and ours is not. Transient failures are retried while
// a read-back shows the object unchanged. If ctx ends after the write went
// out, the outcome is still settled by a read that ctx does not cancel.
func (c CAS) Swap(ctx context.Context, key, prev string, next []byte) (string, error) {
	var (
		etag       string
		lostBefore error // an earlier attempt's answer was lost
	)
	attempt := func(ctx context.Context) error {
		var (
			info tier.ObjectInfo
			err  error
		)
		if prev == "" {
			info, err = c.Store.PutIfAbsent(ctx, key, bytes.NewReader(next), int64(len(next)))
		} else {
			info, err = c.Store.PutIfMatch(ctx, key, prev, bytes.NewReader(next), int64(len(next)))
		}
		if err == nil {
			etag = info.ETag
			return nil
		}
		canceled := ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		lost := canceled || tier.IsRetryable(err)
		if lost {
			lostBefore = err
		} else if lostBefore != nil {
			// Our own earlier write may be what fails the condition.
			lost, err = true, lostBefore
		}
		if !lost && !errors.Is(err, tier.ErrPreconditionFailed) {
			return err // a final answer: not stored
		}
		// Settle by reading back, under a context of its own when ours
		// has ended, so the caller learns the truth either way.
		rctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
			defer cancel()
		}
		// One read: a failed one makes the outcome unknown, which the
		// retry loop around this attempt retries with the same bytes.
		cur, rerr := CAS{Store: c.Store, Retry: tier.Backoff{Attempts: 1}, Limit: c.Limit}.Read(rctx, key)
		var cerr *ConflictError
		switch {
		case rerr != nil && lost:
			// Retrying the same bytes is safe: a read-back recognizes them.
			return fmt.Errorf("%w: %s: writing failed (%w) and reading it back failed (%v)", ErrOutcomeUnknown, key, err, rerr)
		case rerr != nil:
			return fmt.Errorf("meta: %s: our write's condition failed, and reading the object back failed: %w", key, rerr)
		case cur.Exists() && bytes.Equal(cur.Data, next):
			etag = cur.ETag // ours is stored; its answer was lost
			return nil
		case cur.ETag != prev:
			cerr = &ConflictError{Key: key, Current: cur}
			if lost {
				cerr.Lost = err
			}
			return cerr
		case canceled:
			return err // unchanged when read back, and the caller is gone
		case tier.IsRetryable(err):
			return err // unchanged: retry
		default:
			return fmt.Errorf("meta: %s: the store refused a conditional write on an object that is unchanged (%w); the store is not linearizable", key, err)
		}
	}
	if err := c.Retry.Do(ctx, attempt); err != nil {
		return "", err
	}
	return etag, nil
}

// Update is a read-modify-CAS loop: it reads key, calls modify with the
// current version (the zero Version when absent), and swaps the result in;
// when another writer got there first, modify runs again on the newer
// version, up to 20 times. modify must return bytes unique to each call (a
// fresh write id) and must not keep cur.Data. It returns the version
// stored. When a write's answer was lost and another writer's version has
// replaced it since, whether ours is in it is unknown: Update returns an
// error wrapping ErrOutcomeUnknown, and the caller redoes the update from
// a fresh read only if applying it twice is harmless.
func (c CAS) Update(ctx context.Context, key string, modify func(cur Version) ([]byte, error)) (Version, error) {
	cur, err := c.Read(ctx, key)
	if err != nil {
		return Version{}, err
	}
	for range 20 {
		next, err := modify(cur)
		if err != nil {
			return Version{}, err
		}
		etag, err := c.Swap(ctx, key, cur.ETag, next)
		var cerr *ConflictError
		switch {
		case err == nil:
			return Version{Data: next, ETag: etag}, nil
		case errors.As(err, &cerr) && cerr.Lost != nil:
			// Our write may be in the version that replaced it: running
			// modify again could apply it twice.
			return Version{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		case errors.As(err, &cerr):
			cur = cerr.Current
		default:
			return Version{}, err
		}
	}
	return Version{}, fmt.Errorf("meta: %s: gave up after 20 writers in a row got there first; retry", key)
}
