package tier

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// Open opens a store from a URL:
//
//	file:///abs/dir                                   the embedded file store
//	s3://bucket/prefix?endpoint=HOST:PORT&insecure=true&region=R&create=true
//
// S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN). Without endpoint, AWS S3 is used.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tier: object store URL %q: %v; use file:///abs/dir or s3://bucket/prefix?endpoint=HOST:PORT", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("tier: object store URL %q: file URLs take no host; use file:///abs/dir", rawURL)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("tier: object store URL %q: the path must be absolute, as in file:///var/lib/strata/bucket", rawURL)
		}
		return NewFileStore(u.Path)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("tier: object store URL %q: no bucket; use s3://bucket/prefix", rawURL)
		}
		q := u.Query()
		cfg := S3Config{Bucket: u.Host, Endpoint: q.Get("endpoint"), Region: q.Get("region")}
		if p := strings.Trim(u.Path, "/"); p != "" {
			cfg.Prefix = p + "/"
		}
		if cfg.Endpoint == "" {
			cfg.Endpoint = "s3.amazonaws.com"
			if cfg.Region != "" {
				cfg.Endpoint = "s3." + cfg.Region + ".amazonaws.com"
			}
		}
		for _, b := range []struct {
			name string
			dst  *bool
		}{{"insecure", &cfg.Insecure}, {"create", &cfg.CreateBucket}} {
			if v := q.Get(b.name); v != "" {
				if *b.dst, err = strconv.ParseBool(v); err != nil {
					return nil, fmt.Errorf("tier: object store URL %q: %s=%q is not true or false", rawURL, b.name, v)
				}
			}
		}
		if v := q.Get("path-style"); v != "" {
			ps, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("tier: object store URL %q: path-style=%q is not true or false", rawURL, v)
			}
			cfg.PathStyle = &ps
		}
		for k := range q {
			switch k {
			case "endpoint", "region", "insecure", "create", "path-style":
			default:
				return nil, fmt.Errorf("tier: object store URL %q: unknown parameter %q (known: endpoint, region, insecure, create, path-style)", rawURL, k)
			}
		}
		return NewS3Store(ctx, cfg)
	case "":
		return nil, fmt.Errorf("tier: object store URL %q has no scheme; use file:///abs/dir or s3://bucket/prefix", rawURL)
	default:
		return nil, fmt.Errorf("tier: object store URL %q: scheme %q not supported; use file:///abs/dir or s3://bucket/prefix", rawURL, u.Scheme)
	}
}
