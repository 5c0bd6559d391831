package tier

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		url  string
		dir  string
		s3   S3Config
		path *bool
	}{
		{url: "file:///var/lib/strata", dir: "/var/lib/strata"},
		{url: "file:///var/lib/strata/", dir: "/var/lib/strata"},
		{url: "file://localhost/srv/b", dir: "/srv/b"},
		{url: "file:/srv/b", dir: "/srv/b"},
		{url: "file:///with%20space", dir: "/with space"},
		{url: "s3://bucket", s3: S3Config{Bucket: "bucket"}},
		{url: "s3://bucket/", s3: S3Config{Bucket: "bucket"}},
		{url: "s3://bucket/a/b/", s3: S3Config{Bucket: "bucket", Prefix: "a/b"}},
		{url: "s3://b/p?endpoint=127.0.0.1:9000&insecure=true&region=eu-west-1",
			s3: S3Config{Bucket: "b", Prefix: "p", Endpoint: "127.0.0.1:9000", Insecure: true, Region: "eu-west-1"}},
		{url: "s3://b?endpoint=minio.local:9000&create=1&path-style=false",
			s3: S3Config{Bucket: "b", Endpoint: "minio.local:9000", CreateBucket: true}, path: &no},
		{url: "s3://b?path-style=true", s3: S3Config{Bucket: "b"}, path: &yes},
		{url: "s3://b?request-timeout=750ms&min-throughput=2MiB",
			s3: S3Config{Bucket: "b", Deadline: Deadline{Base: 750 * time.Millisecond, MinThroughput: 2 << 20}}},
		{url: "s3://b?min-throughput=1048576", s3: S3Config{Bucket: "b", Deadline: Deadline{MinThroughput: 1 << 20}}},
		{url: "s3://b?min-throughput=512KiB&request-timeout=1m", s3: S3Config{Bucket: "b", Deadline: Deadline{Base: time.Minute, MinThroughput: 512 << 10}}},
	} {
		loc, err := parseURL(tc.url)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tc.url, err)
			continue
		}
		if loc.dir != tc.dir {
			t.Errorf("parseURL(%q) dir = %q, want %q", tc.url, loc.dir, tc.dir)
		}
		got := loc.s3
		if (got.PathStyle == nil) != (tc.path == nil) || got.PathStyle != nil && *got.PathStyle != *tc.path {
			t.Errorf("parseURL(%q) PathStyle = %v, want %v", tc.url, got.PathStyle, tc.path)
		}
		got.PathStyle = nil
		if got != tc.s3 {
			t.Errorf("parseURL(%q) = %+v, want %+v", tc.url, got, tc.s3)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "has no scheme"},
		{"dir/relative", "has no scheme"},
		{"/abs/without/scheme", "has no scheme"},
		{"ftp://x/y", `scheme "ftp" not supported; use file:///abs/dir or s3://bucket/prefix`},
		{"gs://bucket/p", `scheme "gs" not supported`},
		{"file://relative/dir", "takes no host"},
		{"file:relative", "must be absolute"},
		{"file:///abs?x=1", "no query"},
		{"s3:///prefix", "no bucket"},
		{"s3://b/a//c", "prefix"},
		{"s3://b/p?insecure=maybe", `insecure="maybe" is not true or false`},
		{"s3://b/p?colour=blue", `unknown parameter "colour"`},
		{"s3://b/p?region=a&region=b", "given 2 times"},
		{"s3://key:secret@b/p", "credentials in the URL are not supported"},
		{"s3://b?request-timeout=5", `request-timeout="5" is not a positive duration`},
		{"s3://b?request-timeout=-1s", "not a positive duration"},
		{"s3://b?min-throughput=fast", `min-throughput="fast" is not a positive number of bytes per second`},
		{"s3://b?min-throughput=0", "not a positive number"},
		{"s3://b?min-throughput=8MB", "not a positive number"},
		{"s3://b?min-throughput=99999999999GiB", "not a positive number"},
		{"%zz", "object store URL"},
	} {
		_, err := parseURL(tc.url)
		if err == nil {
			t.Errorf("parseURL(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "object store URL") {
			t.Errorf("parseURL(%q): %q, want it to contain %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseURL(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestOpenFileURL(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fs, ok := s.(*FileStore)
	if !ok || fs.Root() != dir {
		t.Fatalf("Open(file://%s) = %T %v", dir, s, s)
	}
}
