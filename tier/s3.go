package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// S3 part sizes: S3 refuses parts under 5 MiB (but the last) and objects of
// more than 10,000 parts.
const (
	DefaultS3PartSize = 16 << 20
	minS3PartSize     = 5 << 20
)

// S3Config configures an S3Store. Zero fields take the defaults written
// next to them.
type S3Config struct {
	// Endpoint is host[:port], or http://host[:port] / https://host[:port]
	// (the scheme then sets Insecure). Default "s3.amazonaws.com", or
	// "s3.<Region>.amazonaws.com" when Region is set.
	Endpoint string
	// Bucket is required.
	Bucket string
	// Prefix is prepended to every key and stripped from listed keys, so
	// several stores can share a bucket. A trailing '/' is added when
	// missing. Default "" (keys are bucket keys).
	Prefix string
	// Region is the bucket's region. Default "": minio-go asks the bucket
	// for its location once (AWS), MinIO answers "us-east-1".
	Region string
	// AccessKey, SecretKey and SessionToken are explicit (static) keys.
	// Default (both keys empty): the standard AWS chain, in order: the
	// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN; then MinIO's MINIO_ROOT_USER and
	// MINIO_ROOT_PASSWORD), the shared credentials file
	// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, with
	// ~/.aws/config; profile AWS_PROFILE or default), then an IAM role
	// (web identity from AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, a
	// container's credentials endpoint, or the instance's metadata
	// service unless AWS_EC2_METADATA_DISABLED=true); unsigned requests
	// when none has keys. Temporary credentials (session tokens, roles)
	// are renewed before they expire. S3Store.CredentialSource says
	// which source answered. Keys never appear in errors or logs.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Insecure uses plain HTTP (a loopback MinIO). Default false: TLS.
	Insecure bool
	// PathStyle puts the bucket in the path (http://host/bucket/key) rather
	// than in the host name. Default (nil): path style for every endpoint
	// but AWS's, where minio-go picks virtual-host style.
	PathStyle *bool
	// CreateBucket creates the bucket when it is missing (tests, the
	// quickstart). Default false: a missing bucket is an error.
	CreateBucket bool
	// PartSize is the part size of multipart uploads, used for a Put whose
	// body is larger than one part or of unknown size; one part is held in
	// memory per upload. Default DefaultS3PartSize (16 MiB), so an upload
	// of unknown size holds 16 MiB and may reach 160 GiB; minimum 5 MiB.
	PartSize int64
	// Retry is the policy for transient failures (see S3Store). Default
	// DefaultBackoff(); Attempts 1 turns retries off.
	Retry Backoff
	// Deadline bounds every request (each attempt of a retried call):
	// Deadline.Base plus its size at Deadline.MinThroughput. Default
	// Deadline{} (5 s plus 1 s per 8 MiB).
	Deadline Deadline
	// Transport carries the HTTP requests. Default: minio-go's default
	// transport with the timeouts set for a nearby store (dial, TLS
	// handshake and response header each Deadline.Base, where minio-go
	// waits up to a minute for a header; idle connections closed after
	// IdleConnTimeout, before a NAT or load balancer forgets them), owned
	// by the store (Close closes its idle connections). A Transport given
	// here is used as it is; the request deadlines apply all the same.
	Transport http.RoundTripper
}

// IdleConnTimeout is how long the store's own transport keeps an idle
// connection: 30 s, under the idle timeouts of common NATs and load
// balancers (60 s and more), which drop a connection's state silently, so
// that a pooled connection is closed before it can go silent.
const IdleConnTimeout = 30 * time.Second

// S3Store is a Store on S3 or MinIO through minio-go.
//
// Requests: Get, GetRange and Stat are one GET or HEAD each; List pages
// through ListObjectsV2. A Put whose size is known and at most PartSize,
// and every conditional put, is a single PUT. A Put of unknown size first
// reads up to PartSize bytes: a body that ends there goes as a single PUT,
// a longer one as a multipart upload. Conditional puts use
// If-None-Match: * (PutIfAbsent) and If-Match: <etag> (PutIfMatch) and are
// never multipart (conditional multipart completion is not supported
// everywhere); a conditional body of unknown size is buffered in memory.
//
// Deadlines: every request (each attempt of a retried call) gets
// S3Config.Deadline: Base plus its size at MinThroughput, counted from its
// start until its answer is complete (for Get and GetRange, until the body
// is read: read it promptly). A Get's deadline is Base until the answer's
// header, then again Base plus the object's size; a List's is Base for
// each page (the clock stops while fn runs); a Put of unknown size gets
// 2*Base plus one part's worth after every read of its body (the clock
// stops while the body is read). A request past its deadline is canceled
// and fails with a *TimeoutError (ErrTimeout, retryable); so does one that
// hits the transport's response header timeout. For a write, that outcome
// is unknown, and a conditional put that timed out is never retried by
// the store nor reported as success or ErrPreconditionFailed: the caller
// reads the object back.
//
// Retries: minio-go's own retries are off; the store retries with
// S3Config.Retry, and only where a repeat is safe. Get, GetRange, Stat,
// List (resuming after the last key delivered) and Delete are retried on
// any retryable error. Put is retried when its body can be rewound (an
// io.Seeker, rewound to where it was when Put was called, or a body the
// store buffered). A conditional put is retried only after errors that
// prove the first attempt had no effect (the connection was refused, or
// the store answered 503 SlowDown or 429): after an ambiguous failure (a
// timeout, a reset connection, a 500) a repeat could report
// ErrPreconditionFailed for a write that in fact applied, so the store
// returns the retryable error instead and the caller decides by reading
// the object back (ManifestStore does, by its update ID). Note that
// minio-go, even with its retries off, pauses up to 200 ms (its
// DefaultRetryUnit, jittered) after a failure it deems retryable before
// returning it, so the waits between attempts are that plus the Backoff's.
//
// Errors: NoSuchKey and 404 map to ErrNotFound (but a missing bucket does
// not: it is a final StatusError); 412 PreconditionFailed and 409
// ConditionalRequestConflict (a concurrent conditional write of the key was
// in progress) map to ErrPreconditionFailed, and so does a PutIfMatch on a
// missing object (S3 answers 404). Everything else is a *StatusError.
//
// Safe for concurrent use. Close is idempotent; the store must not be used
// after it.
type S3Store struct {
	client    *minio.Client
	core      minio.Core // the same client's single-request calls
	bucket    string
	prefix    string
	partSize  int64
	retry     Backoff
	deadline  Deadline
	transport *http.Transport // ours to close; nil when the caller gave one
	closeOnce sync.Once
	creds     *credSource // the source of the credentials in use
}

var (
	_ Store     = (*S3Store)(nil)
	_ Deadliner = (*S3Store)(nil)
)

// normalize fills defaults and checks the config.
func (cfg S3Config) normalize() (S3Config, error) {
	if cfg.Bucket == "" {
		return cfg, errors.New("tier: s3 store: no bucket")
	}
	switch {
	case strings.HasPrefix(cfg.Endpoint, "http://"):
		cfg.Endpoint, cfg.Insecure = strings.TrimPrefix(cfg.Endpoint, "http://"), true
	case strings.HasPrefix(cfg.Endpoint, "https://"):
		cfg.Endpoint, cfg.Insecure = strings.TrimPrefix(cfg.Endpoint, "https://"), false
	}
	cfg.Endpoint = strings.TrimSuffix(cfg.Endpoint, "/")
	if strings.Contains(cfg.Endpoint, "/") {
		return cfg, fmt.Errorf("tier: s3 store: endpoint %q: want host[:port], without a path", cfg.Endpoint)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "s3.amazonaws.com"
		if cfg.Region != "" {
			cfg.Endpoint = "s3." + cfg.Region + ".amazonaws.com"
		}
	}
	if cfg.Prefix != "" {
		if strings.HasPrefix(cfg.Prefix, "/") {
			return cfg, fmt.Errorf("tier: s3 store: prefix %q starts with '/'", cfg.Prefix)
		}
		if !strings.HasSuffix(cfg.Prefix, "/") {
			cfg.Prefix += "/"
		}
		if err := ValidateKey(strings.TrimSuffix(cfg.Prefix, "/")); err != nil {
			return cfg, fmt.Errorf("tier: s3 store: prefix: %w", err)
		}
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultS3PartSize
	case cfg.PartSize < minS3PartSize:
		return cfg, fmt.Errorf("tier: s3 store: PartSize %d is under S3's minimum of 5 MiB", cfg.PartSize)
	}
	cfg.Retry = cfg.Retry.withDefaults()
	cfg.Deadline = cfg.Deadline.withDefaults()
	return cfg, nil
}

// NewS3Store connects to the bucket, creating it if CreateBucket is set,
// and fails if it cannot be reached or does not exist.
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupPath
	switch {
	case cfg.PathStyle != nil && !*cfg.PathStyle:
		lookup = minio.BucketLookupDNS
	case cfg.PathStyle == nil && strings.HasSuffix(cfg.Endpoint, "amazonaws.com"):
		lookup = minio.BucketLookupAuto
	}
	s := &S3Store{bucket: cfg.Bucket, prefix: cfg.Prefix, partSize: cfg.PartSize, retry: cfg.Retry, deadline: cfg.Deadline, creds: &credSource{}}
	transport := cfg.Transport
	if transport == nil {
		if s.transport, err = minio.DefaultTransport(!cfg.Insecure); err != nil {
			return nil, fmt.Errorf("tier: s3 store %s: %w", cfg.Endpoint, err)
		}
		// A nearby store dials, shakes hands and starts answering in
		// milliseconds: waiting longer than a request's Base is waiting
		// on a dead connection.
		s.transport.DialContext = (&net.Dialer{Timeout: cfg.Deadline.Base, KeepAlive: 15 * time.Second}).DialContext
		s.transport.TLSHandshakeTimeout = cfg.Deadline.Base
		s.transport.ResponseHeaderTimeout = cfg.Deadline.Base
		s.transport.IdleConnTimeout = IdleConnTimeout
		transport = s.transport
	}
	s.client, err = minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentialsFor(cfg, s.creds),
		Secure:       !cfg.Insecure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    transport,
		MaxRetries:   1, // one try per call: we retry ourselves, where it is safe
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("tier: s3 store %s: %w", cfg.Endpoint, err)
	}
	s.core = minio.Core{Client: s.client}
	var exists bool
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		a := startAttempt(ctx, s.deadline.For(0))
		defer a.done()
		var err error
		exists, err = s.client.BucketExists(a.ctx, cfg.Bucket)
		return s.attemptErr(a, "bucket-exists", cfg.Bucket, err)
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("tier: s3 store %s: checking bucket %q: %w", cfg.Endpoint, cfg.Bucket, err)
	}
	if !exists {
		if !cfg.CreateBucket {
			s.Close()
			return nil, fmt.Errorf("tier: s3 store %s: bucket %q does not exist; create it first", cfg.Endpoint, cfg.Bucket)
		}
		err := s.retry.Do(ctx, func(ctx context.Context) error {
			a := startAttempt(ctx, s.deadline.For(0))
			defer a.done()
			err := s.client.MakeBucket(a.ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
			if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
				return nil // created meanwhile by another process
			}
			return s.attemptErr(a, "create-bucket", cfg.Bucket, err)
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("tier: s3 store %s: create bucket %q: %w", cfg.Endpoint, cfg.Bucket, err)
		}
	}
	return s, nil
}

// CredentialSource names where the credentials in use came from: one of
// the Creds* constants (CredsAnonymous when no source had keys). It names
// the source, never a key.
func (s *S3Store) CredentialSource() string { return s.creds.get() }

// Bucket is the store's bucket.
func (s *S3Store) Bucket() string { return s.bucket }

// Prefix is the prefix of every key in the bucket ("" or ending in '/').
func (s *S3Store) Prefix() string { return s.prefix }

// RequestTimeout implements Deadliner: the deadline of a request that
// moves size bytes.
func (s *S3Store) RequestTimeout(size int64) time.Duration { return s.deadline.For(size) }

// Close implements Store: it closes the idle connections of the store's
// own transport. It is idempotent.
func (s *S3Store) Close() error {
	s.closeOnce.Do(func() {
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
	})
	return nil
}

// key maps a key to its object name.
func (s *S3Store) key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if len(s.prefix)+len(key) > MaxKeyLen {
		return "", fmt.Errorf("%w %q: with the prefix %q longer than %d bytes", ErrInvalidKey, key, s.prefix, MaxKeyLen)
	}
	return s.prefix + key, nil
}

// mapErr maps a minio-go error to the package's sentinels or a StatusError.
func (s *S3Store) mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("tier: %s %s: %w", op, key, err)
	}
	r := minio.ToErrorResponse(err)
	switch {
	case r.Code == "NoSuchBucket":
		return &StatusError{Op: op, Key: key, Status: r.StatusCode, Code: r.Code, Err: fmt.Errorf("bucket %q does not exist: %w", s.bucket, err)}
	case r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound:
		return fmt.Errorf("tier: %s %s: %w", op, key, ErrNotFound)
	case r.Code == "PreconditionFailed" || r.StatusCode == http.StatusPreconditionFailed || r.Code == "ConditionalRequestConflict":
		return fmt.Errorf("tier: %s %s: %w (%s)", op, key, ErrPreconditionFailed, r.Code)
	}
	return &StatusError{Op: op, Key: key, Status: r.StatusCode, Code: r.Code, Err: err}
}

// attemptErr maps the error of a request made under attempt a: a request
// canceled by its deadline, or one that hit a transport timeout while the
// caller's context is alive, is a *TimeoutError (unless the store had
// answered with a status, which then decides); everything else as mapErr.
func (s *S3Store) attemptErr(a *attempt, op, key string, err error) error {
	if err == nil {
		return nil
	}
	if a.parent.Err() == nil && minio.ToErrorResponse(err).StatusCode == 0 {
		if a.timedOut() {
			return a.timeoutErr(op, key)
		}
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &ne) && ne.Timeout() && !(errors.As(err, &oe) && oe.Op == "dial") {
			// The response header timeout, or a read or write that
			// timed out. A dial timeout is not: nothing was sent.
			return &TimeoutError{Op: op, Key: key, Err: err}
		}
	}
	return s.mapErr(op, key, err)
}

// final marks an error that must end a retry loop although it may be
// retryable; do unwraps it again.
type final struct{ err error }

func (e *final) Error() string { return e.err.Error() }

// do runs fn under the retry policy. fn returns &final{err} to stop with
// err.
func (s *S3Store) do(ctx context.Context, fn func(ctx context.Context) error) error {
	err := s.retry.Do(ctx, fn)
	var f *final
	if errors.As(err, &f) {
		return f.err
	}
	return err
}

func info(key string, o minio.ObjectInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: o.Size, ETag: o.ETag, LastModified: o.LastModified}
}

// Get implements BucketReader: one GET, whose body is the version that
// was current when it was sent. A failure while reading the body is not
// retried; read the rest with GetRange.
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	var (
		body io.ReadCloser
		oi   ObjectInfo
	)
	err = s.do(ctx, func(ctx context.Context) error {
		a := startAttempt(ctx, s.deadline.For(0))
		rc, st, _, err := s.core.GetObject(a.ctx, s.bucket, k, minio.GetObjectOptions{})
		if err != nil {
			a.done()
			return s.attemptErr(a, "get", key, err)
		}
		a.reset(s.deadline.For(st.Size)) // now the body's turn
		body, oi = &timedBody{rc: rc, a: a, op: "get", key: key}, info(key, st)
		return nil
	})
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return body, oi, nil
}

var emptyBody = io.NopCloser(bytes.NewReader(nil))

// GetRange implements BucketReader: one ranged GET (plus a HEAD when the
// range starts at or past the end, or is empty).
func (s *S3Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(key, off, length); err != nil {
		return nil, err
	}
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	var body io.ReadCloser
	if length > 0 {
		err = s.do(ctx, func(ctx context.Context) error {
			opts := minio.GetObjectOptions{}
			if err := opts.SetRange(off, off+length-1); err != nil {
				return &final{err}
			}
			a := startAttempt(ctx, s.deadline.For(length))
			rc, _, _, err := s.core.GetObject(a.ctx, s.bucket, k, opts)
			if err != nil {
				a.done()
				if minio.ToErrorResponse(err).Code == "InvalidRange" {
					return nil // decided below
				}
				return s.attemptErr(a, "get", key, err)
			}
			body = &timedBody{rc: rc, a: a, op: "get", key: key}
			return nil
		})
		if err != nil || body != nil {
			return body, err
		}
	}
	// An empty range, or S3 refused one starting at or past the end
	// (416): the contract reads nothing there and fails past it.
	st, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if off > st.Size {
		return nil, rangeErr(key, off, length, st.Size)
	}
	return emptyBody, nil
}

// Stat implements BucketReader.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	var oi ObjectInfo
	err = s.do(ctx, func(ctx context.Context) error {
		a := startAttempt(ctx, s.deadline.For(0))
		defer a.done()
		st, err := s.client.StatObject(a.ctx, s.bucket, k, minio.StatObjectOptions{})
		if err != nil {
			return s.attemptErr(a, "stat", key, err)
		}
		oi = info(key, st)
		return nil
	})
	return oi, err
}

// List implements BucketReader. S3 lists in lexical (UTF-8 byte) order. A
// retried page resumes after the last key delivered, so fn sees each key
// once.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !listablePrefix(prefix) {
		return nil
	}
	after := ""
	return s.do(ctx, func(ctx context.Context) error {
		// A deadline of Base per page: reset after each key, stopped
		// while fn runs.
		a := startAttempt(ctx, s.deadline.For(0))
		defer a.done() // also stops the listing goroutine when we return early
		for o := range s.client.ListObjectsIter(a.ctx, s.bucket, minio.ListObjectsOptions{
			Prefix: s.prefix + prefix, Recursive: true, StartAfter: after,
		}) {
			if o.Err != nil {
				return s.attemptErr(a, "list", prefix, o.Err)
			}
			a.pause()
			if err := fn(info(strings.TrimPrefix(o.Key, s.prefix), o)); err != nil {
				return &final{err}
			}
			a.reset(s.deadline.For(0))
			after = o.Key
		}
		if a.timedOut() {
			return a.timeoutErr("list", prefix) // the listing ends quietly when its context does
		}
		return ctx.Err()
	})
}

// put uploads one object; cond sets the precondition headers.
func (s *S3Store) put(ctx context.Context, op, key string, r io.Reader, size int64, cond func(*minio.PutObjectOptions)) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: uint64(s.partSize)}
	if cond != nil {
		cond(&opts)
		opts.DisableMultipart = true
	}
	if size < 0 {
		// Learn the size if the body fits one part (all of it for a
		// conditional put): one PUT instead of a multipart upload's three
		// requests, and a body that can be sent again.
		var buf bytes.Buffer
		src := r
		if cond == nil {
			src = io.LimitReader(r, s.partSize)
		}
		if _, err := copyBody(ctx, op, key, &buf, src, -1); err != nil {
			return ObjectInfo{}, err
		}
		if cond != nil || int64(buf.Len()) < s.partSize {
			r, size = bytes.NewReader(buf.Bytes()), int64(buf.Len())
		} else {
			r = io.MultiReader(bytes.NewReader(buf.Bytes()), r)
		}
	}
	var body io.Reader
	sized := sizedBody{ctx: ctx, op: op, key: key, r: r, size: size}
	rewindable := false
	if size < 0 {
		body = onlyReader{ctxReader{ctx, r}} // a multipart stream
	} else if sk, ok := r.(io.Seeker); ok {
		if base, err := sk.Seek(0, io.SeekCurrent); err == nil {
			body, rewindable = &seekableBody{sizedBody: sized, seeker: sk, base: base}, true
		}
	}
	if body == nil {
		body = &sized
	}
	var oi ObjectInfo
	n := 0
	err = s.do(ctx, func(ctx context.Context) error {
		if n++; n > 1 {
			if _, err := body.(io.Seeker).Seek(0, io.SeekStart); err != nil {
				return &final{fmt.Errorf("tier: %s %s: rewinding the body: %w", op, key, err)}
			}
		}
		var a *attempt
		b := body
		if size >= 0 {
			a = startAttempt(ctx, s.deadline.For(size))
		} else {
			// A stream: after each read of the body, time for one part
			// to go out and the upload to complete.
			d := s.deadline.For(s.partSize) + s.deadline.Base
			a = startAttempt(ctx, d)
			b = onlyReader{&pacedReader{r: body, a: a, d: d}}
		}
		up, err := s.client.PutObject(a.ctx, s.bucket, k, b, size, opts)
		a.done()
		if err != nil {
			err = s.attemptErr(a, op, key, err)
			switch {
			case cond != nil && errors.Is(err, ErrNotFound):
				// If-Match on a missing object: S3 answers 404; the
				// contract says precondition failed.
				return fmt.Errorf("tier: %s %s: object missing: %w", op, key, ErrPreconditionFailed)
			case !rewindable, cond != nil && !notApplied(err):
				return &final{err}
			}
			return err
		}
		oi = ObjectInfo{Key: key, Size: up.Size, ETag: up.ETag, LastModified: up.LastModified}
		return nil
	})
	return oi, err
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
	if _, err := s.key(key); err != nil {
		return ObjectInfo{}, err
	}
	if etag == "" || etag == "*" {
		return ObjectInfo{}, fmt.Errorf("tier: put-if-match %s: etag %q matches no version: %w", key, etag, ErrPreconditionFailed)
	}
	return s.put(ctx, "put-if-match", key, r, size, func(o *minio.PutObjectOptions) { o.SetMatchETag(etag) })
}

// Delete implements Store.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	return s.do(ctx, func(ctx context.Context) error {
		a := startAttempt(ctx, s.deadline.For(0))
		defer a.done()
		err := s.attemptErr(a, "delete", key, s.client.RemoveObject(a.ctx, s.bucket, k, minio.RemoveObjectOptions{}))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}

// timedBody is the body of a Get or GetRange, read under its attempt's
// deadline: a read cut off by it fails with a *TimeoutError. Close ends
// the attempt.
type timedBody struct {
	rc      io.ReadCloser
	a       *attempt
	op, key string
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && b.a.timedOut() {
		err = b.a.timeoutErr(b.op, b.key)
	}
	return n, err
}

func (b *timedBody) Close() error {
	err := b.rc.Close()
	b.a.done()
	return err
}

// pacedReader is the body of a streamed upload: the clock of its attempt
// stops while the caller's reader is read, and restarts with d after.
type pacedReader struct {
	r io.Reader
	a *attempt
	d time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	p.a.pause()
	n, err := p.r.Read(b)
	p.a.reset(p.d)
	return n, err
}
