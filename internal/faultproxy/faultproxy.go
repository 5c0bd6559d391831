// Package faultproxy owns a fault-injecting HTTP proxy for the object store:
// fault tests put it between a strata broker (or a tier.S3Store) and MinIO
// and make the store misbehave at the HTTP level, where real outages
// happen. It listens on loopback only.
//
// Each request draws one outcome:
//
//   - failed: answered at once with an S3-style 503 SlowDown error, as a
//     throttling S3 does (SetFailRate);
//   - lost: forwarded, answered by the backend, and then the client's
//     connection is aborted without an answer, as when a connection dies
//     after the write applied (SetLoseRate);
//   - held: while a blackhole is on (SetBlackhole), nothing is answered;
//     held requests are dropped (their connection aborted) when it lifts;
//   - hung: while a hang is on (SetHang), the connection goes silent, as
//     one does whose NAT or load-balancer state was lost: the request is
//     never answered, not even after the hang is turned off, until the
//     client gives up (closes the connection) or the proxy closes. With
//     HangRequests it is never forwarded; with HangResponses it is
//     forwarded and completed by the backend (the write applies) and only
//     the answer is withheld;
//   - forwarded: passed through untouched.
//
// Invariants:
//   - A failed request is never forwarded: the backend never sees it.
//   - A lost response always was forwarded and completed by the backend
//     (status and whole body received) before the client connection was
//     aborted; if forwarding itself failed, the client gets that 502
//     instead and nothing counts as lost.
//   - A request held at arrival, or hung with HangRequests, is never
//     forwarded, not even when the blackhole or hang lifts. A request already forwarded when the blackhole came
//     on (in flight) gets no more of its answer, and is dropped too.
//   - A forwarded request reaches the backend as the client sent it: the
//     same method, path, query, Host header (S3 signatures cover it),
//     other end-to-end headers (conditional ones such as If-None-Match and
//     If-Match included) and body. Bodies are streamed both ways, never
//     buffered whole. Only hop-by-hop headers and client-sent Forwarded /
//     X-Forwarded-* headers are dropped (httputil.ReverseProxy's Rewrite
//     mode; none is signed by S3 clients), and none is added.
//   - A hung request never gets an answer; only the client closing its
//     connection or Close ends it. A request hung with HangResponses was
//     forwarded, and the backend's whole answer received, before it hung
//     (if forwarding failed it hangs all the same: silence either way).
//   - Decisions come from one math/rand/v2 source seeded by Config.Seed,
//     one draw per request the fail/lose faults apply to, so a sequential
//     run makes the same decisions every time.
//
// A Proxy is safe for concurrent use; its settings may change while
// requests flow. A change applies to requests that arrive after it (and a
// blackhole also to responses not yet sent).
package faultproxy

import (
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Proxy.
type Config struct {
	// Target is the base URL of the real store, e.g. http://127.0.0.1:9000
	// (a bare host:port means http). It takes no path, query or fragment.
	Target string
	// Seed seeds the fault decisions.
	Seed int64
}

// Stats counts what the proxy did. Every request received counts in
// Requests and then in exactly one of Failed, Blackholed (held at arrival),
// Hung without Forwarded (HangRequests) and Forwarded. A forwarded request
// may also count in Lost, in BackendErrors, in Blackholed (its answer held
// in flight) or in Hung (HangResponses).
type Stats struct {
	Requests      map[string]int64 // requests received, by HTTP method
	Forwarded     int64            // requests sent on to the backend, lost ones included
	Failed        int64            // answered with the injected 503 SlowDown; never forwarded
	Lost          int64            // forwarded and answered by the backend, then the client connection aborted
	Blackholed    int64            // held by a blackhole (counted when held; dropped when it lifts)
	BackendErrors int64            // forwarded but the backend could not be reached or failed: answered 502
	Hung          int64            // left unanswered by a hang, forwarded (HangResponses) or not (HangRequests)
}

// Total is the number of requests received.
func (s Stats) Total() int64 {
	var n int64
	for _, c := range s.Requests {
		n += c
	}
	return n
}

// Proxy is a running fault-injecting proxy. Close it when done.
type Proxy struct {
	target    *url.URL
	ln        net.Listener
	srv       *http.Server
	rp        *httputil.ReverseProxy
	transport *http.Transport
	served    chan struct{} // closed when srv.Serve has returned
	closing   chan struct{} // closed by Close: releases held requests
	active    sync.WaitGroup

	mu        sync.Mutex // guards the fields below
	rng       *rand.Rand
	failRate  float64
	loseRate  float64
	only      map[string]bool // nil: faults apply to every method
	blackhole bool
	lifted    chan struct{} // while blackhole: closed when it lifts
	hang      Hang
	closed    bool
	stats     Stats
	requestID int64
}

// Start starts a proxy to cfg.Target on 127.0.0.1 and a free port.
func Start(cfg Config) (*Proxy, error) {
	target, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		target: target,
		ln:     ln,
		transport: &http.Transport{
			Proxy:               nil, // straight to the target, whatever the environment says
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			// Pass bodies through as the backend encoded them.
			DisableCompression: true,
		},
		served:  make(chan struct{}),
		closing: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)),
		stats:   Stats{Requests: map[string]int64{}},
	}
	p.rp = &httputil.ReverseProxy{
		// Rewrite, not SetURL: SetURL would replace the Host header, and
		// the client signed the request with the proxy's host.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = p.target.Scheme
			pr.Out.URL.Host = p.target.Host
			pr.Out.Host = pr.In.Host
		},
		Transport:    p.transport,
		ErrorHandler: p.backendError,
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() {
		defer close(p.served)
		p.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

func parseTarget(target string) (*url.URL, error) {
	raw := target
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %v", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("faultproxy: target %q: scheme must be http or https", target)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("faultproxy: target %q: want scheme://host:port and nothing more", target)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Addr is the proxy's address, "127.0.0.1:PORT": the S3 endpoint to give
// clients.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's base URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// clampRate maps f into [0, 1]; NaN is 0.
func clampRate(f float64) float64 {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	return min(f, 1)
}

// SetFailRate sets the fraction of requests answered with a 503 SlowDown
// without being forwarded. It is clamped to [0, 1].
func (p *Proxy) SetFailRate(f float64) {
	p.mu.Lock()
	p.failRate = clampRate(f)
	p.mu.Unlock()
}

// SetLoseRate sets the fraction of requests that are forwarded and
// completed by the backend, and whose response is then lost: the client's
// connection is aborted without an answer. It is clamped to [0, 1]; the
// fail rate takes precedence when both add up to more than 1.
func (p *Proxy) SetLoseRate(f float64) {
	p.mu.Lock()
	p.loseRate = clampRate(f)
	p.mu.Unlock()
}

// SetOnlyMethods restricts the fail and lose faults to requests with one of
// these HTTP methods (e.g. "PUT"); none means every method. A blackhole
// holds every request whatever its method.
func (p *Proxy) SetOnlyMethods(methods ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(methods) == 0 {
		p.only = nil
		return
	}
	p.only = make(map[string]bool, len(methods))
	for _, m := range methods {
		p.only[strings.ToUpper(m)] = true
	}
}

// SetBlackhole turns the blackhole on or off. While it is on, new requests
// and the responses of requests in flight get no answer: they hang until
// it is turned off or the proxy closes (then their connections are
// aborted: they are dropped, never forwarded late) or until the client
// gives up.
func (p *Proxy) SetBlackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.blackhole {
		return
	}
	p.blackhole = on
	if on {
		p.lifted = make(chan struct{})
	} else {
		close(p.lifted)
		p.lifted = nil
	}
}

// Hang says what a hang does to the requests that arrive while it is on.
type Hang int

const (
	// NoHang: requests are served (the default).
	NoHang Hang = iota
	// HangRequests: a request is read but never forwarded nor answered.
	HangRequests
	// HangResponses: a request is forwarded and completed by the backend,
	// and its answer is never sent.
	HangResponses
)

// SetHang sets what happens to requests that arrive from now on, whatever
// their method: NoHang serves them; HangRequests and HangResponses make
// them hang (see the package comment). Requests already hung stay hung
// after SetHang(NoHang): only the client giving up, or Close, ends them,
// as with a connection that went silent. A blackhole takes precedence.
func (p *Proxy) SetHang(h Hang) {
	p.mu.Lock()
	p.hang = h
	p.mu.Unlock()
}

// Heal stops injecting faults: both rates go to 0, the blackhole is turned
// off (dropping the requests it held) and so is the hang (requests already
// hung stay so). The method filter is kept.
func (p *Proxy) Heal() {
	p.SetFailRate(0)
	p.SetLoseRate(0)
	p.SetBlackhole(false)
	p.SetHang(NoHang)
}

// Stats returns a snapshot of the counts.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Requests = make(map[string]int64, len(p.stats.Requests))
	for m, n := range p.stats.Requests {
		s.Requests[m] = n
	}
	return s
}

// Close stops listening, closes the client connections (aborting held
// requests) and waits for the proxy's handlers to return. It is
// idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	p.mu.Unlock()
	err := p.srv.Close()
	<-p.served
	p.active.Wait()
	p.transport.CloseIdleConnections()
	return err
}

type outcome int

const (
	forward outcome = iota
	fail
	lose
	hold
	hangRequest
	hangResponse
)

// admit counts the request and decides its fate; ok is false once the
// proxy is closing. lifted is the blackhole's channel for a held request.
func (p *Proxy) admit(r *http.Request) (o outcome, lifted <-chan struct{}, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return forward, nil, false
	}
	p.active.Add(1)
	p.stats.Requests[r.Method]++
	if p.blackhole {
		p.stats.Blackholed++
		return hold, p.lifted, true
	}
	switch p.hang {
	case HangRequests:
		p.stats.Hung++
		return hangRequest, nil, true
	case HangResponses:
		p.stats.Forwarded++
		return hangResponse, nil, true
	}
	if p.only != nil && !p.only[r.Method] {
		return forward, nil, true
	}
	switch x := p.rng.Float64(); {
	case x < p.failRate:
		p.stats.Failed++
		return fail, nil, true
	case x < p.failRate+p.loseRate:
		return lose, nil, true
	}
	return forward, nil, true
}

func (p *Proxy) count(field *int64) {
	p.mu.Lock()
	*field++
	p.mu.Unlock()
}

// abort drops the client connection without an answer.
func abort() { panic(http.ErrAbortHandler) }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	o, lifted, ok := p.admit(r)
	if !ok {
		abort()
	}
	defer p.active.Done()
	switch o {
	case hold:
		p.holdArrival(w, r, lifted)
	case fail:
		p.slowDown(w, r)
	case lose:
		p.lose(w, r)
	case hangRequest:
		p.holdArrival(w, r, nil) // nil: never lifts
	case hangResponse:
		p.hangResponse(r)
	default:
		p.count(&p.stats.Forwarded)
		p.rp.ServeHTTP(&guardWriter{ResponseWriter: w, p: p, r: r}, r)
	}
}

// slowDownError is S3's error document.
type slowDownError struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource"`
	RequestID string   `xml:"RequestId"`
}

// slowDown answers the injected 503 SlowDown. The request body is read and
// discarded first, so the client is not cut off while still sending it
// (the answer, not a broken pipe, is what it must see).
func (p *Proxy) slowDown(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	p.mu.Lock()
	p.requestID++
	id := fmt.Sprintf("FAULTPROXY%016X", p.requestID)
	p.mu.Unlock()
	body, err := xml.Marshal(slowDownError{
		Code:      "SlowDown",
		Message:   "Please reduce your request rate. (injected by faultproxy)",
		Resource:  r.URL.Path,
		RequestID: id,
	})
	if err != nil {
		panic(err) // cannot happen: a fixed struct of strings
	}
	body = append([]byte(xml.Header), body...)
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amz-Request-Id", id)
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(body)
}

// lose forwards the request, takes the backend's whole answer, and then
// aborts the client's connection without answering.
func (p *Proxy) lose(w http.ResponseWriter, r *http.Request) {
	p.count(&p.stats.Forwarded)
	d := &discardWriter{header: http.Header{}}
	// A failure to read the backend's body makes ReverseProxy abort the
	// connection itself: not counted as lost, the backend did not finish.
	p.rp.ServeHTTP(d, r)
	if d.err != nil {
		// No answer to lose: pass on the 502 that forwarding would give.
		p.writeBadGateway(w, d.err)
		return
	}
	p.count(&p.stats.Lost)
	abort()
}

// hangResponse forwards the request, takes the backend's whole answer,
// and then sends nothing until the client leaves or the proxy closes.
func (p *Proxy) hangResponse(r *http.Request) {
	p.rp.ServeHTTP(&discardWriter{header: http.Header{}}, r)
	p.count(&p.stats.Hung)
	p.wait(r, nil)
	abort()
}

// backendError is the ReverseProxy's ErrorHandler: forwarding failed.
func (p *Proxy) backendError(w http.ResponseWriter, _ *http.Request, err error) {
	p.count(&p.stats.BackendErrors)
	if d, ok := w.(*discardWriter); ok {
		d.err = err
		return
	}
	p.writeBadGateway(w, err)
}

func (p *Proxy) writeBadGateway(w http.ResponseWriter, err error) {
	http.Error(w, "faultproxy: backend: "+err.Error(), http.StatusBadGateway)
}

// holdArrival holds a request that arrived during a blackhole until the
// blackhole lifts (never when lifted is nil: a hang), the proxy closes or
// the client leaves, then drops it.
// It reads and discards the request body meanwhile, so that the client's
// leaving is noticed (the server watches the connection only once the body
// has been read).
func (p *Proxy) holdArrival(w http.ResponseWriter, r *http.Request, lifted <-chan struct{}) {
	if r.Body != nil && r.Body != http.NoBody {
		stop, watched := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-lifted:
			case <-p.closing:
			case <-stop:
				return
			}
			// Unblock the body read below.
			http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
		}()
		_, err := io.Copy(io.Discard, r.Body)
		close(stop)
		<-watched
		if err != nil {
			abort() // the client left, or the blackhole lifted
		}
	}
	p.wait(r, lifted)
	abort()
}

// wait blocks until the blackhole lifts, the proxy closes or the client
// leaves.
func (p *Proxy) wait(r *http.Request, lifted <-chan struct{}) {
	select {
	case <-lifted:
	case <-p.closing:
	case <-r.Context().Done():
	}
}

// holdInFlight holds and drops the answer to a forwarded request if a
// blackhole is on.
func (p *Proxy) holdInFlight(r *http.Request) {
	p.mu.Lock()
	on, lifted := p.blackhole, p.lifted
	if on {
		p.stats.Blackholed++
	}
	p.mu.Unlock()
	if on {
		p.wait(r, lifted)
		abort()
	}
}

// guardWriter passes the backend's answer to the client unless a
// blackhole is on.
type guardWriter struct {
	http.ResponseWriter
	p *Proxy
	r *http.Request
}

func (g *guardWriter) WriteHeader(code int) {
	// 1xx answers are written from the transport's goroutine, where
	// aborting is not possible; they carry nothing anyway.
	if code >= 200 {
		g.p.holdInFlight(g.r)
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *guardWriter) Write(b []byte) (int, error) {
	g.p.holdInFlight(g.r)
	return g.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (g *guardWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// discardWriter takes a backend answer that is to be lost.
type discardWriter struct {
	header http.Header
	err    error // forwarding failed
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) Flush()                      {}
