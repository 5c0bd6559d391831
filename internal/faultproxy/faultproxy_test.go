package faultproxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/faultproxy"
)

// backend is a tiny object store that records what reaches it. A PUT
// stores the body (If-None-Match: * makes it conditional, 412 if the
// object exists); a GET returns it. Requests to /slow wait for release.
type backend struct {
	srv     *httptest.Server
	release chan struct{} // closed to let /slow requests answer
	slowIn  chan struct{} // receives when a /slow request arrives

	mu       sync.Mutex
	requests int
	byMethod map[string]int
	objects  map[string][]byte
	last     *http.Request // the last request, its body read
	lastBody []byte
	once     sync.Once
	// read counts the body bytes of the current PUT read so far.
	read atomic.Int64
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{byMethod: map[string]int{}, objects: map[string][]byte{}, release: make(chan struct{}), slowIn: make(chan struct{}, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.unblock()
		b.srv.Close()
	})
	return b
}

func (b *backend) unblock() { b.once.Do(func() { close(b.release) }) }

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.requests++
	b.byMethod[r.Method]++
	b.mu.Unlock()
	if r.URL.Path == "/slow" {
		b.slowIn <- struct{}{}
		<-b.release
	}
	var body bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		body.Write(buf[:n])
		b.read.Add(int64(n))
		if err != nil {
			break
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.lastBody = r, body.Bytes()
	switch r.Method {
	case http.MethodPut:
		if _, ok := b.objects[r.URL.Path]; ok && r.Header.Get("If-None-Match") == "*" {
			w.WriteHeader(http.StatusPreconditionFailed)
			return
		}
		b.objects[r.URL.Path] = body.Bytes()
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, sha256.Sum256(body.Bytes())))
	case http.MethodGet:
		obj, ok := b.objects[r.URL.Path]
		if !ok && r.URL.Path != "/slow" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Write(obj)
	}
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

func (b *backend) object(path string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[path]
	return o, ok
}

func startProxy(t *testing.T, target string, seed int64) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(faultproxy.Config{Target: target, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// newClient is an HTTP client that goes straight to the proxy.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends one request and reads the whole answer.
func do(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr http.Header) (int, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStartRejectsBadTargets(t *testing.T) {
	for _, target := range []string{"", "ftp://127.0.0.1:1", "http://127.0.0.1:1/path", "http://127.0.0.1:1?x=1", "http://u:p@127.0.0.1:1", "http://"} {
		if p, err := faultproxy.Start(faultproxy.Config{Target: target}); err == nil {
			p.Close()
			t.Errorf("Start(%q) succeeded", target)
		}
	}
	p, err := faultproxy.Start(faultproxy.Config{Target: "127.0.0.1:1"}) // bare host:port means http
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") || p.URL() != "http://"+p.Addr() {
		t.Errorf("Addr %q URL %q", p.Addr(), p.URL())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestForwardKeepsRequestIntact(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)

	body := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+7) // 3 MiB and a bit
	const path = "/bucket/a%2Fb%20c+d"
	url := p.URL() + path + "?x-id=PutObject&q=%2B1"
	hdr := http.Header{
		"If-None-Match":        {"*"},
		"Authorization":        {"AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=z"},
		"X-Amz-Content-Sha256": {fmt.Sprintf("%x", sha256.Sum256(body))},
		"X-Amz-Meta-Note":      {"kept"},
	}
	code, _, err := do(t, c, http.MethodPut, url, bytes.NewReader(body), hdr)
	if err != nil || code != http.StatusOK {
		t.Fatalf("PUT: %d %v", code, err)
	}
	b.mu.Lock()
	last, lastBody := b.last, b.lastBody
	b.mu.Unlock()
	if last.Host != p.Addr() {
		t.Errorf("backend saw Host %q, want the proxy's %q (signatures cover it)", last.Host, p.Addr())
	}
	if want := path + "?x-id=PutObject&q=%2B1"; last.RequestURI != want {
		t.Errorf("backend saw %q, want %q", last.RequestURI, want)
	}
	for k, vs := range hdr {
		if got := last.Header[k]; len(got) != 1 || got[0] != vs[0] {
			t.Errorf("header %s: backend saw %q, want %q", k, got, vs)
		}
	}
	for _, k := range []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Host"} {
		if v := last.Header.Get(k); v != "" {
			t.Errorf("proxy added %s: %q", k, v)
		}
	}
	if last.ContentLength != int64(len(body)) || !bytes.Equal(lastBody, body) {
		t.Errorf("backend got %d bytes (Content-Length %d), want the %d sent", len(lastBody), last.ContentLength, len(body))
	}

	// The conditional header reaches the backend: a second PUT loses.
	if code, _, err := do(t, c, http.MethodPut, url, bytes.NewReader(body), hdr); err != nil || code != http.StatusPreconditionFailed {
		t.Errorf("second conditional PUT: %d %v, want 412", code, err)
	}
	code, got, err := do(t, c, http.MethodGet, p.URL()+path, nil, nil)
	if err != nil || code != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("GET: %d, %d bytes, %v", code, len(got), err)
	}
	st := p.Stats()
	if st.Total() != 3 || st.Requests["PUT"] != 2 || st.Requests["GET"] != 1 || st.Forwarded != 3 ||
		st.Failed+st.Lost+st.Blackholed+st.BackendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestStreamsRequestBody: the backend gets the start of a body before the
// client has written the rest.
func TestStreamsRequestBody(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		code, _, err := do(t, c, http.MethodPut, p.URL()+"/stream", pr, nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		done <- err
	}()
	chunk := bytes.Repeat([]byte{'x'}, 256<<10)
	if _, err := pw.Write(chunk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the backend to read the first chunk", func() bool { return b.read.Load() >= int64(len(chunk)) })
	pw.Write(chunk)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if obj, _ := b.object("/stream"); len(obj) != 2*len(chunk) {
		t.Errorf("stored %d bytes, want %d", len(obj), 2*len(chunk))
	}
}

func TestFailRateOne(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)
	p.SetFailRate(1)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodHead, http.MethodDelete} {
		var body io.Reader
		if m == http.MethodPut {
			body = bytes.NewReader(make([]byte, 1<<20)) // read and dropped, not forwarded
		}
		code, got, err := do(t, c, m, p.URL()+"/bucket/k", body, nil)
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d %v, want 503", m, code, err)
		}
		if m == http.MethodHead {
			continue
		}
		var e struct{ Code, Resource string }
		if err := xml.Unmarshal(got, &e); err != nil || e.Code != "SlowDown" || e.Resource != "/bucket/k" {
			t.Errorf("%s: body %q (%v), want an S3 SlowDown error", m, got, err)
		}
	}
	if n := b.count(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
	if st := p.Stats(); st.Failed != 4 || st.Forwarded != 0 || st.Total() != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoseRateOne(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)
	p.SetLoseRate(1)
	p.SetOnlyMethods("put")
	_, _, err := do(t, c, http.MethodPut, p.URL()+"/bucket/lost", strings.NewReader("applied"), nil)
	if err == nil {
		t.Fatal("PUT with a lost response succeeded")
	}
	if obj, ok := b.object("/bucket/lost"); !ok || string(obj) != "applied" {
		t.Fatalf("backend has %q (%v), want the PUT applied", obj, ok)
	}
	// Only PUTs are faulted.
	code, got, err := do(t, c, http.MethodGet, p.URL()+"/bucket/lost", nil, nil)
	if err != nil || code != http.StatusOK || string(got) != "applied" {
		t.Fatalf("GET: %d %q %v", code, got, err)
	}
	if st := p.Stats(); st.Lost != 1 || st.Forwarded != 2 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := b.count(); n != 2 {
		t.Errorf("backend saw %d requests, want 2", n)
	}
}

func TestBlackholeHoldsThenDrops(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)
	p.SetBlackhole(true)
	type result struct {
		code int
		err  error
	}
	results := make(chan result, 3)
	go func() {
		code, _, err := do(t, c, http.MethodGet, p.URL()+"/bucket/k", nil, nil)
		results <- result{code, err}
	}()
	go func() {
		code, _, err := do(t, c, http.MethodPut, p.URL()+"/bucket/k", bytes.NewReader(make([]byte, 1<<20)), nil)
		results <- result{code, err}
	}()
	// A client still sending its body when the blackhole lifts.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		code, _, err := do(t, c, http.MethodPut, p.URL()+"/bucket/k", pr, nil)
		results <- result{code, err}
	}()
	if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the requests to be held", func() bool { return p.Stats().Blackholed == 3 })
	select {
	case r := <-results:
		t.Fatalf("a blackholed request was answered: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	p.SetBlackhole(false)
	// The client learns of the drop when it next writes (its transport
	// returns only after its body writer stops).
	go func() {
		for range 1000 {
			if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
				return
			}
		}
	}()
	for range 3 {
		select {
		case r := <-results:
			if r.err == nil {
				t.Errorf("a held request got an answer after healing: %d", r.code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("held requests not dropped after healing")
		}
	}
	if n := b.count(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
	// Healed: requests pass again.
	if code, _, err := do(t, c, http.MethodPut, p.URL()+"/bucket/k", strings.NewReader("v"), nil); err != nil || code != http.StatusOK {
		t.Errorf("PUT after healing: %d %v", code, err)
	}
	if st := p.Stats(); st.Forwarded != 1 || st.Blackholed != 3 || st.Total() != 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestBlackholeInFlight: an answer still on its way when the blackhole
// comes on is held and then dropped.
func TestBlackholeInFlight(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 1)
	c := newClient(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, http.MethodGet, p.URL()+"/slow", nil, nil)
		done <- err
	}()
	select {
	case <-b.slowIn:
	case <-time.After(5 * time.Second):
		t.Fatal("request did not reach the backend")
	}
	p.SetBlackhole(true)
	b.unblock()
	eventually(t, "the answer to be held", func() bool { return p.Stats().Blackholed == 1 })
	select {
	case err := <-done:
		t.Fatalf("in-flight answer delivered during the blackhole (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.Heal()
	select {
	case err := <-done:
		if err == nil {
			t.Error("in-flight answer delivered after healing, want the connection dropped")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held answer not dropped after healing")
	}
}

// TestBlackholeClientGivesUp: a client may stop waiting; Close releases
// whatever is still held.
func TestBlackholeClientGivesUpAndClose(t *testing.T) {
	b := newBackend(t)
	p, err := faultproxy.Start(faultproxy.Config{Target: b.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	p.SetBlackhole(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.URL()+"/k", bytes.NewReader(make([]byte, 64<<10)))
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client giving up: %v, want its deadline", err)
	}
	held := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, http.MethodGet, p.URL()+"/k", nil, nil)
		held <- err
	}()
	eventually(t, "the second request to be held", func() bool { return p.Stats().Blackholed == 2 })
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on held requests")
	}
	if err := <-held; err == nil {
		t.Error("held request answered at Close")
	}
	if n := b.count(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
}

// TestRates: a rate of 0.3 injects about 30% of 1,000 requests.
func TestRates(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 42)
	c := newClient(t)
	const n = 1000
	within := func(what string, k int) {
		t.Helper()
		if f := float64(k) / n; f < 0.2 || f > 0.4 {
			t.Errorf("%s: %d of %d (%.2f), want about 0.3", what, k, n, f)
		}
	}

	p.SetFailRate(0.3)
	failed := 0
	for range n {
		code, _, err := do(t, c, http.MethodGet, p.URL()+"/k", nil, nil)
		switch {
		case err != nil:
			t.Fatal(err)
		case code == http.StatusServiceUnavailable:
			failed++
		case code != http.StatusNotFound:
			t.Fatalf("status %d", code)
		}
	}
	within("failed", failed)
	if st := p.Stats(); st.Failed != int64(failed) || b.count() != n-failed {
		t.Errorf("%d 503s, stats %+v, backend saw %d", failed, st, b.count())
	}

	// PUTs: a lost PUT is not retried by the client, so each attempt is
	// one request.
	p.SetFailRate(0)
	p.SetLoseRate(0.3)
	lost := 0
	for i := range n {
		code, _, err := do(t, c, http.MethodPut, fmt.Sprintf("%s/p/%d", p.URL(), i), strings.NewReader("x"), nil)
		switch {
		case err != nil:
			lost++
		case code != http.StatusOK:
			t.Fatalf("status %d", code)
		}
	}
	within("lost", lost)
	st := p.Stats()
	if st.Lost != int64(lost) || st.Requests["PUT"] != n {
		t.Errorf("%d lost, stats %+v", lost, st)
	}
	for i := range n { // every PUT applied, answered or not
		if _, ok := b.object(fmt.Sprintf("/p/%d", i)); !ok {
			t.Fatalf("PUT %d not applied", i)
		}
	}
}

// TestSeedReproducible: the same seed makes the same decisions.
func TestSeedReproducible(t *testing.T) {
	b := newBackend(t)
	c := newClient(t)
	pattern := func(seed int64) string {
		p := startProxy(t, b.srv.URL, seed)
		p.SetFailRate(0.5)
		var s strings.Builder
		for range 64 {
			code, _, err := do(t, c, http.MethodGet, p.URL()+"/k", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.WriteByte("x."[min(code/100-4, 1)]) // 503: '.', 404: 'x'
		}
		return s.String()
	}
	a, a2, other := pattern(7), pattern(7), pattern(8)
	if a != a2 {
		t.Errorf("seed 7 gave %s then %s", a, a2)
	}
	if a == other {
		t.Errorf("seeds 7 and 8 both gave %s", a)
	}
}

// TestConcurrentChanges: requests flow while the faults change; the race
// detector watches, and the counts must add up.
func TestConcurrentChanges(t *testing.T) {
	b := newBackend(t)
	p := startProxy(t, b.srv.URL, 3)
	c := newClient(t)
	stop := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			p.SetFailRate(float64(i%4) / 10)
			p.SetLoseRate(float64(i%3) / 10)
			p.SetBlackhole(i%7 == 0)
			if i%5 == 0 {
				p.SetOnlyMethods("PUT")
			} else {
				p.SetOnlyMethods()
			}
			_ = p.Stats()
		}
	}()
	var wg sync.WaitGroup
	var got503 atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				method, body := http.MethodGet, io.Reader(nil)
				if i%2 == 0 {
					method, body = http.MethodPut, strings.NewReader("v")
				}
				req, _ := http.NewRequestWithContext(ctx, method, fmt.Sprintf("%s/w%d/%d", p.URL(), w, i), body)
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable {
						got503.Add(1)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flipped
	p.Heal()
	st := p.Stats()
	if st.Failed != got503.Load() {
		t.Errorf("clients saw %d 503s, stats %+v", got503.Load(), st)
	}
	if st.BackendErrors != 0 || int64(b.count()) != st.Forwarded {
		t.Errorf("backend saw %d requests, stats %+v", b.count(), st)
	}
	if st.Total() < 400 {
		t.Errorf("proxy saw %d requests, want at least the 400 sent", st.Total())
	}
}

// TestHangStaysSilent: a request hung with HangRequests is never forwarded
// and never answered, not even after the hang is turned off; the client
// ends it by giving up. Requests that arrive later are served.
func TestHangStaysSilent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hang      faultproxy.Hang
		forwarded bool // the backend sees (and applies) the hung request
	}{
		{"requests", faultproxy.HangRequests, false},
		{"responses", faultproxy.HangResponses, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			p := startProxy(t, b.srv.URL, 1)
			c := newClient(t)
			p.SetHang(tc.hang)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.URL()+"/bucket/hung", strings.NewReader("payload"))
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			eventually(t, "the request to hang", func() bool { return p.Stats().Hung == 1 })
			p.SetHang(faultproxy.NoHang)
			// Served after the hang: a new request on a new connection.
			if code, _, err := do(t, c, http.MethodPut, p.URL()+"/bucket/after", strings.NewReader("v"), nil); err != nil || code != http.StatusOK {
				t.Fatalf("PUT after the hang: %d %v", code, err)
			}
			select {
			case err := <-done:
				t.Fatalf("the hung request ended after the hang was turned off (err %v), want it silent", err)
			default:
			}
			cancel() // the client gives up
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("hung request: %v, want the client's cancellation", err)
			}
			if _, ok := b.object("/bucket/hung"); ok != tc.forwarded {
				t.Errorf("backend has the hung object: %v, want %v", ok, tc.forwarded)
			}
			st := p.Stats()
			wantForwarded := int64(1)
			if tc.forwarded {
				wantForwarded = 2
			}
			if st.Hung != 1 || st.Forwarded != wantForwarded || st.Total() != 2 {
				t.Errorf("stats %+v, want 1 hung and %d forwarded of 2", st, wantForwarded)
			}
		})
	}
}

// TestHangReleasedByClose: Close ends hung requests.
func TestHangReleasedByClose(t *testing.T) {
	b := newBackend(t)
	p, err := faultproxy.Start(faultproxy.Config{Target: b.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	p.SetHang(faultproxy.HangResponses)
	done := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, http.MethodGet, p.URL()+"/k", nil, nil)
		done <- err
	}()
	eventually(t, "the request to hang", func() bool { return p.Stats().Hung == 1 })
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if err := <-done; err == nil {
		t.Error("hung request answered at Close")
	}
}
