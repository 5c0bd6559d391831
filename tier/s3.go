package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3Store.
type S3Config struct {
	Endpoint  string // host:port; required ("s3.amazonaws.com" for AWS)
	Bucket    string // required
	Prefix    string // prepended to every key, e.g. "strata/"; "" for none
	Region    string // optional; "us-east-1" when empty and needed
	AccessKey string // default $AWS_ACCESS_KEY_ID
	SecretKey string // default $AWS_SECRET_ACCESS_KEY
	// SessionToken: default $AWS_SESSION_TOKEN.
	SessionToken string
	Insecure     bool // plain HTTP (loopback MinIO); default false (TLS)
	// PathStyle forces path-style requests (bucket in the path), which
	// MinIO needs. Default: path style for every endpoint but AWS's.
	PathStyle    *bool
	CreateBucket bool    // create the bucket when missing (tests, quickstart)
	Retry        Backoff // retry policy for idempotent calls; default DefaultBackoff()
}

// S3Store is a Store on S3 or MinIO through minio-go.
//
// Conditional writes use If-None-Match: * (PutIfAbsent) and If-Match: etag
// (PutIfMatch), always as a single PUT. Idempotent calls (Get, GetRange,
// Stat, List, Delete, and Put with a seekable body) are retried on
// transient errors with Backoff; conditional puts are tried once: after an
// ambiguous failure the caller must read the object back (see
// ManifestStore), since a retry could report a precondition failure for a
// write that in fact applied.
type S3Store struct {
	client *minio.Client
	bucket string
	prefix string
	retry  Backoff
}

var _ Store = (*S3Store)(nil)

// NewS3Store connects to the bucket (creating it if CreateBucket) and
// checks that it exists.
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("tier: s3 store: Endpoint and Bucket are required")
	}
	if cfg.AccessKey == "" {
		cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if cfg.SessionToken == "" {
		cfg.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry = DefaultBackoff()
	}
	lookup := minio.BucketLookupPath
	if cfg.PathStyle != nil && !*cfg.PathStyle || cfg.PathStyle == nil && strings.HasSuffix(cfg.Endpoint, "amazonaws.com") {
		lookup = minio.BucketLookupAuto
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       !cfg.Insecure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1, // we retry ourselves, with jitter, only where it is safe
	})
	if err != nil {
		return nil, fmt.Errorf("tier: s3 store %s: %w", cfg.Endpoint, err)
	}
	s := &S3Store{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix, retry: cfg.Retry}
	var exists bool
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		var err error
		exists, err = client.BucketExists(ctx, cfg.Bucket)
		return s.mapErr("bucket-exists", cfg.Bucket, err)
	})
	if err != nil {
		return nil, fmt.Errorf("tier: s3 store %s/%s: cannot reach the bucket: %w", cfg.Endpoint, cfg.Bucket, err)
	}
	if !exists {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("tier: s3 store %s: bucket %q does not exist; create it first", cfg.Endpoint, cfg.Bucket)
		}
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			if r := minio.ToErrorResponse(err); r.Code != "BucketAlreadyOwnedByYou" {
				return nil, fmt.Errorf("tier: s3 store: create bucket %q: %w", cfg.Bucket, err)
			}
		}
	}
	return s, nil
}

// Close implements Store.
func (s *S3Store) Close() error { return nil }

func (s *S3Store) key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// mapErr maps minio-go errors to the package's sentinels.
func (s *S3Store) mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("tier: %s %s: %w", op, key, err)
	}
	r := minio.ToErrorResponse(err)
	switch {
	case r.Code == "NoSuchKey" || r.Code == "NoSuchBucket" || r.StatusCode == http.StatusNotFound:
		return fmt.Errorf("tier: %s %s: %w (%s)", op, key, ErrNotFound, r.Code)
	case r.Code == "PreconditionFailed" || r.StatusCode == http.StatusPreconditionFailed ||
		r.Code == "ConditionalRequestConflict" || r.StatusCode == http.StatusConflict:
		return fmt.Errorf("tier: %s %s: %w", op, key, ErrPreconditionFailed)
	}
	return &StatusError{Op: op, Key: key, Status: r.StatusCode, Code: r.Code, Err: err}
}

// Get implements BucketReader.
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	var (
		obj  *minio.Object
		info ObjectInfo
	)
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		o, err := s.client.GetObject(ctx, s.bucket, k, minio.GetObjectOptions{})
		if err != nil {
			return s.mapErr("get", key, err)
		}
		st, err := o.Stat()
		if err != nil {
			o.Close()
			return s.mapErr("get", key, err)
		}
		obj, info = o, ObjectInfo{Key: key, Size: st.Size, ETag: st.ETag, LastModified: st.LastModified}
		return nil
	})
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return obj, info, nil
}

// GetRange implements BucketReader.
func (s *S3Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("tier: get %s: invalid range [%d,+%d)", key, off, length)
	}
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var obj *minio.Object
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(off, off+length-1); err != nil {
			return err
		}
		o, err := s.client.GetObject(ctx, s.bucket, k, opts)
		if err != nil {
			return s.mapErr("get", key, err)
		}
		if _, err := o.Stat(); err != nil {
			o.Close()
			if minio.ToErrorResponse(err).Code == "InvalidRange" {
				obj = nil
				return nil // decided below
			}
			return s.mapErr("get", key, err)
		}
		obj = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	if obj == nil {
		// S3 refuses a range that starts at the end; the contract gives an
		// empty read there and an error past it.
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off == info.Size {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, fmt.Errorf("tier: get %s: range [%d,+%d) invalid for an object of %d bytes", key, off, length, info.Size)
	}
	return obj, nil
}

// Stat implements BucketReader.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	var info ObjectInfo
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		st, err := s.client.StatObject(ctx, s.bucket, k, minio.StatObjectOptions{})
		if err != nil {
			return s.mapErr("stat", key, err)
		}
		info = ObjectInfo{Key: key, Size: st.Size, ETag: st.ETag, LastModified: st.LastModified}
		return nil
	})
	return info, err
}

// List implements BucketReader. S3 lists in lexical key order.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	after := ""
	return s.retry.Do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{
			Prefix: s.prefix + prefix, Recursive: true, StartAfter: after,
		}) {
			if o.Err != nil {
				return s.mapErr("list", prefix, o.Err)
			}
			key := strings.TrimPrefix(o.Key, s.prefix)
			if err := fn(ObjectInfo{Key: key, Size: o.Size, ETag: o.ETag, LastModified: o.LastModified}); err != nil {
				return &stopList{err}
			}
			after = o.Key // a retry resumes after the last key delivered
		}
		return nil
	})
}

// stopList carries fn's error out of the retry loop untouched.
type stopList struct{ err error }

func (e *stopList) Error() string { return e.err.Error() }
func (e *stopList) Unwrap() error { return e.err }

// put uploads one object. Conditional puts go as one PUT and are not
// retried; plain puts are retried when the body can be rewound.
func (s *S3Store) put(ctx context.Context, op, key string, r io.Reader, size int64, cond func(*minio.PutObjectOptions)) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if cond != nil {
		cond(&opts)
		opts.DisableMultipart = true
		if size < 0 {
			data, err := io.ReadAll(r)
			if err != nil {
				return ObjectInfo{}, fmt.Errorf("tier: %s %s: %w", op, key, err)
			}
			r, size = bytes.NewReader(data), int64(len(data))
		}
	}
	var info ObjectInfo
	attempt := func(ctx context.Context) error {
		up, err := s.client.PutObject(ctx, s.bucket, k, r, size, opts)
		if err != nil {
			err = s.mapErr(op, key, err)
			if cond != nil && errors.Is(err, ErrNotFound) {
				// If-Match on a missing object: S3 answers 404, the
				// contract says precondition failed.
				return fmt.Errorf("tier: %s %s: object missing: %w", op, key, ErrPreconditionFailed)
			}
			return err
		}
		info = ObjectInfo{Key: key, Size: up.Size, ETag: up.ETag, LastModified: up.LastModified}
		return nil
	}
	seeker, rewindable := r.(io.Seeker)
	if cond != nil || !rewindable {
		return info, attempt(ctx)
	}
	var once sync.Once
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		first := false
		once.Do(func() { first = true })
		if !first {
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
		return attempt(ctx)
	})
	return info, err
}

// Put implements Store.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.put(ctx, "put", key, r, size, nil)
}

// PutIfAbsent implements Store.
func (s *S3Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.put(ctx, "put-if-absent", key, r, size, func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") })
}

// PutIfMatch implements Store.
func (s *S3Store) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	if etag == "" {
		return ObjectInfo{}, fmt.Errorf("tier: put-if-match %s: empty etag: %w", key, ErrPreconditionFailed)
	}
	return s.put(ctx, "put-if-match", key, r, size, func(o *minio.PutObjectOptions) { o.SetMatchETag(etag) })
}

// Delete implements Store.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	return s.retry.Do(ctx, func(ctx context.Context) error {
		err := s.mapErr("delete", key, s.client.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}
