package s3proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stratalog/strata/tier"
)

// A fake upstream: the proxy keeps the Host header and the path, and
// counts PUTs, GETs and listings with their bytes, and strata's WAL PUTs.
func TestCountsAndKeepsHost(t *testing.T) {
	var hosts []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		io.Copy(io.Discard, r.Body)
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/b/k":
			w.Write(bytes.Repeat([]byte("g"), 300))
		default:
			w.WriteHeader(200)
		}
	}))
	defer up.Close()
	p, err := Start(strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := "http://" + p.Addr()
	do := func(method, path string, body []byte) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Host = "signed.example:9000"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("PUT", "/b/k", make([]byte, 1000))
	do("PUT", "/b/k2?partNumber=1&uploadId=x", make([]byte, 24))
	do("PUT", "/b", nil) // bucket creation: not an object PUT
	do("GET", "/b/k", nil)
	do("GET", "/b?list-type=2", nil)
	do("HEAD", "/b/k", nil)
	do("DELETE", "/b/k", nil)
	do("POST", "/b/k?uploads", nil)
	// strata's WAL objects, under a prefix or not; a key that only looks
	// like one (a topic named wal, a short sequence number) is not.
	do("PUT", "/b/run-1/wal/inc-a/00000000000000000007", make([]byte, 50))
	do("PUT", "/b/wal/inc-b/00000000000000000000", make([]byte, 10))
	do("PUT", "/b/topics/wal/id/partitions/0/manifest.json", make([]byte, 5))
	do("PUT", "/b/run-1/wal/inc-a/7", make([]byte, 5))
	do("GET", "/b/run-1/wal/inc-a/00000000000000000007", nil)
	c := p.Counts()
	want := Counts{Puts: 6, Gets: 2, Lists: 1, Heads: 1, Deletes: 1, Posts: 1, PutBytes: 1094, GetBytes: 300, WALPuts: 2, WALPutBytes: 60}
	if c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	for _, h := range hosts {
		if h != "signed.example:9000" {
			t.Fatalf("upstream saw Host %q", h)
		}
	}
	if d := c.Sub(Counts{Puts: 1, WALPuts: 1}); d.Puts != 5 || d.Gets != 2 || d.WALPuts != 1 || d.WALPutBytes != 60 {
		t.Fatalf("sub %+v", d)
	}
}

// Against a real MinIO (scripts/with-minio.sh exports its address):
// signed requests through the proxy succeed and are counted.
func TestRealMinIOSignatures(t *testing.T) {
	ep := os.Getenv("STRATA_TEST_MINIO_ENDPOINT")
	if ep == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but STRATA_TEST_MINIO_ENDPOINT is not set (run under scripts/with-minio.sh)")
		}
		t.Skip("no MinIO: run under scripts/with-minio.sh")
	}
	p, err := Start(ep)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	st, err := tier.NewS3Store(ctx, tier.S3Config{Endpoint: p.Addr(), Bucket: "proxytest", Insecure: true, CreateBucket: true,
		AccessKey: os.Getenv("STRATA_TEST_MINIO_ACCESS_KEY"), SecretKey: os.Getenv("STRATA_TEST_MINIO_SECRET_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := p.Counts()
	body := bytes.Repeat([]byte("x"), 4096)
	for i := 0; i < 3; i++ {
		if _, err := st.Put(ctx, "obj"+string(rune('a'+i)), bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	rc, _, err := st.Get(ctx, "obja")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatal("GET through the proxy returned other bytes")
	}
	d := p.Counts().Sub(before)
	if d.Puts != 3 || d.Gets < 1 || d.PutBytes < 3*4096 || d.GetBytes < 4096 {
		t.Fatalf("counted %+v", d)
	}
}
