package export

import (
	"io"
	"sync"

	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// Parquet's zstd codec in arrow/go v17 builds a new zstd encoder for every
// page it compresses (compress.zstdCodec.EncodeLevel, which the page
// writer always calls): allocating the encoder and its history for every
// page made the export about 20% slower. This package registers, in place of
// it, the same codec with one encoder per level, reused (EncodeAll is safe
// for concurrent use). The bytes it writes are the same zstd frames.
// Arrow's codec registry is process-wide, so this holds for every Parquet
// writer in a process that imports export.

type pooledZstd struct {
	mu   sync.Mutex
	encs map[zstd.EncoderLevel]*zstd.Encoder
}

var (
	zstdDecoder     *zstd.Decoder
	zstdDecoderOnce sync.Once
)

func init() {
	compress.RegisterCodec(compress.Codecs.Zstd, &pooledZstd{encs: map[zstd.EncoderLevel]*zstd.Encoder{}})
}

func zstdLevel(level int) zstd.EncoderLevel {
	if level == compress.DefaultCompressionLevel {
		return zstd.SpeedDefault
	}
	return zstd.EncoderLevelFromZstd(level)
}

func (z *pooledZstd) encoder(level zstd.EncoderLevel) *zstd.Encoder {
	z.mu.Lock()
	defer z.mu.Unlock()
	e, ok := z.encs[level]
	if !ok {
		e, _ = zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(level))
		z.encs[level] = e
	}
	return e
}

func decoder() *zstd.Decoder {
	zstdDecoderOnce.Do(func() { zstdDecoder, _ = zstd.NewReader(nil) })
	return zstdDecoder
}

func (z *pooledZstd) Encode(dst, src []byte) []byte {
	return z.encoder(zstd.SpeedDefault).EncodeAll(src, dst[:0])
}

func (z *pooledZstd) EncodeLevel(dst, src []byte, level int) []byte {
	return z.encoder(zstdLevel(level)).EncodeAll(src, dst[:0])
}

// Decode panics on corrupt input, as arrow's codec does (its page reader
// expects that).
func (z *pooledZstd) Decode(dst, src []byte) []byte {
	out, err := decoder().DecodeAll(src, dst[:0])
	if err != nil {
		panic(err)
	}
	return out
}

func (z *pooledZstd) CompressBound(n int64) int64 {
	extra := ((128 << 10) - n) >> 11
	if n >= (128 << 10) {
		extra = 0
	}
	return n + (n >> 8) + extra
}

type zstdReadCloser struct{ *zstd.Decoder }

func (r zstdReadCloser) Close() error {
	r.Decoder.Close()
	return nil
}

func (z *pooledZstd) NewReader(r io.Reader) io.ReadCloser {
	d, _ := zstd.NewReader(r)
	return zstdReadCloser{d}
}

func (z *pooledZstd) NewWriter(w io.Writer) io.WriteCloser {
	e, _ := zstd.NewWriter(w)
	return e
}

func (z *pooledZstd) NewWriterLevel(w io.Writer, level int) (io.WriteCloser, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstdLevel(level)))
}
