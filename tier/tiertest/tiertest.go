// Package tiertest is the acceptance suite of the tier.Store contract. Every
// backend runs it: the file store, the in-memory store, the fault wrapper,
// and S3 on a real MinIO. A backend that passes is interchangeable with the
// others; a behaviour the suite does not pin down is not part of the
// contract.
package tiertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stratalog/strata/tier"
)

// Run runs the suite as subtests of t. newStore must return a fresh, empty
// store for each subtest; the suite closes it. Subtests run one after the
// other, and each keeps its concurrency bounded (8 goroutines).
func Run(t *testing.T, newStore func(t *testing.T) tier.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s tier.Store)
	}{
		{"PutGetStat", testPutGetStat},
		{"Ranges", testRanges},
		{"NotFound", testNotFound},
		{"InvalidKeys", testInvalidKeys},
		{"List", testList},
		{"OverwriteAndDelete", testOverwriteDelete},
		{"ETagPerVersion", testETagPerVersion},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfMatch", testPutIfMatch},
		{"SizeMismatch", testSizeMismatch},
		{"LargeStreamedPut", testLargePut},
		{"AtomicReplace", testAtomicReplace},
		{"Canceled", testCanceled},
		{"RacePutIfAbsent", testRacePutIfAbsent},
		{"RacePutIfMatch", testRacePutIfMatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Errorf("second close (must be a no-op): %v", err)
				}
			}()
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

func put(t *testing.T, s tier.Store, key, body string) tier.ObjectInfo {
	t.Helper()
	info, err := s.Put(ctx, key, strings.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

func get(t *testing.T, s tier.BucketReader, key string) string {
	t.Helper()
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b)
}

func readRange(t *testing.T, s tier.BucketReader, key string, off, n int64) string {
	t.Helper()
	rc, err := s.GetRange(ctx, key, off, n)
	if err != nil {
		t.Fatalf("range %s [%d,+%d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read range %s [%d,+%d): %v", key, off, n, err)
	}
	return string(b)
}

// testPutGetStat: what Put returns, Get reads back and Stat reports agree.
func testPutGetStat(t *testing.T, s tier.Store) {
	info := put(t, s, "a/b/c.txt", "hello")
	if info.ETag == "" || info.Size != 5 || info.Key != "a/b/c.txt" {
		t.Fatalf("put returned %+v", info)
	}
	rc, ginfo, err := s.Get(ctx, "a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "hello" || ginfo.ETag != info.ETag || ginfo.Size != 5 || ginfo.Key != "a/b/c.txt" {
		t.Fatalf("get = %q, %+v (put said %+v)", body, ginfo, info)
	}
	st, err := s.Stat(ctx, "a/b/c.txt")
	if err != nil || st.Size != 5 || st.ETag != info.ETag || st.Key != "a/b/c.txt" || st.LastModified.IsZero() {
		t.Fatalf("stat = %+v, %v (put said %+v)", st, err, info)
	}
	if e := put(t, s, "empty", ""); e.Size != 0 {
		t.Fatalf("empty object: %+v", e)
	}
	if got := get(t, s, "empty"); got != "" {
		t.Fatalf("empty object read back as %q", got)
	}
	// Every byte value, and a key with characters that need escaping.
	bin := make([]byte, 256*4)
	for i := range bin {
		bin[i] = byte(i)
	}
	odd := "odd dir/sp ace+plus%25=eq&amp;~tilde/ü-ÿ.bin"
	put(t, s, odd, string(bin))
	if got := get(t, s, odd); got != string(bin) {
		t.Fatal("binary content or escaped key did not round-trip")
	}
	var listed []string
	if err := s.List(ctx, "odd dir/", func(o tier.ObjectInfo) error { listed = append(listed, o.Key); return nil }); err != nil || len(listed) != 1 || listed[0] != odd {
		t.Fatalf("list of an escaped key = %q, %v", listed, err)
	}
}

func testRanges(t *testing.T, s tier.Store) {
	put(t, s, "r", "0123456789")
	for _, tc := range []struct {
		off, n int64
		want   string
	}{
		{0, 10, "0123456789"}, {3, 4, "3456"}, {9, 1, "9"}, {0, 1, "0"},
		{8, 100, "89"}, // runs past the end: cut at the end
		{10, 5, ""},    // starts at the end: empty
		{4, 0, ""},     // empty range
		{10, 0, ""},
	} {
		if got := readRange(t, s, "r", tc.off, tc.n); got != tc.want {
			t.Fatalf("range [%d,+%d) = %q, want %q", tc.off, tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct{ off, n int64 }{{11, 1}, {100, 0}, {-1, 2}, {0, -1}} {
		if rc, err := s.GetRange(ctx, "r", tc.off, tc.n); !errors.Is(err, tier.ErrInvalidRange) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("range [%d,+%d): %v, want ErrInvalidRange", tc.off, tc.n, err)
		}
	}
	put(t, s, "zero", "")
	if got := readRange(t, s, "zero", 0, 5); got != "" {
		t.Fatalf("range of an empty object = %q", got)
	}
}

// testNotFound: every operation on a missing object.
func testNotFound(t *testing.T, s tier.Store) {
	if _, _, err := s.Get(ctx, "missing"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if _, err := s.GetRange(ctx, "missing", 0, 1); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("get range: %v", err)
	}
	if _, err := s.GetRange(ctx, "missing", 0, 0); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("empty get range: %v", err)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("stat: %v", err)
	}
	if _, err := s.PutIfMatch(ctx, "missing", "some-etag", strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Errorf("put-if-match: %v, want ErrPreconditionFailed", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if err := s.List(ctx, "missing/", func(o tier.ObjectInfo) error { return fmt.Errorf("listed %q", o.Key) }); err != nil {
		t.Errorf("list: %v", err)
	}
	// A prefix of existing keys is not an object.
	put(t, s, "dir/obj", "x")
	if _, err := s.Stat(ctx, "dir"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("stat of a key prefix: %v", err)
	}
	if _, _, err := s.Get(ctx, "dir"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("get of a key prefix: %v", err)
	}
	if err := s.Delete(ctx, "dir"); err != nil {
		t.Errorf("delete of a key prefix: %v", err)
	}
	if got := get(t, s, "dir/obj"); got != "x" {
		t.Errorf("deleting the prefix touched dir/obj: %q", got)
	}
	// Beneath an object there is nothing.
	if _, err := s.Stat(ctx, "dir/obj/below"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("stat below an object: %v", err)
	}
}

func testInvalidKeys(t *testing.T, s tier.Store) {
	for _, k := range []string{"", "/abs", "a//b", "a/", "a/../b", "..", "./a", "a/.", "nul\x00", strings.Repeat("k", tier.MaxKeyLen+1)} {
		body := func() io.Reader { return strings.NewReader("x") }
		errs := map[string]error{}
		_, errs["put"] = s.Put(ctx, k, body(), 1)
		_, errs["put-if-absent"] = s.PutIfAbsent(ctx, k, body(), 1)
		_, errs["put-if-match"] = s.PutIfMatch(ctx, k, "etag", body(), 1)
		_, _, errs["get"] = s.Get(ctx, k)
		_, errs["get-range"] = s.GetRange(ctx, k, 0, 1)
		_, errs["stat"] = s.Stat(ctx, k)
		errs["delete"] = s.Delete(ctx, k)
		for op, err := range errs {
			if !errors.Is(err, tier.ErrInvalidKey) {
				t.Errorf("%s %q: %v, want ErrInvalidKey", op, k, err)
			}
		}
	}
	// Keys that look odd but are valid.
	for _, k := range []string{"a.b", ".hidden", "a/..b/c", "x/.../y", "trailing."} {
		put(t, s, k, k)
		if got := get(t, s, k); got != k {
			t.Errorf("valid key %q read back %q", k, got)
		}
	}
}

func list(t *testing.T, s tier.Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	if err := s.List(ctx, prefix, func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, s tier.Store) {
	// "t/a-x" < "t/a/1" < "t/a0": '-' < '/' < '0'.
	for _, k := range []string{"t/b", "t/a0", "t/a/2", "t/a/1", "t/a-x", "t/a/sub/deep", "u/1", "t0"} {
		put(t, s, k, k)
	}
	for _, tc := range []struct{ prefix, want string }{
		{"t/", "t/a-x,t/a/1,t/a/2,t/a/sub/deep,t/a0,t/b"},
		{"t", "t/a-x,t/a/1,t/a/2,t/a/sub/deep,t/a0,t/b,t0"},
		{"t/a", "t/a-x,t/a/1,t/a/2,t/a/sub/deep,t/a0"},
		{"t/a/", "t/a/1,t/a/2,t/a/sub/deep"},
		{"t/a/s", "t/a/sub/deep"},
		{"t/b", "t/b"},
		{"", "t/a-x,t/a/1,t/a/2,t/a/sub/deep,t/a0,t/b,t0,u/1"},
		{"nothing/", ""},
		{"t/b/", ""},
		{"../", ""},
		{"/t", ""},
		{"t//", ""},
	} {
		if got := strings.Join(list(t, s, tc.prefix), ","); got != tc.want {
			t.Errorf("list %q = %s, want %s (lexical order)", tc.prefix, got, tc.want)
		}
	}
	// Listed infos agree with Stat.
	if err := s.List(ctx, "t/a/", func(o tier.ObjectInfo) error {
		st, err := s.Stat(ctx, o.Key)
		if err != nil || st.Size != o.Size || st.ETag != o.ETag || o.Size != int64(len(o.Key)) {
			t.Errorf("listed %+v, stat %+v, %v", o, st, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, "", func(tier.ObjectInfo) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("an error from fn must stop the walk and be returned as is: %v after %d calls", err, n)
	}
}

func testOverwriteDelete(t *testing.T, s tier.Store) {
	a := put(t, s, "k", "one")
	b := put(t, s, "k", "two!")
	if a.ETag == b.ETag {
		t.Fatal("overwrite kept the ETag")
	}
	if got := get(t, s, "k"); got != "two!" {
		t.Fatalf("after overwrite get = %q", got)
	}
	if st, _ := s.Stat(ctx, "k"); st.Size != 4 || st.ETag != b.ETag {
		t.Fatalf("after overwrite stat = %+v", st)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("after delete stat: %v", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.PutIfMatch(ctx, "k", b.ETag, strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch with the etag of a deleted object: %v", err)
	}
	if _, err := s.PutIfAbsent(ctx, "k", strings.NewReader("again"), 5); err != nil {
		t.Fatalf("PutIfAbsent after delete: %v", err)
	}
	// Deleting the only object under a prefix leaves the others alone.
	put(t, s, "d/x/1", "1")
	put(t, s, "d/y", "y")
	if err := s.Delete(ctx, "d/x/1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list(t, s, "d/"), ","); got != "d/y" {
		t.Fatalf("after deleting d/x/1: %s", got)
	}
	put(t, s, "d/x/2", "2") // its parent may have been pruned
	if got := get(t, s, "d/x/2"); got != "2" {
		t.Fatalf("put after delete of a sibling: %q", got)
	}
}

// testETagPerVersion: rapid replacements with different bodies of one
// size get a new ETag each, so a stale ETag never matches a later version
// (an ABA that a CAS loop would turn into a lost update). Bodies differ:
// S3's ETag is the content's MD5, so identical bodies share one.
func testETagPerVersion(t *testing.T, s tier.Store) {
	first := put(t, s, "v", "body-000")
	seen := map[string]int{first.ETag: 0}
	cur := first
	for i := 1; i <= 40; i++ {
		body := fmt.Sprintf("body-%03d", i)
		var err error
		if i%2 == 0 {
			cur = put(t, s, "v", body)
		} else if cur, err = s.PutIfMatch(ctx, "v", cur.ETag, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatalf("version %d: %v", i, err)
		}
		if j, ok := seen[cur.ETag]; ok {
			t.Fatalf("versions %d and %d have the same ETag %q", j, i, cur.ETag)
		}
		seen[cur.ETag] = i
		if i%10 == 0 {
			// Delete and recreate: a freed identity may be reused.
			if err := s.Delete(ctx, "v"); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("body-%03d-recreated", i)
			if cur, err = s.PutIfAbsent(ctx, "v", strings.NewReader(body), int64(len(body))); err != nil {
				t.Fatalf("recreate after version %d: %v", i, err)
			}
			if j, ok := seen[cur.ETag]; ok {
				t.Fatalf("version %d and the recreation after %d have the same ETag %q", j, i, cur.ETag)
			}
			seen[cur.ETag] = i
		}
	}
	if _, err := s.PutIfMatch(ctx, "v", first.ETag, strings.NewReader("stale"), 5); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch with the first version's ETag after 40 versions: %v", err)
	}
}

func testPutIfAbsent(t *testing.T, s tier.Store) {
	info, err := s.PutIfAbsent(ctx, "once", strings.NewReader("first"), 5)
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag == "" || info.Size != 5 {
		t.Fatalf("PutIfAbsent returned %+v", info)
	}
	if _, err := s.PutIfAbsent(ctx, "once", strings.NewReader("second"), 6); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("second PutIfAbsent: %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, s, "once"); got != "first" {
		t.Fatalf("the loser overwrote: %q", got)
	}
	if st, _ := s.Stat(ctx, "once"); st.ETag != info.ETag {
		t.Fatalf("etag changed: %q -> %q", info.ETag, st.ETag)
	}
	// Unknown size takes the same path.
	if _, err := s.PutIfAbsent(ctx, "once", io.MultiReader(strings.NewReader("thi"), strings.NewReader("rd")), -1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("PutIfAbsent of unknown size over an object: %v", err)
	}
	if _, err := s.PutIfAbsent(ctx, "once-streamed", io.MultiReader(strings.NewReader("thi"), strings.NewReader("rd")), -1); err != nil {
		t.Fatalf("PutIfAbsent of unknown size: %v", err)
	}
	if got := get(t, s, "once-streamed"); got != "third" {
		t.Fatalf("PutIfAbsent of unknown size stored %q", got)
	}
}

func testPutIfMatch(t *testing.T, s tier.Store) {
	v1 := put(t, s, "cas", "v1")
	for _, etag := range []string{"", "*", "\"nope\"", "nope"} {
		if _, err := s.PutIfMatch(ctx, "cas", etag, strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
			t.Fatalf("PutIfMatch with etag %q: %v, want ErrPreconditionFailed", etag, err)
		}
	}
	v2, err := s.PutIfMatch(ctx, "cas", v1.ETag, strings.NewReader("v2"), 2)
	if err != nil {
		t.Fatalf("PutIfMatch with the current etag: %v", err)
	}
	if v2.ETag == v1.ETag || v2.ETag == "" || v2.Size != 2 {
		t.Fatalf("PutIfMatch returned %+v (previous %+v)", v2, v1)
	}
	if _, err := s.PutIfMatch(ctx, "cas", v1.ETag, strings.NewReader("v3"), 2); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch with a stale etag: %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, s, "cas"); got != "v2" {
		t.Fatalf("get = %q, want v2", got)
	}
	if st, _ := s.Stat(ctx, "cas"); st.ETag != v2.ETag {
		t.Fatalf("stat etag %q, PutIfMatch returned %q", st.ETag, v2.ETag)
	}
	// Unknown size, and the ETag it returns chains.
	v3, err := s.PutIfMatch(ctx, "cas", v2.ETag, io.MultiReader(strings.NewReader("v"), strings.NewReader("3")), -1)
	if err != nil {
		t.Fatalf("PutIfMatch of unknown size: %v", err)
	}
	if _, err := s.PutIfMatch(ctx, "cas", v3.ETag, strings.NewReader("v4"), 2); err != nil {
		t.Fatalf("PutIfMatch with the etag PutIfMatch returned: %v", err)
	}
	if got := get(t, s, "cas"); got != "v4" {
		t.Fatalf("get = %q, want v4", got)
	}
}

// onlyReader hides every method of a reader but Read (no Seek, no Len).
type onlyReader struct{ r io.Reader }

func (r onlyReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// testSizeMismatch: a body shorter or longer than its declared size fails
// the put and publishes nothing.
func testSizeMismatch(t *testing.T, s tier.Store) {
	for _, tc := range []struct {
		name string
		put  func(r io.Reader, size int64) error
	}{
		{"put", func(r io.Reader, size int64) error { _, err := s.Put(ctx, "m", r, size); return err }},
		{"put-if-absent", func(r io.Reader, size int64) error { _, err := s.PutIfAbsent(ctx, "m", r, size); return err }},
	} {
		for _, body := range []string{"abc", "abcdefg"} {
			if err := tc.put(onlyReader{strings.NewReader(body)}, 5); !errors.Is(err, tier.ErrSizeMismatch) || tier.IsRetryable(err) {
				t.Errorf("%s of a %d-byte body declared as 5 bytes: %v, want ErrSizeMismatch, not retryable", tc.name, len(body), err)
			}
			if err := tc.put(strings.NewReader(body), 5); !errors.Is(err, tier.ErrSizeMismatch) || tier.IsRetryable(err) {
				t.Errorf("%s of a seekable %d-byte body declared as 5 bytes: %v, want ErrSizeMismatch, not retryable", tc.name, len(body), err)
			}
			if _, err := s.Stat(ctx, "m"); !errors.Is(err, tier.ErrNotFound) {
				t.Fatalf("%s of a %d-byte body declared as 5 bytes left an object: %v", tc.name, len(body), err)
			}
		}
	}
}

func testLargePut(t *testing.T, s tier.Store) {
	data := make([]byte, 20<<20+12345)
	rand.Read(data)
	want := sha256.Sum256(data)
	check := func(key string) {
		t.Helper()
		rc, info, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil || n != int64(len(data)) || info.Size != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("%s: read %d bytes (info %d), %v; content equal: %v", key, n, info.Size, err, bytes.Equal(h.Sum(nil), want[:]))
		}
		if got := readRange(t, s, key, 19<<20, 2<<20); got != string(data[19<<20:]) {
			t.Fatalf("%s: a range of a large object differs from what was written", key)
		}
	}
	// A true stream: no Len, no Seek, size -1.
	info, err := s.Put(ctx, "big", onlyReader{io.MultiReader(bytes.NewReader(data[:7<<20]), bytes.NewReader(data[7<<20:]))}, -1)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) {
		t.Fatalf("put returned size %d, want %d", info.Size, len(data))
	}
	check("big")
	// Known size, not seekable.
	if _, err := s.Put(ctx, "big-sized", onlyReader{bytes.NewReader(data)}, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	check("big-sized")
	// Known size, seekable, and not at offset 0: the body starts where the
	// reader is.
	r := bytes.NewReader(append([]byte("skip"), data...))
	r.Seek(4, io.SeekStart)
	if _, err := s.Put(ctx, "big-seekable", r, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	check("big-seekable")
}

// testAtomicReplace: readers racing replacements see one whole version,
// never a mix or a part.
func testAtomicReplace(t *testing.T, s tier.Store) {
	body := func(v int) string { return strings.Repeat(string(rune('a'+v%26)), 1000+v*37) }
	put(t, s, "atomic", body(0))
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				rc, info, err := s.Get(ctx, "atomic")
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- err
					return
				}
				if len(b) == 0 || int64(len(b)) != info.Size || strings.Count(string(b), string(b[:1])) != len(b) {
					errs <- fmt.Errorf("read a torn version: %d bytes, info says %d", len(b), info.Size)
					return
				}
			}
		}()
	}
	for v := 1; v <= 30; v++ {
		put(t, s, "atomic", body(v))
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// cancelingReader cancels its context after n bytes have been read.
type cancelingReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func testCanceled(t *testing.T, s tier.Store) {
	put(t, s, "exists", "x")
	c, cancel := context.WithCancel(ctx)
	cancel()
	errs := map[string]error{}
	_, errs["put"] = s.Put(c, "c", strings.NewReader("x"), 1)
	_, errs["put-if-absent"] = s.PutIfAbsent(c, "c", strings.NewReader("x"), 1)
	_, errs["put-if-match"] = s.PutIfMatch(c, "exists", "etag", strings.NewReader("x"), 1)
	_, _, errs["get"] = s.Get(c, "exists")
	_, errs["get-range"] = s.GetRange(c, "exists", 0, 1)
	_, errs["stat"] = s.Stat(c, "exists")
	errs["list"] = s.List(c, "", func(tier.ObjectInfo) error { return nil })
	errs["delete"] = s.Delete(c, "exists")
	for op, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", op, err)
		}
		if tier.IsRetryable(err) {
			t.Errorf("%s with a canceled context: %v is retryable", op, err)
		}
	}
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("a canceled put left an object: %v", err)
	}
	if got := get(t, s, "exists"); got != "x" {
		t.Errorf("canceled calls changed an object: %q", got)
	}
	// Canceled in the middle of a streamed body.
	c, cancel = context.WithCancel(ctx)
	defer cancel()
	data := make([]byte, 8<<20)
	r := &cancelingReader{r: bytes.NewReader(data), n: 1 << 20, cancel: cancel}
	if _, err := s.Put(c, "mid", onlyReader{r}, -1); err == nil {
		t.Error("a put canceled mid-body succeeded")
	}
	if _, err := s.Stat(ctx, "mid"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("a put canceled mid-body left an object: %v", err)
	}
}

const (
	raceWriters = 8
	raceRounds  = 20
)

// testRacePutIfAbsent: writers racing to create one key: exactly one wins
// each round, and the object is the winner's.
func testRacePutIfAbsent(t *testing.T, s tier.Store) {
	for round := range raceRounds {
		key := fmt.Sprintf("race/absent-%d", round)
		wins, errs := race(func(w int) error {
			body := fmt.Sprintf("writer-%d", w)
			_, err := s.PutIfAbsent(ctx, key, strings.NewReader(body), int64(len(body)))
			return err
		})
		if len(wins) != 1 || len(errs) != 0 {
			t.Fatalf("round %d: PutIfAbsent winners %v (want exactly 1), unexpected errors %v", round, wins, errs)
		}
		if got := get(t, s, key); got != fmt.Sprintf("writer-%d", wins[0]) {
			t.Fatalf("round %d: stored %q but writer %d won", round, got, wins[0])
		}
	}
}

// testRacePutIfMatch: writers racing to replace one version: exactly one
// wins each round, and the next round starts from the winner's ETag.
func testRacePutIfMatch(t *testing.T, s tier.Store) {
	cur := put(t, s, "race/cas", "start")
	for round := range raceRounds {
		var (
			mu   sync.Mutex
			next tier.ObjectInfo
		)
		wins, errs := race(func(w int) error {
			body := fmt.Sprintf("round-%d-writer-%d", round, w)
			info, err := s.PutIfMatch(ctx, "race/cas", cur.ETag, strings.NewReader(body), int64(len(body)))
			if err == nil {
				mu.Lock()
				next = info
				mu.Unlock()
			}
			return err
		})
		if len(wins) != 1 || len(errs) != 0 {
			t.Fatalf("round %d: PutIfMatch winners from one etag %v (want exactly 1), unexpected errors %v", round, wins, errs)
		}
		if got := get(t, s, "race/cas"); got != fmt.Sprintf("round-%d-writer-%d", round, wins[0]) {
			t.Fatalf("round %d: stored %q but writer %d won", round, got, wins[0])
		}
		if st, err := s.Stat(ctx, "race/cas"); err != nil || st.ETag != next.ETag {
			t.Fatalf("round %d: stat etag %q, the winner was told %q (%v)", round, st.ETag, next.ETag, err)
		}
		cur = next
	}
}

// race runs fn for raceWriters writers at once. It returns the writers
// that succeeded and the errors other than ErrPreconditionFailed.
func race(fn func(w int) error) (wins []int, errs []error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	for w := range raceWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := fn(w)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, w)
			case !errors.Is(err, tier.ErrPreconditionFailed):
				errs = append(errs, fmt.Errorf("writer %d: %w", w, err))
			}
		}()
	}
	close(start)
	wg.Wait()
	return wins, errs
}
