package faultproxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/tier"
)

// TestMinIOThroughProxy runs the S3 store against the real test MinIO
// through the proxy (scripts/with-minio.sh provides it; under CI=true a
// missing MinIO fails the test): signatures survive proxying, and the
// injected faults look to the store like the real ones.
func TestMinIOThroughProxy(t *testing.T) {
	ep := testenv.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, "http://"+ep.Addr, 1)

	b := make([]byte, 6)
	rand.Read(b)
	bucket := "strata-faultproxy-" + hex.EncodeToString(b)
	const prefix = "fp"
	open := func(endpoint string, create bool) *tier.S3Store {
		t.Helper()
		s, err := tier.NewS3Store(ctx, tier.S3Config{
			Endpoint: endpoint, Bucket: bucket, Prefix: prefix,
			AccessKey: ep.AccessKey, SecretKey: ep.SecretKey,
			Insecure: true, CreateBucket: create,
			PartSize: 5 << 20,
			Retry:    tier.Backoff{Attempts: 1}, // see each injected fault
		})
		if err != nil {
			t.Fatalf("open the store at %s: %v", endpoint, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// direct reads MinIO itself: the truth about what applied.
	direct := open(ep.Addr, true)
	proxied := open(p.Addr(), false)

	t.Run("url", func(t *testing.T) {
		// The way a broker is pointed at the proxy: a store URL.
		t.Setenv("AWS_ACCESS_KEY_ID", ep.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", ep.SecretKey)
		t.Setenv("AWS_SESSION_TOKEN", "")
		s, err := tier.Open(ctx, "s3://"+bucket+"/"+prefix+"?endpoint="+p.Addr()+"&insecure=true")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Put(ctx, "url/k", strings.NewReader("via url"), 7); err != nil {
			t.Fatal(err)
		}
		if got := read(t, direct, "url/k"); got != "via url" {
			t.Errorf("direct read %q", got)
		}
	})

	t.Run("no faults", func(t *testing.T) {
		s := proxied
		before := p.Stats()
		oi, err := s.PutIfAbsent(ctx, "a/1", strings.NewReader("hello world"), 11)
		if err != nil {
			t.Fatalf("PutIfAbsent: %v", err)
		}
		if _, err := s.PutIfAbsent(ctx, "a/1", strings.NewReader("again"), 5); !errors.Is(err, tier.ErrPreconditionFailed) {
			t.Fatalf("second PutIfAbsent: %v, want ErrPreconditionFailed (If-None-Match must pass)", err)
		}
		if got := read(t, s, "a/1"); got != "hello world" {
			t.Errorf("Get %q", got)
		}
		rc, err := s.GetRange(ctx, "a/1", 6, 5)
		if err != nil {
			t.Fatalf("GetRange: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != "world" {
			t.Errorf("GetRange: %q %v", got, err)
		}
		// A multipart upload (unknown size, over one part): POSTs and
		// ranged part PUTs, all signed with the proxy's host.
		big := bytes.Repeat([]byte("0123456789abcdef"), (11<<20)/16)
		if _, err := s.Put(ctx, "a/big", struct{ io.Reader }{bytes.NewReader(big)}, -1); err != nil {
			t.Fatalf("multipart Put: %v", err)
		}
		if got := read(t, direct, "a/big"); got != string(big) {
			t.Errorf("multipart object: %d bytes, want %d", len(got), len(big))
		}
		var keys []string
		if err := s.List(ctx, "a/", func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatalf("List: %v", err)
		}
		if strings.Join(keys, ",") != "a/1,a/big" {
			t.Errorf("List: %q", keys)
		}
		oi2, err := s.PutIfMatch(ctx, "a/1", oi.ETag, strings.NewReader("hello again"), 11)
		if err != nil {
			t.Fatalf("PutIfMatch: %v", err)
		}
		if _, err := s.PutIfMatch(ctx, "a/1", oi.ETag, strings.NewReader("stale"), 5); !errors.Is(err, tier.ErrPreconditionFailed) {
			t.Errorf("PutIfMatch with a stale ETag: %v, want ErrPreconditionFailed (If-Match must pass)", err)
		}
		if st, err := s.Stat(ctx, "a/1"); err != nil || st.ETag != oi2.ETag {
			t.Errorf("Stat: %+v %v, want ETag %s", st, err, oi2.ETag)
		}
		if err := s.Delete(ctx, "a/1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := direct.Stat(ctx, "a/1"); !errors.Is(err, tier.ErrNotFound) {
			t.Errorf("after Delete: %v, want ErrNotFound", err)
		}
		st := p.Stats()
		t.Logf("through the proxy: %v", st.Requests)
		if st.Failed+st.Lost+st.Blackholed+st.BackendErrors != 0 || st.Forwarded-before.Forwarded != st.Total()-before.Total() {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("lost PUT applied", func(t *testing.T) {
		p.SetOnlyMethods("PUT")
		p.SetLoseRate(1)
		_, err := proxied.PutIfAbsent(ctx, "lost/1", strings.NewReader("payload"), 7)
		if err == nil || errors.Is(err, tier.ErrPreconditionFailed) || !tier.IsRetryable(err) {
			t.Fatalf("PutIfAbsent with its response lost: %v, want a retryable error", err)
		}
		if got := read(t, direct, "lost/1"); got != "payload" {
			t.Errorf("direct read %q, want the write applied", got)
		}
		// Only PUTs are faulted: reads through the proxy work.
		if got := read(t, proxied, "lost/1"); got != "payload" {
			t.Errorf("proxied read %q", got)
		}
		if st := p.Stats(); st.Lost < 1 {
			t.Errorf("stats %+v", st)
		}
		p.Heal()
		p.SetOnlyMethods()
		// Why the store cannot just retry an ambiguous conditional write.
		if _, err := proxied.PutIfAbsent(ctx, "lost/1", strings.NewReader("payload"), 7); !errors.Is(err, tier.ErrPreconditionFailed) {
			t.Errorf("PutIfAbsent again: %v, want ErrPreconditionFailed", err)
		}
	})

	t.Run("failed is retryable SlowDown", func(t *testing.T) {
		p.SetFailRate(1)
		defer p.Heal()
		before := p.Stats().Failed
		_, err := proxied.PutIfAbsent(ctx, "failed/1", strings.NewReader("never"), 5)
		var se *tier.StatusError
		if !tier.IsRetryable(err) || !errors.As(err, &se) || se.Status != 503 || se.Code != "SlowDown" {
			t.Fatalf("PutIfAbsent under fail rate 1: %v, want a retryable 503 SlowDown", err)
		}
		if _, err := proxied.Stat(ctx, "lost/1"); !tier.IsRetryable(err) {
			t.Errorf("Stat under fail rate 1: %v, want retryable", err)
		}
		if _, err := direct.Stat(ctx, "failed/1"); !errors.Is(err, tier.ErrNotFound) {
			t.Errorf("direct Stat: %v, want ErrNotFound: a failed request is never forwarded", err)
		}
		if n := p.Stats().Failed - before; n < 2 {
			t.Errorf("%d injected failures, want at least 2", n)
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		p.SetBlackhole(true)
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := proxied.Stat(short, "lost/1")
		cancel()
		if !tier.IsRetryable(err) {
			t.Errorf("Stat in a blackhole: %v, want a retryable timeout", err)
		}
		if st := p.Stats(); st.Blackholed < 1 {
			t.Errorf("stats %+v", st)
		}
		p.Heal()
		if _, err := proxied.Stat(ctx, "lost/1"); err != nil {
			t.Errorf("Stat after healing: %v", err)
		}
	})
}

// read returns the whole object, failing the test on an error.
func read(t *testing.T, s tier.Store, key string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return string(b)
}
