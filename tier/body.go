package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrSizeMismatch is wrapped by the error of a put whose body is shorter or
// longer than the size it declared.
var ErrSizeMismatch = errors.New("tier: body length differs from the declared size")

// copyBody copies the body of a put to dst: exactly size bytes when size >=
// 0 (a longer or shorter body is an error), everything when size is -1. It
// stops when ctx ends.
func copyBody(ctx context.Context, op, key string, dst io.Writer, r io.Reader, size int64) (int64, error) {
	src := ctxReader{ctx, r}
	if size < 0 {
		n, err := io.Copy(dst, src)
		if err != nil {
			return n, bodyErr(ctx, op, key, err)
		}
		return n, nil
	}
	n, err := io.CopyN(dst, src, size)
	if errors.Is(err, io.EOF) {
		return n, fmt.Errorf("tier: %s %s: body ended after %d bytes, size says %d: %w", op, key, n, size, ErrSizeMismatch)
	}
	if err != nil {
		return n, bodyErr(ctx, op, key, err)
	}
	// One more byte must not exist.
	if extra, _ := io.CopyN(io.Discard, src, 1); extra > 0 {
		return n, fmt.Errorf("tier: %s %s: body is longer than the %d bytes size says: %w", op, key, size, ErrSizeMismatch)
	}
	return n, ctx.Err()
}

func bodyErr(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("tier: %s %s: reading the body: %w", op, key, err)
}

// ctxReader stops a body copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sizedBody hands minio-go exactly size bytes of a body, and fails the
// upload with ErrSizeMismatch if the body is shorter or longer. It stops
// when ctx ends. It has no Seek method: see seekableBody.
type sizedBody struct {
	ctx     context.Context
	op, key string
	r       io.Reader
	size, n int64 // declared size, bytes handed out
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.n >= b.size {
		// All declared bytes are out: the body must end here.
		var one [1]byte
		for range 8 { // a reader may return (0, nil); do not spin forever
			k, err := b.r.Read(one[:])
			if k > 0 {
				return 0, fmt.Errorf("tier: %s %s: body is longer than the %d bytes size says: %w", b.op, b.key, b.size, ErrSizeMismatch)
			}
			if err != nil {
				break
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.size-b.n {
		p = p[:b.size-b.n]
	}
	k, err := b.r.Read(p)
	b.n += int64(k)
	if errors.Is(err, io.EOF) && b.n < b.size {
		return k, fmt.Errorf("tier: %s %s: body ended after %d bytes, size says %d: %w", b.op, b.key, b.n, b.size, ErrSizeMismatch)
	}
	if errors.Is(err, io.EOF) {
		err = nil // the probe above decides the end
	}
	return k, err
}

// seekableBody is a sizedBody over a body that can be rewound, to where it
// was when the put began (offset 0 for minio-go). It has Read and Seek
// only: minio-go would close an io.Closer, and read an io.ReaderAt from its
// absolute offset 0.
type seekableBody struct {
	sizedBody
	seeker io.Seeker
	base   int64 // the body's offset when the put began
}

func (b *seekableBody) Seek(off int64, whence int) (int64, error) {
	if off != 0 || whence != io.SeekStart {
		return 0, fmt.Errorf("tier: %s %s: body seek to %d/%d not supported", b.op, b.key, off, whence)
	}
	if _, err := b.seeker.Seek(b.base, io.SeekStart); err != nil {
		return 0, err
	}
	b.n = 0
	return 0, nil
}

// onlyReader hides everything of a body but Read.
type onlyReader struct{ r io.Reader }

func (r onlyReader) Read(p []byte) (int, error) { return r.r.Read(p) }
