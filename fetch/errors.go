package fetch

import (
	"errors"
	"fmt"
)

// ErrInvalidOffset: a read from an offset that can never exist (a
// negative one). It is the caller's mistake, not the log's state.
var ErrInvalidOffset = errors.New("fetch: invalid offset")

// OutOfRangeError reports a read below the partition's log start (data
// deleted by retention, or never written).
type OutOfRangeError struct {
	Offset         int64 // what was asked for
	LogStartOffset int64 // the oldest offset still readable
	HighWatermark  int64 // the next offset to be written
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("fetch: offset %d is out of range: the log starts at %d (high watermark %d); read from %d or later",
		e.Offset, e.LogStartOffset, e.HighWatermark, e.LogStartOffset)
}
