// Package s3proxy is a counting reverse proxy for an S3-compatible object
// store on loopback: strata talks to the proxy, the proxy forwards every
// request unchanged (Host header included, so SigV4 signatures stay valid)
// and counts requests by kind and bytes moved, and separately the PUTs of
// strata's WAL objects (keys meta.ParseWALKey accepts, under any prefix).
package s3proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/stratalog/strata/meta"
)

// Counts is a snapshot of what went through the proxy.
type Counts struct {
	Puts     int64 `json:"puts"`      // object PUTs, including multipart part uploads and copies
	Gets     int64 `json:"gets"`      // object GETs (ranged or whole)
	Lists    int64 `json:"lists"`     // bucket listings (GET on the bucket)
	Heads    int64 `json:"heads"`     // HEAD requests
	Deletes  int64 `json:"deletes"`   // DELETE requests
	Posts    int64 `json:"posts"`     // POSTs (multipart initiate/complete, batch delete)
	PutBytes int64 `json:"put_bytes"` // request body bytes of PUTs
	GetBytes int64 `json:"get_bytes"` // response body bytes of GETs
	// WALPuts are the PUTs (counted in Puts too) of strata WAL objects
	// and fences, <prefix>/wal/<incarnation>/<seq:020d>; WALPutBytes
	// their request body bytes.
	WALPuts     int64 `json:"wal_puts"`
	WALPutBytes int64 `json:"wal_put_bytes"`
}

// Sub returns c - o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.Puts - o.Puts, c.Gets - o.Gets, c.Lists - o.Lists, c.Heads - o.Heads, c.Deletes - o.Deletes, c.Posts - o.Posts, c.PutBytes - o.PutBytes, c.GetBytes - o.GetBytes,
		c.WALPuts - o.WALPuts, c.WALPutBytes - o.WALPutBytes}
}

// Proxy forwards to one upstream and counts.
type Proxy struct {
	lis                                      net.Listener
	srv                                      *http.Server
	puts, gets, lists, heads, deletes, posts atomic.Int64
	putBytes, getBytes                       atomic.Int64
	walPuts, walPutBytes                     atomic.Int64
}

// Start listens on 127.0.0.1 (a free port) and forwards to upstream
// (HOST:PORT, plain HTTP).
func Start(upstream string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: "http", Host: upstream}
	p := &Proxy{lis: lis}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path, r.Out.URL.RawPath = r.In.URL.Path, r.In.URL.RawPath
			r.Out.Host = r.In.Host // the signature covers the Host the client signed
			r.Out.Header.Del("X-Forwarded-For")
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request != nil && resp.Request.Method == http.MethodGet && isObject(resp.Request.URL.Path) {
				resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.getBytes}
			}
			return nil
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wal := p.count(r)
		if r.Method == http.MethodPut && r.Body != nil {
			r.Body = &countingBody{ReadCloser: r.Body, n: &p.putBytes}
			if wal {
				r.Body = &countingBody{ReadCloser: r.Body, n: &p.walPutBytes}
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(lis)
	return p, nil
}

// isObject: a path-style /bucket/key names an object; /bucket or / does not.
func isObject(path string) bool {
	path = strings.TrimPrefix(path, "/")
	i := strings.IndexByte(path, '/')
	return i >= 0 && i < len(path)-1
}

// isWAL: the path's last three elements are a strata WAL key
// (wal/<incarnation>/<seq:020d>), whatever bucket and prefix come first.
func isWAL(path string) bool {
	parts := strings.Split(path, "/")
	if len(parts) < 4 { // "", bucket, "wal", incarnation, seq at least
		return false
	}
	_, _, ok := meta.ParseWALKey(strings.Join(parts[len(parts)-3:], "/"))
	return ok
}

// count counts r; it reports whether r is a PUT of a WAL object.
func (p *Proxy) count(r *http.Request) (walPut bool) {
	switch r.Method {
	case http.MethodPut:
		if isObject(r.URL.Path) {
			p.puts.Add(1)
			if isWAL(r.URL.Path) {
				p.walPuts.Add(1)
				walPut = true
			}
		}
	case http.MethodGet:
		if isObject(r.URL.Path) {
			p.gets.Add(1)
		} else {
			p.lists.Add(1)
		}
	case http.MethodHead:
		p.heads.Add(1)
	case http.MethodDelete:
		p.deletes.Add(1)
	case http.MethodPost:
		p.posts.Add(1)
	}
	return walPut
}

// Addr is the proxy's HOST:PORT.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Counts returns what has gone through so far.
func (p *Proxy) Counts() Counts {
	return Counts{p.puts.Load(), p.gets.Load(), p.lists.Load(), p.heads.Load(), p.deletes.Load(), p.posts.Load(), p.putBytes.Load(), p.getBytes.Load(),
		p.walPuts.Load(), p.walPutBytes.Load()}
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
