package tier

import (
	"fmt"
	"strings"
)

// ValidateKey checks a key against the rules every backend enforces: not
// empty, no leading '/', no empty, "." or ".." segments, no NUL, at most
// 1024 bytes.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > 1024:
		return bad("longer than 1024 bytes")
	case strings.HasPrefix(key, "/"):
		return bad("starts with '/'")
	case strings.ContainsRune(key, 0):
		return bad("contains NUL")
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("has an empty, '.' or '..' path segment")
		}
	}
	return nil
}
