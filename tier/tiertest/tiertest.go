// Package tiertest is the acceptance suite of the tier.Store contract. Every
// backend runs it: the file store, the in-memory store, and S3 on a real
// MinIO. A backend that passes is interchangeable with the others.
package tiertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stratalog/strata/tier"
)

// Run runs the suite; newStore must return a fresh, empty store.
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
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfMatch", testPutIfMatch},
		{"LargeStreamedPut", testLargePut},
		{"Canceled", testCanceled},
		{"RacePutIfAbsent", testRacePutIfAbsent},
		{"RacePutIfMatch", testRacePutIfMatch},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
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

func testPutGetStat(t *testing.T, s tier.Store) {
	info := put(t, s, "a/b/c.txt", "hello")
	if info.ETag == "" || info.Size != 5 {
		t.Fatalf("put returned %+v", info)
	}
	if got := get(t, s, "a/b/c.txt"); got != "hello" {
		t.Fatalf("get = %q", got)
	}
	st, err := s.Stat(ctx, "a/b/c.txt")
	if err != nil || st.Size != 5 || st.ETag != info.ETag || st.Key != "a/b/c.txt" {
		t.Fatalf("stat = %+v, %v (put said %+v)", st, err, info)
	}
	put(t, s, "empty", "")
	if got := get(t, s, "empty"); got != "" {
		t.Fatalf("empty object read back as %q", got)
	}
}

func testRanges(t *testing.T, s tier.Store) {
	put(t, s, "r", "0123456789")
	for _, tc := range []struct {
		off, n int64
		want   string
	}{{0, 10, "0123456789"}, {3, 4, "3456"}, {9, 1, "9"}, {8, 100, "89"}, {10, 5, ""}, {4, 0, ""}} {
		rc, err := s.GetRange(ctx, "r", tc.off, tc.n)
		if err != nil {
			t.Fatalf("range %d+%d: %v", tc.off, tc.n, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != tc.want {
			t.Fatalf("range %d+%d = %q, want %q", tc.off, tc.n, b, tc.want)
		}
	}
	if _, err := s.GetRange(ctx, "r", 11, 1); err == nil {
		t.Fatal("a range starting past the end must fail")
	}
}

func testNotFound(t *testing.T, s tier.Store) {
	if _, _, err := s.Get(ctx, "missing"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if _, err := s.GetRange(ctx, "missing", 0, 1); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("get range: %v", err)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("stat: %v", err)
	}
	put(t, s, "dir/obj", "x")
	if _, err := s.Stat(ctx, "dir"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("a key prefix is not an object: %v", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
}

func testInvalidKeys(t *testing.T, s tier.Store) {
	for _, k := range []string{"", "/abs", "a//b", "a/../b", "./a", "a/.", "nul\x00"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), 1); !errors.Is(err, tier.ErrInvalidKey) {
			t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
		}
		if _, _, err := s.Get(ctx, k); !errors.Is(err, tier.ErrInvalidKey) {
			t.Errorf("get %q: %v, want ErrInvalidKey", k, err)
		}
	}
}

func list(t *testing.T, s tier.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(ctx, prefix, func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, s tier.Store) {
	for _, k := range []string{"t/b", "t/a/2", "t/a/1", "t/a-x", "u/1", "t0"} {
		put(t, s, k, k)
	}
	if got, want := strings.Join(list(t, s, "t/"), ","), "t/a-x,t/a/1,t/a/2,t/b"; got != want {
		t.Fatalf("list t/ = %s, want %s (lexical order)", got, want)
	}
	if got, want := strings.Join(list(t, s, "t"), ","), "t/a-x,t/a/1,t/a/2,t/b,t0"; got != want {
		t.Fatalf("list t = %s, want %s", got, want)
	}
	if got, want := strings.Join(list(t, s, "t/a/"), ","), "t/a/1,t/a/2"; got != want {
		t.Fatalf("list t/a/ = %s, want %s", got, want)
	}
	if got := list(t, s, "nothing/"); len(got) != 0 {
		t.Fatalf("list of an empty prefix = %v", got)
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, "", func(tier.ObjectInfo) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("an error from fn must stop the walk: %v after %d", err, n)
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
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("after delete stat: %v", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func testPutIfAbsent(t *testing.T, s tier.Store) {
	info, err := s.PutIfAbsent(ctx, "once", strings.NewReader("first"), 5)
	if err != nil {
		t.Fatal(err)
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
}

func testPutIfMatch(t *testing.T, s tier.Store) {
	if _, err := s.PutIfMatch(ctx, "cas", "\"nope\"", strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch on a missing object: %v, want ErrPreconditionFailed", err)
	}
	v1 := put(t, s, "cas", "v1")
	v2, err := s.PutIfMatch(ctx, "cas", v1.ETag, strings.NewReader("v2"), 2)
	if err != nil {
		t.Fatalf("PutIfMatch with the current etag: %v", err)
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
}

func testLargePut(t *testing.T, s tier.Store) {
	data := make([]byte, 20<<20+12345)
	rand.Read(data)
	// An io.Reader with no Len/Seek and size -1: a true stream.
	info, err := s.Put(ctx, "big", io.MultiReader(bytes.NewReader(data[:7<<20]), bytes.NewReader(data[7<<20:])), -1)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) {
		st, _ := s.Stat(ctx, "big")
		if st.Size != int64(len(data)) {
			t.Fatalf("stored %d bytes, want %d", st.Size, len(data))
		}
	}
	rc, err := s.GetRange(ctx, "big", 19<<20, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data[19<<20:]) {
		t.Fatal("range of a large object differs from what was written")
	}
}

func testCanceled(t *testing.T, s tier.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(c, "c", strings.NewReader("x"), 1); err == nil {
		t.Error("put with a canceled context succeeded")
	}
	if _, _, err := s.Get(c, "c"); err == nil {
		t.Error("get with a canceled context succeeded")
	}
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("a canceled put left an object: %v", err)
	}
}

const (
	raceWriters = 8
	raceRounds  = 15
)

func testRacePutIfAbsent(t *testing.T, s tier.Store) {
	for round := 0; round < raceRounds; round++ {
		key := fmt.Sprintf("race/absent-%d", round)
		wins := race(func(w int) error {
			body := fmt.Sprintf("writer-%d", w)
			_, err := s.PutIfAbsent(ctx, key, strings.NewReader(body), int64(len(body)))
			return err
		})
		if len(wins) != 1 {
			t.Fatalf("round %d: %d PutIfAbsent winners, want exactly 1", round, len(wins))
		}
		if got := get(t, s, key); got != fmt.Sprintf("writer-%d", wins[0]) {
			t.Fatalf("round %d: stored %q but writer %d won", round, got, wins[0])
		}
	}
}

func testRacePutIfMatch(t *testing.T, s tier.Store) {
	cur := put(t, s, "race/cas", "start")
	for round := 0; round < raceRounds; round++ {
		var (
			mu   sync.Mutex
			next tier.ObjectInfo
		)
		wins := race(func(w int) error {
			body := fmt.Sprintf("round-%d-writer-%d", round, w)
			info, err := s.PutIfMatch(ctx, "race/cas", cur.ETag, strings.NewReader(body), int64(len(body)))
			if err == nil {
				mu.Lock()
				next = info
				mu.Unlock()
			}
			return err
		})
		if len(wins) != 1 {
			t.Fatalf("round %d: %d PutIfMatch winners from one etag, want exactly 1", round, len(wins))
		}
		if got := get(t, s, "race/cas"); got != fmt.Sprintf("round-%d-writer-%d", round, wins[0]) {
			t.Fatalf("round %d: stored %q but writer %d won", round, got, wins[0])
		}
		cur = next
	}
}

// race runs fn for raceWriters writers at once and returns the winners;
// every loser must fail with ErrPreconditionFailed.
func race(fn func(w int) error) []int {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  []int
		start = make(chan struct{})
	)
	for w := 0; w < raceWriters; w++ {
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
				wins = append(wins, -1000-w) // an unexpected error counts as a failure of the round
			}
		}()
	}
	close(start)
	wg.Wait()
	return wins
}
