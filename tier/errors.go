package tier

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// ErrUnavailable is wrapped by errors that mean "the store did not answer
// usefully; trying again later may work": injected faults, outages.
var ErrUnavailable = errors.New("tier: object store unavailable")

// errClosed is returned by writes to a closed store.
var errClosed = errors.New("tier: store is closed")

// StatusError is a backend failure that is none of the sentinels, with the
// HTTP-like status that classifies it. Backends return it so IsRetryable
// (and the retry policy of conditional writes) can tell transient failures
// from final ones. Use errors.As to get it.
type StatusError struct {
	Op     string // "get", "put-if-match", ...
	Key    string // the object key (or prefix, or bucket)
	Status int    // HTTP status; 0 when no response was received
	Code   string // backend error code, e.g. "SlowDown"; may be empty
	Err    error  // the underlying error
}

func (e *StatusError) Error() string {
	msg := "tier: " + e.Op + " " + e.Key + ": "
	if e.Code != "" {
		msg += e.Code + ": "
	}
	if e.Err != nil {
		msg += e.Err.Error()
	}
	return msg
}

func (e *StatusError) Unwrap() error { return e.Err }

// Backend error codes that mean "try again" whatever the status says.
var retryableCodes = map[string]bool{
	"SlowDown": true, "SlowDownRead": true, "SlowDownWrite": true,
	"InternalError": true, "ServiceUnavailable": true, "RequestTimeout": true,
	"Throttling": true, "ThrottlingException": true, "RequestLimitExceeded": true,
	"RequestThrottled": true, "ExpiredToken": true,
}

// IsRetryable reports whether err is transient, so the same call may
// succeed later: a timeout (ErrTimeout, and context.DeadlineExceeded of a
// per-attempt deadline), a connection failure, a 5xx answer (500
// InternalError, 503 SlowDown, ...), 408, 429, or ErrUnavailable.
//
// It is false for nil, ErrNotFound, ErrPreconditionFailed, ErrFenced,
// ErrInvalidKey, ErrInvalidRange, ErrSizeMismatch, context.Canceled, and
// any other 4xx answer. Unknown errors are not retryable.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrTimeout):
		return true // first: it never wraps a final error
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrPreconditionFailed), errors.Is(err, ErrFenced),
		errors.Is(err, ErrInvalidKey), errors.Is(err, ErrInvalidRange), errors.Is(err, ErrSizeMismatch),
		errors.Is(err, context.Canceled), errors.Is(err, errClosed):
		return false
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Status == 408 || se.Status == 429 || se.Status >= 500:
			return true
		case retryableCodes[se.Code]:
			return true
		case se.Status != 0:
			return false // an answer, and a final one (400, 403, ...)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // timeouts, refused and reset connections, DNS failures
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// notApplied reports whether err proves that the request had no effect, so
// even a conditional write may be sent again without risking a spurious
// precondition failure: the connection was never established, or the store
// refused the request before acting on it (429, 503 SlowDown).
//
// Everything else that is retryable is ambiguous for a write: a timeout, a
// reset connection or a 500 may come after the write applied.
func notApplied(err error) bool {
	var se *StatusError
	if errors.As(err, &se) && (se.Status == 429 || se.Status == 503) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) || errors.Is(err, syscall.ECONNREFUSED)
}
