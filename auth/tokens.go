package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A token file lists principals, the SHA-256 of each one's bearer tokens,
// and optional quotas, in YAML or JSON:
//
//	principals:
//	  - name: alice
//	    tokens: ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//	    produce_bytes_per_second: 1048576   # optional; 0: unlimited
//	    fetch_bytes_per_second: 4194304     # optional; 0: unlimited
//	  - name: ingest-svc                    # an mTLS principal's quotas: no tokens
//	    produce_bytes_per_second: 10485760
//
// Why SHA-256 and not a password hash (bcrypt, argon2): strata's tokens
// are random 256-bit secrets (NewToken, `strata token new`), not
// passwords a person chose, so there is nothing to guess and nothing a
// slow hash would protect; a slow hash would instead cost tens of
// milliseconds of CPU on every RPC. SHA-256 is preimage resistant, so a
// stolen token file gives no token, and the broker compares hashes only.
// HashToken refuses short tokens, which is where that argument would fail.

// TokenHashPrefix starts every hash in a token file.
const TokenHashPrefix = "sha256:"

// MinTokenLength is the shortest token HashToken accepts: about 144 bits
// of base64 text; NewToken makes 256 bits.
const MinTokenLength = 24

// NewToken returns a new random token: "strata_" and 32 random bytes in
// base64url (43 characters). The prefix lets secret scanners find leaked
// tokens.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return "strata_" + base64.RawURLEncoding.EncodeToString(b)
}

// HashToken returns the token file's form of a token: "sha256:" and the
// hex SHA-256 of its bytes. It refuses a token shorter than
// MinTokenLength or with white space or control characters in it.
func HashToken(token string) (string, error) {
	if len(token) < MinTokenLength {
		return "", fmt.Errorf("auth: the token is %d characters, under %d: a token must be a long random secret (make one with `strata token new`)", len(token), MinTokenLength)
	}
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			return "", errors.New("auth: the token has white space or control characters in it: a token is one line of printable text")
		}
	}
	return TokenHashPrefix + hashHex(token), nil
}

func hashHex(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// TokenEntry is one principal of a token file.
type TokenEntry struct {
	Name string `json:"name" yaml:"name"`
	// Tokens are the hashes of the principal's tokens (several during a
	// rotation), each "sha256:" and 64 hex digits.
	Tokens []string `json:"tokens,omitempty" yaml:"tokens,omitempty"`
	// Token is never valid: a plaintext token in the file is refused.
	Token string `json:"token,omitempty" yaml:"token,omitempty"`
	// Per-principal quotas in bytes per second; absent: the broker's
	// default (--quota-produce-bytes, --quota-fetch-bytes); 0: unlimited.
	ProduceBytesPerSecond *int64 `json:"produce_bytes_per_second,omitempty" yaml:"produce_bytes_per_second,omitempty"`
	FetchBytesPerSecond   *int64 `json:"fetch_bytes_per_second,omitempty" yaml:"fetch_bytes_per_second,omitempty"`
}

type tokenFile struct {
	Principals []TokenEntry `json:"principals" yaml:"principals"`
}

// Tokens maps the hashes of bearer tokens to their principals, and holds
// the per-principal quotas of the token file.
type Tokens struct {
	byHash  map[string]string // hex SHA-256 -> principal
	entries []TokenEntry
}

// Len is the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byHash)
}

// Entries returns the file's principals (the caller must not modify them).
func (t *Tokens) Entries() []TokenEntry {
	if t == nil {
		return nil
	}
	return t.entries
}

// Principal returns the principal whose token this is.
func (t *Tokens) Principal(token string) (string, bool) {
	if t == nil {
		return "", false
	}
	p, ok := t.byHash[hashHex(token)]
	return p, ok
}

// LoadTokenFile reads and parses a token file (ParseTokens).
func LoadTokenFile(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: token file: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses a token file's contents: JSON when it starts with
// '{', else YAML; unknown fields are errors. It refuses a plaintext token,
// a hash that is not "sha256:" and 64 hex digits, a hash listed twice, a
// principal listed twice or with an invalid name, a negative quota, and a
// file with no principals. Errors never quote a token or a hash.
func ParseTokens(data []byte) (*Tokens, error) {
	var f tokenFile
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("auth: the token file does not parse as JSON: %v", err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("auth: the token file does not parse as YAML: %v", err)
		}
	}
	if len(f.Principals) == 0 {
		return nil, errors.New("auth: the token file names no principals: list them under \"principals:\" (docs/security.md)")
	}
	t := &Tokens{byHash: map[string]string{}, entries: f.Principals}
	seen := map[string]bool{}
	for i, e := range f.Principals {
		if err := ValidPrincipal(e.Name); err != nil {
			return nil, fmt.Errorf("auth: the token file's principal %d: %w", i+1, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("auth: the token file lists principal %q twice: list its tokens under one entry", e.Name)
		}
		seen[e.Name] = true
		if e.Token != "" {
			return nil, fmt.Errorf("auth: the token file holds a plaintext token for principal %q: a token file holds only hashes; replace it by the output of `strata token hash` (and treat that token as leaked if the file was shared)", e.Name)
		}
		for j, h := range e.Tokens {
			hexPart, ok := strings.CutPrefix(h, TokenHashPrefix)
			if !ok || len(hexPart) != 64 || !isLowerHex(hexPart) {
				return nil, fmt.Errorf("auth: the token file's token %d of principal %q is not a hash (%q and 64 lower-case hex digits): if it is a plaintext token, replace it by the output of `strata token hash` (and treat it as leaked if the file was shared)", j+1, e.Name, TokenHashPrefix)
			}
			if other, dup := t.byHash[hexPart]; dup {
				return nil, fmt.Errorf("auth: the token file lists one token hash for principals %q and %q: each token names one principal", other, e.Name)
			}
			t.byHash[hexPart] = e.Name
		}
		for _, q := range []struct {
			name string
			v    *int64
		}{{"produce_bytes_per_second", e.ProduceBytesPerSecond}, {"fetch_bytes_per_second", e.FetchBytesPerSecond}} {
			if q.v != nil && *q.v < 0 {
				return nil, fmt.Errorf("auth: the token file's %s of principal %q is %d: use a rate in bytes per second, or 0 for unlimited", q.name, e.Name, *q.v)
			}
		}
	}
	return t, nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
