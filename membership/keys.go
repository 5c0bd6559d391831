package membership

// Gossip encryption keys: the key file's format, its checks, and the key
// ring's replacement at run time (rotation).

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNotEncrypted is returned by SetKeys on a Cluster started without
// keys: memberlist cannot turn encryption on at run time.
var ErrNotEncrypted = errors.New("membership: gossip encryption is off (the broker was started without a key file); restart it with one to turn encryption on")

// ValidateKeys checks a key ring: at least one key, each 16, 24 or 32
// bytes, none twice. Its errors name keys by position, never by value.
func ValidateKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("membership: no gossip key: give at least one")
	}
	for i, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("membership: gossip key %d is %d bytes; want 16, 24 or 32 (AES-128, -192 or -256)", i+1, n)
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return fmt.Errorf("membership: gossip keys %d and %d are the same key: list each once", j+1, i+1)
			}
		}
	}
	return nil
}

// ParseKeys reads a key file: one base64 key (standard encoding, padded
// or not) a line, the first the primary; blank lines and lines starting
// with '#' are skipped. name is the file's name for errors, which give
// the line number and never the key.
func ParseKeys(r io.Reader, name string) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if k, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				return nil, fmt.Errorf("gossip key file %s line %d: not a base64 key; make one with: head -c 32 /dev/urandom | base64", name, line)
			}
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("gossip key file %s line %d: the key is %d bytes; want 16, 24 or 32 (AES-128, -192 or -256); make one with: head -c 32 /dev/urandom | base64", name, line, n)
		}
		for i, o := range keys {
			if bytes.Equal(o, k) {
				return nil, fmt.Errorf("gossip key file %s line %d: the same key as key %d of the file: list each key once", name, line, i+1)
			}
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file %s has no key: put one base64 key a line, the primary first", name)
	}
	return keys, nil
}

// LoadKeyFile reads and parses the key file at path (see ParseKeys).
func LoadKeyFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	defer f.Close()
	return ParseKeys(f, path)
}

// KeyID is a short fingerprint of a key for logs (the first 8 hex digits
// of its SHA-256): it tells keys apart and reveals nothing of them.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// Keys returns a copy of the installed keys, the primary first; nil when
// gossip is not encrypted.
func (c *Cluster) Keys() [][]byte {
	if c.keyring == nil {
		return nil
	}
	var out [][]byte
	for _, k := range c.keyring.GetKeys() {
		out = append(out, bytes.Clone(k))
	}
	return out
}

// SetKeys replaces the key ring with keys (keys[0] the new primary): new
// keys are installed, the primary switched, then keys no longer listed
// removed, so no message in flight under a key that stays is refused. A
// rotation is three SetKeys on every member in turn: add the new key
// (second), make it primary (first), remove the old one. It returns
// ErrNotEncrypted when the Cluster was started without keys, and leaves
// the ring as it was when keys are not valid.
func (c *Cluster) SetKeys(keys [][]byte) error {
	if c.keyring == nil {
		return ErrNotEncrypted
	}
	if err := ValidateKeys(keys); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if err := c.keyring.AddKey(bytes.Clone(k)); err != nil {
			return fmt.Errorf("membership: install gossip key: %w", err)
		}
	}
	if err := c.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("membership: switch the primary gossip key: %w", err)
	}
	for _, old := range c.Keys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, old)
		}
		if !keep {
			if err := c.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("membership: remove gossip key %s: %w", KeyID(old), err)
			}
		}
	}
	return nil
}
