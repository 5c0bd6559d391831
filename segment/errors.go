package segment

import (
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every error about malformed segment, block,
// footer or batch bytes.
var ErrCorrupt = errors.New("segment: corrupt data")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
