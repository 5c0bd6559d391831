package fetch

import "fmt"

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
