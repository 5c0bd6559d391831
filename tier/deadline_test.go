package tier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/faultproxy"
	"github.com/stratalog/strata/tier"
)

func TestDeadlineFor(t *testing.T) {
	for _, tc := range []struct {
		d    tier.Deadline
		size int64
		want time.Duration
	}{
		{tier.Deadline{}, 0, 5 * time.Second},
		{tier.Deadline{}, -1, 5 * time.Second},
		{tier.Deadline{}, 8 << 20, 6 * time.Second},
		{tier.Deadline{}, 64 << 20, 13 * time.Second},
		{tier.Deadline{Base: time.Second, MinThroughput: 1 << 20}, 512 << 10, 1500 * time.Millisecond},
		{tier.Deadline{Base: 500 * time.Millisecond}, 4 << 20, time.Second},
		{tier.Deadline{MinThroughput: 1}, math.MaxInt64, math.MaxInt64},
	} {
		if got := tc.d.For(tc.size); got != tc.want {
			t.Errorf("%+v.For(%d) = %v, want %v", tc.d, tc.size, got, tc.want)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	mem := tier.NewMemStore()
	if got, want := tier.RequestTimeout(mem, 8<<20), (tier.Deadline{}).For(8<<20); got != want {
		t.Errorf("a store without a deadline of its own: %v, want the default %v", got, want)
	}
	f := tier.NewFaultStore(mem, tier.FaultConfig{Latency: time.Second})
	if got, want := tier.RequestTimeout(f, 0), tier.DefaultDeadlineBase+time.Second; got != want {
		t.Errorf("a FaultStore with 1 s latency: %v, want %v", got, want)
	}
}

func TestTimeoutErrorIsRetryable(t *testing.T) {
	for _, err := range []error{
		&tier.TimeoutError{Op: "put-if-absent", Key: "k", After: time.Second},
		&tier.TimeoutError{Op: "get", Key: "k", Err: errors.New("net/http: timeout awaiting response headers")},
	} {
		if !errors.Is(err, tier.ErrTimeout) || !tier.IsRetryable(err) || errors.Is(err, tier.ErrPreconditionFailed) {
			t.Errorf("%v: Is ErrTimeout %v, retryable %v, want both", err, errors.Is(err, tier.ErrTimeout), tier.IsRetryable(err))
		}
	}
	msg := (&tier.TimeoutError{Op: "put-if-absent", Key: "wal/x", After: 1500 * time.Millisecond}).Error()
	for _, want := range []string{"put-if-absent wal/x", "1.5s", "may or may not have applied"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
}

// hangStores returns a store straight on a fresh bucket of the test MinIO
// (the truth about what applied) and one on the same bucket through a
// fault proxy, with request deadlines of base.
func hangStores(t *testing.T, base time.Duration, retry tier.Backoff) (direct, proxied *tier.S3Store, p *faultproxy.Proxy) {
	t.Helper()
	direct = newMinIOStore(t, tier.S3Config{})
	p, err := faultproxy.Start(faultproxy.Config{Target: "http://" + minioConfig(t, tier.S3Config{}).Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := minioConfig(t, tier.S3Config{Bucket: direct.Bucket()})
	cfg.Endpoint = p.Addr()
	cfg.Deadline = tier.Deadline{Base: base}
	cfg.Retry = retry
	cfg.PartSize = 5 << 20
	proxied, err = tier.NewS3Store(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxied.Close() })
	return direct, proxied, p
}

// TestS3HungRequestsTimeOut: when the store's connections go silent,
// every request fails with a retryable ErrTimeout after its own deadline
// (here 300 ms), not after minio-go's one-minute header timeout: ctx, of
// 20 s, is still alive when the error comes.
func TestS3HungRequestsTimeOut(t *testing.T) {
	direct, s, p := hangStores(t, 300*time.Millisecond, tier.Backoff{Attempts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v1, err := direct.Put(ctx, "k", strings.NewReader("v1"), 2)
	if err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	p.SetHang(faultproxy.HangRequests)
	body := func() io.Reader { return strings.NewReader("payload") }
	for _, tc := range []struct {
		op   string
		call func() error
	}{
		{"put-if-absent", func() error { _, err := s.PutIfAbsent(ctx, "new", body(), 7); return err }},
		{"put-if-match", func() error { _, err := s.PutIfMatch(ctx, "k", v1.ETag, body(), 7); return err }},
		{"put", func() error { _, err := s.Put(ctx, "new", body(), 7); return err }},
		{"put-stream", func() error { _, err := s.Put(ctx, "new", struct{ io.Reader }{body()}, -1); return err }},
		{"put-multipart", func() error { // a stream of more than one part
			_, err := s.Put(ctx, "new", struct{ io.Reader }{bytes.NewReader(make([]byte, 6<<20))}, -1)
			return err
		}},
		{"stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
		{"get", func() error { _, _, err := s.Get(ctx, "k"); return err }},
		{"get-range", func() error { _, err := s.GetRange(ctx, "k", 0, 1); return err }},
		{"list", func() error { return s.List(ctx, "", func(tier.ObjectInfo) error { return nil }) }},
		{"delete", func() error { return s.Delete(ctx, "k") }},
	} {
		err := tc.call()
		if ctx.Err() != nil {
			t.Fatalf("%s in a hung store: still waiting when the test's 20 s ran out (%v); want the request's own deadline", tc.op, err)
		}
		t.Logf("%s: %v", tc.op, err)
		if !errors.Is(err, tier.ErrTimeout) || !tier.IsRetryable(err) || errors.Is(err, tier.ErrPreconditionFailed) {
			t.Errorf("%s in a hung store: %v, want a retryable ErrTimeout", tc.op, err)
		}
	}
	if st := p.Stats(); st.Hung != 10 || st.Forwarded != before.Forwarded || st.Total()-before.Total() != 10 {
		t.Errorf("proxy stats %+v, want 10 hung requests, none forwarded", st)
	}
	p.SetHang(faultproxy.NoHang)
	if got := read(t, s, "k"); got != "v1" {
		t.Errorf("after the hang: %q, want v1 (nothing hung was forwarded)", got)
	}
}

// TestS3HungConditionalPutIsOutcomeUnknown: a conditional put whose answer
// never comes, although the write applied, is reported as a retryable
// ErrTimeout, never as success or ErrPreconditionFailed, and the store
// does not retry it (one PUT, with the default retry policy); reading back
// resolves it.
func TestS3HungConditionalPutIsOutcomeUnknown(t *testing.T) {
	direct, s, p := hangStores(t, 300*time.Millisecond, tier.Backoff{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v1, err := direct.Put(ctx, "cas", strings.NewReader("v1"), 2)
	if err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	p.SetHang(faultproxy.HangResponses)
	_, errAbsent := s.PutIfAbsent(ctx, "once", strings.NewReader("ours"), 4)
	_, errMatch := s.PutIfMatch(ctx, "cas", v1.ETag, strings.NewReader("v2"), 2)
	if ctx.Err() != nil {
		t.Fatalf("still waiting when the test's 20 s ran out (%v, %v)", errAbsent, errMatch)
	}
	for op, err := range map[string]error{"PutIfAbsent": errAbsent, "PutIfMatch": errMatch} {
		if !errors.Is(err, tier.ErrTimeout) || !tier.IsRetryable(err) || errors.Is(err, tier.ErrPreconditionFailed) {
			t.Errorf("%s with its answer hung: %v, want a retryable ErrTimeout", op, err)
		}
	}
	if st := p.Stats(); st.Requests[http.MethodPut] != 2 || st.Hung != 2 || st.Total()-before.Total() != 2 {
		t.Errorf("proxy stats %+v, want 2 PUTs, both hung: a timed-out conditional put is never sent again by the store", st)
	}
	p.SetHang(faultproxy.NoHang)
	// Both applied; a retry loses to our own write, and a read-back shows
	// it is ours.
	if _, err := s.PutIfAbsent(ctx, "once", strings.NewReader("ours"), 4); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Errorf("PutIfAbsent again: %v, want ErrPreconditionFailed", err)
	}
	if got := read(t, s, "once"); got != "ours" {
		t.Errorf("read back %q, want ours", got)
	}
	if got := read(t, direct, "cas"); got != "v2" {
		t.Errorf("read back %q, want v2", got)
	}
}

// stallTransport serves GET bodies of the key "stall" halfway, then
// sends nothing more until the request is canceled.
type stallTransport struct{ base http.RoundTripper }

func (s stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/stall") {
		resp.Body = &stallBody{rc: resp.Body, ctx: req.Context(), left: resp.ContentLength / 2}
	}
	return resp, err
}

type stallBody struct {
	rc   io.ReadCloser
	ctx  context.Context
	left int64
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *stallBody) Close() error { return b.rc.Close() }

// TestS3StalledBodyTimesOut: a Get whose body stops coming fails with
// ErrTimeout once the deadline for its size passes.
func TestS3StalledBodyTimesOut(t *testing.T) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	s := newMinIOStore(t, tier.S3Config{Transport: stallTransport{tr}, Deadline: tier.Deadline{Base: 300 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	data := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := s.Put(ctx, "stall", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() (io.ReadCloser, error){
		"get":       func() (io.ReadCloser, error) { rc, _, err := s.Get(ctx, "stall"); return rc, err },
		"get-range": func() (io.ReadCloser, error) { return s.GetRange(ctx, "stall", 0, int64(len(data))) },
	} {
		rc, err := open()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if ctx.Err() != nil {
			t.Fatalf("%s: still reading when the test's 20 s ran out", name)
		}
		if n != int64(len(data))/2 || !errors.Is(err, tier.ErrTimeout) || !tier.IsRetryable(err) {
			t.Errorf("%s of a stalled body: %d bytes, %v; want half and a retryable ErrTimeout", name, n, err)
		}
	}
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
