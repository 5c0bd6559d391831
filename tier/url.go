package tier

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const urlUsage = "use file:///abs/dir or s3://bucket/prefix"

// Open opens a store from a URL:
//
//	file:///abs/dir       the embedded file store rooted at /abs/dir
//	s3://bucket[/prefix][?endpoint=HOST:PORT&insecure=true&region=R&path-style=true&create=true
//	                     &request-timeout=5s&min-throughput=8MiB]
//
// For s3: endpoint defaults to AWS S3; insecure=true uses plain HTTP;
// path-style overrides S3Config.PathStyle's default; create=true creates a
// missing bucket; request-timeout (a Go duration) and min-throughput
// (bytes per second: a number, or one with a KiB, MiB or GiB suffix) set
// S3Config.Deadline's Base and MinThroughput (default 5s and 8MiB).
// Credentials never come from the URL (a URL with user information is
// refused): they come from the standard AWS chain (S3Config.AccessKey
// has the order: environment, shared credentials file, IAM role). Errors
// show the URL through RedactURL.
func Open(ctx context.Context, rawURL string) (Store, error) {
	loc, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if loc.dir != "" {
		return NewFileStore(loc.dir)
	}
	return NewS3Store(ctx, loc.s3)
}

// location is a parsed store URL: a directory or an S3 config.
type location struct {
	dir string
	s3  S3Config
}

func parseURL(rawURL string) (location, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text would repeat the URL, secrets and all
		}
		return location{}, fmt.Errorf("tier: object store URL %q: %v; %s", RedactURL(rawURL), err, urlUsage)
	}
	shown := RedactURL(rawURL) // never echo a key
	bad := func(format string, args ...any) error {
		return fmt.Errorf("tier: object store URL %q: %s", shown, fmt.Sprintf(format, args...))
	}
	if u.User != nil {
		return location{}, bad("credentials in the URL are not supported; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a shared credentials file or an IAM role (the standard AWS chain)")
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return location{}, bad("a file URL takes no host (%q); use file:///abs/dir", u.Host)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) || u.Opaque != "" {
			return location{}, bad("the path must be absolute, as in file:///var/lib/strata/bucket")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return location{}, bad("a file URL takes no query or fragment")
		}
		return location{dir: filepath.Clean(u.Path)}, nil
	case "s3":
		if u.Host == "" {
			return location{}, bad("no bucket; use s3://bucket/prefix")
		}
		if u.Fragment != "" {
			return location{}, bad("an s3 URL takes no fragment")
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return location{}, bad("query: %v", err)
		}
		cfg := S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
		if cfg.Prefix != "" && ValidateKey(cfg.Prefix) != nil {
			return location{}, bad("prefix %q has an empty, '.' or '..' segment", cfg.Prefix)
		}
		for k, vs := range q {
			if len(vs) != 1 {
				return location{}, bad("parameter %q given %d times", k, len(vs))
			}
			v := vs[0]
			switch k {
			case "endpoint":
				cfg.Endpoint = v
			case "region":
				cfg.Region = v
			case "request-timeout":
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					return location{}, bad("request-timeout=%q is not a positive duration such as 5s or 500ms", v)
				}
				cfg.Deadline.Base = d
			case "min-throughput":
				n, ok := parseBytes(v)
				if !ok || n <= 0 {
					return location{}, bad("min-throughput=%q is not a positive number of bytes per second such as 8MiB or 1048576", v)
				}
				cfg.Deadline.MinThroughput = n
			case "insecure", "create", "path-style":
				b, err := strconv.ParseBool(v)
				if err != nil {
					return location{}, bad("%s=%q is not true or false", k, v)
				}
				switch k {
				case "insecure":
					cfg.Insecure = b
				case "create":
					cfg.CreateBucket = b
				default:
					cfg.PathStyle = &b
				}
			default:
				return location{}, bad("unknown parameter %q (known: endpoint, region, insecure, path-style, create, request-timeout, min-throughput)", k)
			}
		}
		return location{s3: cfg}, nil
	case "":
		return location{}, fmt.Errorf("tier: object store URL %q has no scheme; %s", shown, urlUsage)
	default:
		return location{}, fmt.Errorf("tier: object store URL %q: scheme %q not supported; %s", shown, u.Scheme, urlUsage)
	}
}

// parseBytes parses a byte count: digits, optionally followed by KiB, MiB
// or GiB.
func parseBytes(v string) (int64, bool) {
	mul := int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mul = strings.TrimSuffix(v, u.suffix), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mul {
		return 0, false
	}
	return n * mul, true
}
