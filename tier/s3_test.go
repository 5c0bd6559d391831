package tier_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/tier"
)

// minioConfig returns a config for a fresh, unique bucket on the test
// MinIO, with cfg's other fields kept.
func minioConfig(t *testing.T, cfg tier.S3Config) tier.S3Config {
	t.Helper()
	ep := testenv.MinIO(t)
	b := make([]byte, 6)
	rand.Read(b)
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Insecure = ep.Addr, ep.AccessKey, ep.SecretKey, true
	if cfg.Bucket == "" {
		cfg.Bucket = "strata-tier-" + hex.EncodeToString(b)
		cfg.CreateBucket = true
	}
	return cfg
}

// newMinIOStore opens an S3Store on a fresh bucket of the test MinIO.
func newMinIOStore(t *testing.T, cfg tier.S3Config) *tier.S3Store {
	t.Helper()
	cfg = minioConfig(t, cfg)
	s, err := tier.NewS3Store(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect to the test MinIO at %s: %v", cfg.Endpoint, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// faultTransport injects HTTP-level faults between an S3Store and MinIO.
// Each request that passes filter draws one outcome: refused (a dial error;
// the request never left), SlowDown (a 503 answer; never forwarded), lost
// (forwarded, applied, then the connection "reset" before the answer), or
// forwarded normally.
type faultTransport struct {
	base   http.RoundTripper
	filter func(*http.Request) bool // nil: every request

	mu                       sync.Mutex // guards the fields below
	rng                      *mrand.Rand
	refuse, slowDown, lose   float64
	loseNext                 int // lose the responses of the next n filtered requests
	requests, forwarded, inj atomic.Int64
}

func newFaultTransport(seed uint64) *faultTransport {
	return &faultTransport{base: http.DefaultTransport.(*http.Transport).Clone(), rng: mrand.New(mrand.NewPCG(seed, seed))}
}

func (f *faultTransport) set(refuse, slowDown, lose float64) {
	f.mu.Lock()
	f.refuse, f.slowDown, f.lose = refuse, slowDown, lose
	f.mu.Unlock()
}

const slowDownXML = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`

func (f *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.requests.Add(1)
	outcome := "forward"
	if f.filter == nil || f.filter(req) {
		f.mu.Lock()
		switch x := f.rng.Float64(); {
		case f.loseNext > 0:
			f.loseNext--
			outcome = "lose"
		case x < f.refuse:
			outcome = "refuse"
		case x < f.refuse+f.slowDown:
			outcome = "slowdown"
		case x < f.refuse+f.slowDown+f.lose:
			outcome = "lose"
		}
		f.mu.Unlock()
	}
	switch outcome {
	case "refuse", "slowdown":
		f.inj.Add(1)
		if req.Body != nil {
			req.Body.Close()
		}
		if outcome == "refuse" {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		return &http.Response{
			StatusCode: 503, Status: "503 Service Unavailable", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"application/xml"}, "Retry-After": {"1"}},
			Body:    io.NopCloser(strings.NewReader(slowDownXML)),
			Request: req, ContentLength: int64(len(slowDownXML)),
		}, nil
	}
	f.forwarded.Add(1)
	resp, err := f.base.RoundTrip(req)
	if err != nil || outcome != "lose" {
		return resp, err
	}
	f.inj.Add(1)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

// The S3 store's retries carry every idempotent call, and conditional puts
// refused before they applied, through refused connections and 503s.
func TestS3RetriesRecoverFromFaults(t *testing.T) {
	ft := newFaultTransport(7)
	defer ft.base.(*http.Transport).CloseIdleConnections()
	s := newMinIOStore(t, tier.S3Config{
		Transport: ft,
		Retry:     tier.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 10},
	})
	ft.set(0.1, 0.2, 0) // 30% of requests fail, none after applying
	ctx := context.Background()
	var etag string
	steps := []struct {
		name string
		fn   func() error
	}{
		{"put", func() error { _, err := s.Put(ctx, "k/a", strings.NewReader("aaa"), 3); return err }},
		{"put of unknown size", func() error {
			_, err := s.Put(ctx, "k/b", io.MultiReader(strings.NewReader("b"), strings.NewReader("bb")), -1)
			return err
		}},
		{"put-if-absent", func() error {
			info, err := s.PutIfAbsent(ctx, "k/c", strings.NewReader("c1"), 2)
			etag = info.ETag
			return err
		}},
		{"put-if-match", func() error {
			info, err := s.PutIfMatch(ctx, "k/c", etag, strings.NewReader("c2"), 2)
			etag = info.ETag
			return err
		}},
		{"get", func() error {
			rc, _, err := s.Get(ctx, "k/c")
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err == nil && string(b) != "c2" {
				return errors.New("read " + string(b))
			}
			return err
		}},
		{"get-range", func() error {
			rc, err := s.GetRange(ctx, "k/a", 1, 5)
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err == nil && string(b) != "aa" {
				return errors.New("read " + string(b))
			}
			return err
		}},
		{"stat", func() error {
			st, err := s.Stat(ctx, "k/c")
			if err == nil && st.ETag != etag {
				return errors.New("stat etag " + st.ETag + ", want " + etag)
			}
			return err
		}},
		{"list", func() error {
			var keys []string
			err := s.List(ctx, "k/", func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil })
			if err == nil && strings.Join(keys, ",") != "k/a,k/b,k/c" {
				return errors.New("listed " + strings.Join(keys, ","))
			}
			return err
		}},
		{"delete", func() error { return s.Delete(ctx, "k/a") }},
	}
	for round := range 3 {
		for _, st := range steps {
			if err := st.fn(); err != nil {
				t.Fatalf("round %d: %s through 30%% injected failures: %v", round, st.name, err)
			}
		}
		if err := s.Delete(ctx, "k/c"); err != nil {
			t.Fatal(err)
		}
	}
	if ft.inj.Load() < 5 {
		t.Fatalf("only %d faults injected in %d requests: the test proves nothing", ft.inj.Load(), ft.requests.Load())
	}
	t.Logf("%d requests, %d faults injected", ft.requests.Load(), ft.inj.Load())
	// A store that stays down exhausts the attempts and says so.
	ft.set(0, 1, 0)
	before := ft.requests.Load()
	if _, err := s.Stat(ctx, "k/b"); !tier.IsRetryable(err) {
		t.Fatalf("stat while every request gets 503: %v, want a retryable error", err)
	}
	if n := ft.requests.Load() - before; n != 10 {
		t.Fatalf("stat while down sent %d requests, want 10 (Retry.Attempts)", n)
	}
}

// After an ambiguous failure (the write applied, the answer was lost) a
// conditional put is not sent again: a repeat would report a precondition
// failure for the caller's own write. An unconditional put is repeated.
func TestS3ConditionalPutNotRetriedAfterLostResponse(t *testing.T) {
	ft := newFaultTransport(1)
	ft.filter = func(r *http.Request) bool { return r.Method == http.MethodPut }
	defer ft.base.(*http.Transport).CloseIdleConnections()
	s := newMinIOStore(t, tier.S3Config{Transport: ft, Retry: tier.Backoff{Base: time.Millisecond, Attempts: 5}})
	ctx := context.Background()

	ft.mu.Lock()
	ft.loseNext = 1
	ft.mu.Unlock()
	before := ft.requests.Load()
	_, err := s.PutIfAbsent(ctx, "once", strings.NewReader("mine"), 4)
	if errors.Is(err, tier.ErrPreconditionFailed) || !tier.IsRetryable(err) {
		t.Fatalf("PutIfAbsent with a lost response: %v; want a retryable error, not a precondition failure", err)
	}
	if n := ft.requests.Load() - before; n != 1 {
		t.Fatalf("PutIfAbsent with a lost response sent %d requests, want 1", n)
	}
	st, err := s.Stat(ctx, "once")
	if err != nil || st.Size != 4 {
		t.Fatalf("the write whose response was lost must have applied: %+v, %v", st, err)
	}

	ft.mu.Lock()
	ft.loseNext = 1
	ft.mu.Unlock()
	before = ft.requests.Load()
	if _, err := s.PutIfMatch(ctx, "once", st.ETag, strings.NewReader("next"), 4); errors.Is(err, tier.ErrPreconditionFailed) || !tier.IsRetryable(err) {
		t.Fatalf("PutIfMatch with a lost response: %v; want a retryable error", err)
	}
	if n := ft.requests.Load() - before; n != 1 {
		t.Fatalf("PutIfMatch with a lost response sent %d requests, want 1", n)
	}

	ft.mu.Lock()
	ft.loseNext = 1
	ft.mu.Unlock()
	before = ft.requests.Load()
	// The body starts 2 bytes in: a retry must rewind to there, not to 0.
	body := strings.NewReader("xxplain")
	body.Seek(2, io.SeekStart)
	if _, err := s.Put(ctx, "plain", body, 5); err != nil {
		t.Fatalf("Put with a lost response and a seekable body: %v", err)
	}
	if n := ft.requests.Load() - before; n != 2 {
		t.Fatalf("Put with a lost response sent %d requests, want 2", n)
	}
	rc, _, err := s.Get(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "plain" {
		t.Fatalf("a retried put stored %q, want %q", got, "plain")
	}

	// A body that cannot be rewound is sent once.
	ft.mu.Lock()
	ft.loseNext = 1
	ft.mu.Unlock()
	before = ft.requests.Load()
	if _, err := s.Put(ctx, "stream", struct{ io.Reader }{bytes.NewReader([]byte("abc"))}, 3); !tier.IsRetryable(err) {
		t.Fatalf("Put of a stream with a lost response: %v, want a retryable error", err)
	}
	if n := ft.requests.Load() - before; n != 1 {
		t.Fatalf("Put of a stream with a lost response sent %d requests, want 1", n)
	}
}

// A final answer (403: bad credentials) is not retried.
func TestS3BadCredentials(t *testing.T) {
	cfg := minioConfig(t, tier.S3Config{})
	cfg.SecretKey = "wrong-secret"
	ft := newFaultTransport(1)
	defer ft.base.(*http.Transport).CloseIdleConnections()
	cfg.Transport = ft
	cfg.Retry = tier.Backoff{Base: time.Millisecond, Attempts: 6}
	_, err := tier.NewS3Store(context.Background(), cfg)
	if err == nil || tier.IsRetryable(err) {
		t.Fatalf("bad credentials: %v; want a final error", err)
	}
	if n := ft.requests.Load(); n > 2 {
		t.Fatalf("bad credentials: %d requests; a 403 must not be retried", n)
	}
	t.Log(err)
}

func TestS3MissingBucket(t *testing.T) {
	cfg := minioConfig(t, tier.S3Config{})
	cfg.CreateBucket = false
	_, err := tier.NewS3Store(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v", err)
	}
}

// Prefixes isolate stores sharing a bucket, and List strips them.
func TestS3PrefixIsolation(t *testing.T) {
	root := newMinIOStore(t, tier.S3Config{})
	cfg := minioConfig(t, tier.S3Config{})
	ctx := context.Background()
	var stores []*tier.S3Store
	for _, p := range []string{"p1", "p2/"} {
		c := cfg
		c.Bucket, c.Prefix, c.CreateBucket = root.Bucket(), p, false
		s, err := tier.NewS3Store(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Put(ctx, "k", strings.NewReader(p), int64(len(p))); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	for i, s := range stores {
		var keys []string
		if err := s.List(ctx, "", func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(keys, ",") != "k" {
			t.Errorf("store %d lists %v, want [k]", i, keys)
		}
	}
	var keys []string
	root.List(ctx, "", func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if strings.Join(keys, ",") != "p1/k,p2/k" {
		t.Errorf("the bucket holds %v, want [p1/k p2/k]", keys)
	}
	// The prefix counts against the key length limit.
	if _, err := stores[0].Put(ctx, strings.Repeat("x", tier.MaxKeyLen-2), strings.NewReader(""), 0); !errors.Is(err, tier.ErrInvalidKey) {
		t.Errorf("a key too long with its prefix: %v", err)
	}
}

// Configs that are wrong are refused before any request.
func TestS3ConfigErrors(t *testing.T) {
	for _, cfg := range []tier.S3Config{
		{Endpoint: "127.0.0.1:1"},                                       // no bucket
		{Endpoint: "127.0.0.1:1/path", Bucket: "b"},                     // a path in the endpoint
		{Endpoint: "127.0.0.1:1", Bucket: "b", Prefix: "/abs"},          // absolute prefix
		{Endpoint: "127.0.0.1:1", Bucket: "b", Prefix: "a//b"},          // empty segment
		{Endpoint: "127.0.0.1:1", Bucket: "b", PartSize: 1 << 20},       // part under 5 MiB
		{Endpoint: "http://127.0.0.1:1/x", Bucket: "b", Insecure: true}, // a path after the scheme
	} {
		if s, err := tier.NewS3Store(context.Background(), cfg); err == nil {
			s.Close()
			t.Errorf("NewS3Store(%+v) succeeded", cfg)
		}
	}
	// An unreachable endpoint fails after the retries, with a retryable error.
	_, err := tier.NewS3Store(context.Background(), tier.S3Config{
		Endpoint: "http://127.0.0.1:1", Bucket: "bucket", Retry: tier.Backoff{Base: time.Millisecond, Attempts: 2},
	})
	if err == nil || !tier.IsRetryable(err) || !strings.Contains(err.Error(), "checking bucket") {
		t.Errorf("unreachable endpoint: %v", err)
	}
}
