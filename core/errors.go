package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/tier"
)

// Kinds of error. Every error the Broker returns is an *Error whose Kind
// is one of these (errors.Is(err, core.ErrTopicNotFound)); its message is
// the whole text a person reads, and says what happened, what is stored,
// and what to do. A front end maps kinds to its protocol's codes.
var (
	// ErrInvalidArgument: the request is malformed or out of range;
	// nothing was done.
	ErrInvalidArgument = errors.New("core: invalid argument")
	// ErrTopicNotFound: the topic does not exist (or was deleted).
	ErrTopicNotFound = errors.New("core: topic not found")
	// ErrGroupNotFound: the consumer group has no state.
	ErrGroupNotFound = errors.New("core: group not found")
	// ErrMemberNotFound: the group member is not live here (expired, left,
	// or the coordinating broker restarted): join again.
	ErrMemberNotFound = errors.New("core: member not found")
	// ErrTopicExists: a topic of that name exists already.
	ErrTopicExists = errors.New("core: topic already exists")
	// ErrOutOfRange: an offset outside what the partition holds.
	ErrOutOfRange = errors.New("core: offset out of range")
	// ErrFailedPrecondition: the request does not fit the current state
	// (stale generation, partition not assigned, group has live members,
	// a producer sequence or epoch refused); retrying it as is fails again.
	ErrFailedPrecondition = errors.New("core: failed precondition")
	// ErrConflict: a concurrent change won (another broker wrote the
	// group's offsets, an earlier batch of the producer is in flight):
	// retry.
	ErrConflict = errors.New("core: conflict")
	// ErrNotOwner: another broker owns what the request names (a
	// partition's writes, a group's coordination); nothing was done. The
	// *Error's Owner names that broker: send the request there.
	ErrNotOwner = errors.New("core: not owner")
	// ErrUnavailable: the broker or the object store cannot serve the
	// request now (shutting down, fenced, store errors, backpressure):
	// retry, maybe elsewhere.
	ErrUnavailable = errors.New("core: unavailable")
	// ErrResourceExhausted: a bound of this broker is reached; nothing was
	// stored.
	ErrResourceExhausted = errors.New("core: resource exhausted")
	// ErrDeadlineExceeded: the request's deadline passed first.
	ErrDeadlineExceeded = errors.New("core: deadline exceeded")
	// ErrCanceled: the request's context was canceled.
	ErrCanceled = errors.New("core: canceled")
	// ErrInternal: stored data is unreadable, or an unexpected failure.
	ErrInternal = errors.New("core: internal error")
)

// Error is an error of the Broker: a kind (one of the Err* sentinels) and
// the message a person reads. Cause, when set, is the lower-layer error it
// comes from (errors.Is sees through to it).
type Error struct {
	Kind  error
	Msg   string
	Cause error
	Owner *Node // with ErrNotOwner: the broker to send the request to
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// classify turns an error of a lower layer (tier, ingest, wal, fetch,
// context) into an *Error with the message the broker gives for it. An
// *Error passes through.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	wrap := func(kind error, msg string) error { return &Error{Kind: kind, Msg: msg, Cause: err} }
	var oor *fetch.OutOfRangeError
	switch {
	case errors.As(err, &oor):
		return wrap(ErrOutOfRange, oor.Error())
	case errors.Is(err, fetch.ErrInvalidOffset):
		return wrap(ErrInvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return wrap(ErrCanceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return wrap(ErrDeadlineExceeded, err.Error())
	case errors.Is(err, tier.ErrFenced):
		return wrap(ErrUnavailable, fmt.Sprintf("%v; retry: another broker owns the partition now", err))
	case tier.IsRetryable(err):
		return wrap(ErrUnavailable, fmt.Sprintf("%v; the object store is unavailable, retry later", err))
	case errors.Is(err, ingest.ErrStaleIncarnation):
		return wrap(ErrUnavailable, "this broker is reopening the partition under a new WAL incarnation (it handed it off and another broker claimed it meanwhile); nothing was stored: retry")
	case errors.Is(err, ingest.ErrClosed):
		return wrap(ErrUnavailable, "the partition was closed while the request was in flight (the broker is shutting down, or the partition is being reopened after a takeover); the request's outcome is unknown: retry with the same producer sequence")
	case errors.Is(err, wal.ErrBackpressure):
		return wrap(ErrUnavailable, fmt.Sprintf("%v; this batch was not appended (in a request that spans partitions, the batches of the partitions before it may have been): retry after a backoff, with the same producer sequence so stored batches are recognized", err))
	case errors.Is(err, wal.ErrFenced), errors.Is(err, wal.ErrClosed):
		return wrap(ErrUnavailable, fmt.Sprintf("%v; retry on another broker", err))
	case errors.Is(err, ingest.ErrOutOfOrderSequence):
		// An earlier batch of this producer may still be in flight.
		return wrap(ErrConflict, fmt.Sprintf("%v; retry after the earlier batches", err))
	case errors.Is(err, ingest.ErrInvalidMsgID):
		return wrap(ErrInvalidArgument, err.Error())
	case errors.Is(err, ingest.ErrStaleSequence), errors.Is(err, ingest.ErrProducerFenced):
		return wrap(ErrFailedPrecondition, err.Error())
	}
	return wrap(ErrInternal, err.Error())
}

// errShuttingDown is what a request gets once Close began.
func errShuttingDown() error {
	return errorf(ErrUnavailable, "broker is shutting down; retry on another broker")
}
