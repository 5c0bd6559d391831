package tier

import (
	"fmt"
	"strings"
)

// MaxKeyLen is the longest key, in bytes, every backend accepts (S3's
// limit; an S3Store's prefix counts against it).
const MaxKeyLen = 1024

// ValidateKey checks a key against the rules every backend enforces: not
// empty, at most MaxKeyLen bytes, no leading '/', no empty, "." or ".."
// segments between '/' separators, no NUL. Errors wrap ErrInvalidKey.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case strings.HasPrefix(key, "/"):
		return bad("starts with '/'")
	case strings.ContainsRune(key, 0):
		return bad("contains NUL")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("has an empty, '.' or '..' path segment")
		}
	}
	return nil
}

// checkRange rejects negative offsets and lengths.
func checkRange(key string, off, length int64) error {
	if off < 0 || length < 0 {
		return fmt.Errorf("tier: get %s: range [%d,+%d) is negative: %w", key, off, length, ErrInvalidRange)
	}
	return nil
}

// rangeErr is the error of a range that starts past the object's end.
func rangeErr(key string, off, length, size int64) error {
	return fmt.Errorf("tier: get %s: range [%d,+%d) starts past the end of the %d-byte object: %w", key, off, length, size, ErrInvalidRange)
}

// listablePrefix reports whether any valid key can start with prefix: the
// segments before its last '/' must form a valid key. Listing any other
// prefix yields nothing (and is not sent to a backend that would refuse
// it).
func listablePrefix(prefix string) bool {
	i := strings.LastIndexByte(prefix, '/')
	return i < 0 || ValidateKey(prefix[:i]) == nil
}
