package segment

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sort"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Version is the segment format version this build writes and the newest it
// reads. Readers reject a larger version; a change that old readers could
// misread must bump it (see docs/segment-format.md).
const Version = 1

const (
	headerMagic  = "STRSEG" // + u16 version = 8 bytes
	trailerMagic = "STRTRL01"
	headerLen    = 8
	blockHdrLen  = 16 // codec u8, reserved [3]u8, raw len u32, comp len u32, crc u32
	trailerLen   = 32 // footer pos u64, footer len u32, footer crc u32, version u16, reserved u16, reserved u32, magic [8]
	// tailRead is what Open reads first from the end of an object: the
	// trailer and, for segments of up to ~1,000 blocks, the whole footer.
	tailRead = 64 << 10
	// maxBlockRaw bounds a block's declared uncompressed size.
	maxBlockRaw = 64 << 20
	// maxFooterLen bounds a footer's declared size.
	maxFooterLen = 64 << 20
	footerFixed  = 8*5 + 1 + 4 // first, last, min ts, max ts, count, codec, block count
	blockEntry   = 8 * 6       // pos, len, first, last, records, running max ts
)

// ErrUnsupportedVersion is wrapped when a segment was written by a newer
// format version.
var ErrUnsupportedVersion = errors.New("segment: unsupported format version")

// ErrNeedMore is wrapped by ParseTail when the tail it was given is too
// short to hold the footer; NeedMoreError.Need says how many bytes are.
var ErrNeedMore = errors.New("segment: tail too short")

// NeedMoreError carries how many tail bytes ParseTail needs.
type NeedMoreError struct{ Need int64 }

func (e *NeedMoreError) Error() string { return fmt.Sprintf("segment: need the last %d bytes", e.Need) }
func (e *NeedMoreError) Unwrap() error { return ErrNeedMore }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// blockCRC covers the block header's first 12 bytes and the payload.
func blockCRC(hdr, payload []byte) uint32 {
	return crc32.Update(crc(hdr[:12]), castagnoli, payload)
}

// Codec is a block compression codec.
type Codec uint8

// Codecs. The zero value is zstd, the default.
const (
	CodecZstd Codec = 0
	CodecS2   Codec = 1
	CodecNone Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecZstd:
		return "zstd"
	case CodecS2:
		return "s2"
	case CodecNone:
		return "none"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec parses "zstd", "s2" or "none".
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "zstd", "":
		return CodecZstd, nil
	case "s2":
		return CodecS2, nil
	case "none":
		return CodecNone, nil
	}
	return 0, fmt.Errorf("segment: unknown codec %q: use zstd, s2 or none", s)
}

var (
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
)

// encoder is shared: EncodeAll is safe for concurrent use.
func encoder() *zstd.Encoder {
	zstdEncOnce.Do(func() {
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false)) // blocks carry their own CRC32C
	})
	return zstdEnc
}

// decoder is shared: DecodeAll is safe for concurrent use.
func decoder() *zstd.Decoder {
	zstdDecOnce.Do(func() {
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxBlockRaw))
	})
	return zstdDec
}

func compress(c Codec, dst, src []byte) []byte {
	switch c {
	case CodecZstd:
		return encoder().EncodeAll(src, dst)
	case CodecS2:
		return s2.Encode(dst[:cap(dst)], src)
	default:
		return append(dst, src...)
	}
}

func decompress(c Codec, src []byte, rawLen int) ([]byte, error) {
	switch c {
	case CodecZstd:
		out, err := decoder().DecodeAll(src, make([]byte, 0, rawLen))
		if err != nil {
			return nil, corruptf("zstd: %v", err)
		}
		return out, nil
	case CodecS2:
		n, err := s2.DecodedLen(src)
		if err != nil || n != rawLen {
			return nil, corruptf("s2: decoded length %d, want %d (%v)", n, rawLen, err)
		}
		out, err := s2.Decode(make([]byte, rawLen), src)
		if err != nil {
			return nil, corruptf("s2: %v", err)
		}
		return out, nil
	case CodecNone:
		return src, nil
	}
	return nil, corruptf("unknown codec %d", c)
}

// WriterOptions configures a Writer.
type WriterOptions struct {
	Codec     Codec // default zstd (the zero value)
	BlockSize int   // target uncompressed bytes per block; default 1 MiB
}

// BlockInfo is one block's entry in the footer: the sparse offset index
// (position -> first/last offset) and the time index (running max
// timestamp up to and including this block).
type BlockInfo struct {
	Pos, Len                int64 // byte range of the block, header included
	FirstOffset, LastOffset int64
	Records                 int64
	MaxTimestamp            int64 // max timestamp of this and every earlier block
}

// Footer describes a whole segment.
type Footer struct {
	Version                    int
	Codec                      Codec
	FirstOffset, LastOffset    int64
	MinTimestamp, MaxTimestamp int64
	RecordCount                int64
	Blocks                     []BlockInfo
}

// Writer streams batches into a segment. It buffers at most one block. Not
// safe for concurrent use.
type Writer struct {
	w    io.Writer
	opts WriterOptions
	n    int64
	err  error

	raw     []byte // current block, uncompressed
	comp    []byte // scratch for the compressed block
	cur     BlockInfo
	footer  Footer
	lastOff int64
	maxTS   int64
}

// NewWriter returns a Writer that writes the header lazily on first output.
func NewWriter(w io.Writer, opts WriterOptions) *Writer {
	if opts.BlockSize <= 0 {
		opts.BlockSize = 1 << 20
	}
	sw := &Writer{w: w, opts: opts, lastOff: -1, maxTS: math.MinInt64}
	sw.footer = Footer{Version: Version, Codec: opts.Codec, FirstOffset: -1, LastOffset: -1,
		MinTimestamp: math.MaxInt64, MaxTimestamp: math.MinInt64}
	hdr := make([]byte, 0, headerLen)
	hdr = append(hdr, headerMagic...)
	hdr = binary.LittleEndian.AppendUint16(hdr, Version)
	sw.write(hdr)
	sw.cur.FirstOffset = -1
	return sw
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	w.err = err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Append adds a batch. Offsets must strictly increase across batches.
func (w *Writer) Append(b *Batch) error {
	if w.err != nil {
		return w.err
	}
	if len(b.Records) == 0 {
		return errors.New("segment: empty batch")
	}
	if b.BaseOffset <= w.lastOff {
		return fmt.Errorf("segment: batch at offset %d does not follow offset %d", b.BaseOffset, w.lastOff)
	}
	w.raw = AppendBatch(w.raw, b)
	if w.cur.FirstOffset < 0 {
		w.cur.FirstOffset = b.BaseOffset
	}
	w.cur.LastOffset = b.LastOffset()
	w.cur.Records += int64(len(b.Records))
	w.lastOff = b.LastOffset()
	for i := range b.Records {
		ts := b.Records[i].Timestamp
		w.maxTS = max(w.maxTS, ts)
		w.footer.MinTimestamp = min(w.footer.MinTimestamp, ts)
	}
	if len(w.raw) >= w.opts.BlockSize {
		w.flushBlock()
	}
	return w.err
}

func (w *Writer) flushBlock() {
	if len(w.raw) == 0 || w.err != nil {
		return
	}
	hdr := make([]byte, blockHdrLen, blockHdrLen+len(w.raw))
	w.comp = compress(w.opts.Codec, w.comp[:0], w.raw)
	hdr[0] = byte(w.opts.Codec)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(w.raw)))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(w.comp)))
	binary.LittleEndian.PutUint32(hdr[12:], blockCRC(hdr, w.comp))
	w.cur.Pos = w.n
	w.cur.Len = int64(blockHdrLen + len(w.comp))
	w.cur.MaxTimestamp = w.maxTS
	w.write(hdr)
	w.write(w.comp)
	if w.footer.FirstOffset < 0 {
		w.footer.FirstOffset = w.cur.FirstOffset
	}
	w.footer.LastOffset = w.cur.LastOffset
	w.footer.RecordCount += w.cur.Records
	w.footer.Blocks = append(w.footer.Blocks, w.cur)
	w.cur = BlockInfo{FirstOffset: -1}
	w.raw = w.raw[:0]
}

// Finish writes the last block, the footer and the trailer. The segment is
// complete only when Finish returns nil.
func (w *Writer) Finish() (*Footer, error) {
	w.flushBlock()
	w.footer.MaxTimestamp = w.maxTS
	if w.footer.RecordCount == 0 {
		w.footer.MinTimestamp, w.footer.MaxTimestamp = 0, 0
	}
	fb := encodeFooter(&w.footer)
	pos := w.n
	w.write(fb)
	t := make([]byte, 0, trailerLen)
	t = binary.LittleEndian.AppendUint64(t, uint64(pos))
	t = binary.LittleEndian.AppendUint32(t, uint32(len(fb)))
	t = binary.LittleEndian.AppendUint32(t, crc(fb))
	t = binary.LittleEndian.AppendUint16(t, Version)
	t = append(t, 0, 0, 0, 0, 0, 0)
	t = append(t, trailerMagic...)
	w.write(t)
	if w.err != nil {
		return nil, w.err
	}
	f := w.footer
	return &f, nil
}

func encodeFooter(f *Footer) []byte {
	b := make([]byte, 0, footerFixed+len(f.Blocks)*blockEntry)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.FirstOffset))
	b = binary.LittleEndian.AppendUint64(b, uint64(f.LastOffset))
	b = binary.LittleEndian.AppendUint64(b, uint64(f.MinTimestamp))
	b = binary.LittleEndian.AppendUint64(b, uint64(f.MaxTimestamp))
	b = binary.LittleEndian.AppendUint64(b, uint64(f.RecordCount))
	b = append(b, byte(f.Codec))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Blocks)))
	for _, bl := range f.Blocks {
		for _, v := range []int64{bl.Pos, bl.Len, bl.FirstOffset, bl.LastOffset, bl.Records, bl.MaxTimestamp} {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	}
	return b
}

// decodeFooter parses and checks a footer against the object's layout.
func decodeFooter(b []byte, footerPos int64) (*Footer, error) {
	if len(b) < footerFixed {
		return nil, corruptf("footer: %d bytes, need %d", len(b), footerFixed)
	}
	rd := func(i int) int64 { return int64(binary.LittleEndian.Uint64(b[i:])) }
	f := &Footer{Version: Version, FirstOffset: rd(0), LastOffset: rd(8), MinTimestamp: rd(16), MaxTimestamp: rd(24), RecordCount: rd(32)}
	f.Codec = Codec(b[40])
	if f.Codec > CodecNone {
		return nil, corruptf("footer: unknown codec %d", f.Codec)
	}
	n := int(binary.LittleEndian.Uint32(b[41:]))
	if n != (len(b)-footerFixed)/blockEntry || (len(b)-footerFixed)%blockEntry != 0 {
		return nil, corruptf("footer: %d blocks do not fit %d bytes", n, len(b))
	}
	f.Blocks = make([]BlockInfo, n)
	var records int64
	pos := int64(headerLen)
	for i := range f.Blocks {
		e := b[footerFixed+i*blockEntry:]
		rd := func(j int) int64 { return int64(binary.LittleEndian.Uint64(e[j*8:])) }
		bl := BlockInfo{Pos: rd(0), Len: rd(1), FirstOffset: rd(2), LastOffset: rd(3), Records: rd(4), MaxTimestamp: rd(5)}
		switch {
		case bl.Pos != pos || bl.Len < blockHdrLen || bl.Len > footerPos-bl.Pos:
			return nil, corruptf("footer: block %d at %d+%d does not follow %d within %d bytes", i, bl.Pos, bl.Len, pos, footerPos)
		case bl.Records <= 0 || bl.LastOffset < bl.FirstOffset:
			return nil, corruptf("footer: block %d has offsets %d-%d and %d records", i, bl.FirstOffset, bl.LastOffset, bl.Records)
		case i > 0 && (bl.FirstOffset <= f.Blocks[i-1].LastOffset || bl.MaxTimestamp < f.Blocks[i-1].MaxTimestamp):
			return nil, corruptf("footer: block %d is out of order", i)
		}
		pos += bl.Len
		records += bl.Records
		f.Blocks[i] = bl
	}
	if pos != footerPos {
		return nil, corruptf("footer: blocks end at %d, footer starts at %d", pos, footerPos)
	}
	if records != f.RecordCount {
		return nil, corruptf("footer: blocks hold %d records, footer says %d", records, f.RecordCount)
	}
	if n > 0 && (f.FirstOffset != f.Blocks[0].FirstOffset || f.LastOffset != f.Blocks[n-1].LastOffset) {
		return nil, corruptf("footer: offsets %d-%d disagree with the blocks", f.FirstOffset, f.LastOffset)
	}
	return f, nil
}

// ParseTail decodes the trailer and footer from the last len(tail) bytes of
// a segment object of `size` bytes. When tail is too short it returns a
// *NeedMoreError saying how many bytes it needs.
func ParseTail(tail []byte, size int64) (*Footer, error) {
	if size < headerLen+trailerLen || int64(len(tail)) > size {
		return nil, corruptf("object of %d bytes is too small to be a segment", size)
	}
	if len(tail) < trailerLen {
		return nil, &NeedMoreError{Need: trailerLen}
	}
	t := tail[len(tail)-trailerLen:]
	if string(t[24:]) != trailerMagic {
		return nil, corruptf("trailer: bad magic %q (not a strata segment, or truncated)", t[24:])
	}
	if v := binary.LittleEndian.Uint16(t[16:]); v > Version {
		return nil, fmt.Errorf("%w: segment format version %d is newer than this build supports (%d): upgrade strata", ErrUnsupportedVersion, v, Version)
	} else if v == 0 {
		return nil, corruptf("trailer: version 0")
	}
	for _, b := range t[18:24] {
		if b != 0 {
			return nil, corruptf("trailer: reserved bytes are not zero")
		}
	}
	pos := int64(binary.LittleEndian.Uint64(t[0:]))
	flen := int64(binary.LittleEndian.Uint32(t[8:]))
	want := binary.LittleEndian.Uint32(t[12:])
	if flen > maxFooterLen || pos < headerLen || pos+flen != size-trailerLen {
		return nil, corruptf("trailer: footer at %d+%d does not end at %d", pos, flen, size-trailerLen)
	}
	need := flen + trailerLen
	if int64(len(tail)) < need {
		return nil, &NeedMoreError{Need: need}
	}
	fb := tail[int64(len(tail))-need : int64(len(tail))-trailerLen]
	if got := crc(fb); got != want {
		return nil, corruptf("footer: crc mismatch (stored %#x, computed %#x)", want, got)
	}
	return decodeFooter(fb, pos)
}

// DecodeBlock verifies and decodes one block: raw is exactly the bytes
// [Pos, Pos+Len) of the block. The returned batches alias a fresh buffer.
func DecodeBlock(raw []byte, codec Codec) ([]Batch, error) {
	if len(raw) < blockHdrLen {
		return nil, corruptf("block: %d bytes, need a %d-byte header", len(raw), blockHdrLen)
	}
	c := Codec(raw[0])
	rawLen := int(binary.LittleEndian.Uint32(raw[4:]))
	compLen := int(binary.LittleEndian.Uint32(raw[8:]))
	want := binary.LittleEndian.Uint32(raw[12:])
	if c != codec {
		return nil, corruptf("block: codec %d, segment codec %d", c, codec)
	}
	if compLen != len(raw)-blockHdrLen {
		return nil, corruptf("block: compressed length %d, have %d bytes", compLen, len(raw)-blockHdrLen)
	}
	if rawLen > maxBlockRaw {
		return nil, corruptf("block: uncompressed length %d over the %d limit", rawLen, maxBlockRaw)
	}
	payload := raw[blockHdrLen:]
	if got := blockCRC(raw, payload); got != want {
		return nil, corruptf("block: crc mismatch (stored %#x, computed %#x)", want, got)
	}
	data, err := decompress(c, payload, rawLen)
	if err != nil {
		return nil, err
	}
	if len(data) != rawLen {
		return nil, corruptf("block: decompressed to %d bytes, header says %d", len(data), rawLen)
	}
	var out []Batch
	for len(data) > 0 {
		b, n, err := DecodeBatch(data)
		if err != nil {
			return nil, fmt.Errorf("block: batch %d: %w", len(out), err)
		}
		out = append(out, b)
		data = data[n:]
	}
	if len(out) == 0 {
		return nil, corruptf("block: no batches")
	}
	return out, nil
}

// RangeReader reads byte ranges of one immutable object.
type RangeReader interface {
	ReadRange(ctx context.Context, off, length int64) ([]byte, error)
}

// Reader reads a segment through ranged reads. Safe for concurrent use.
type Reader struct {
	r      RangeReader
	size   int64
	footer *Footer
}

// Open reads the tail of the segment (one read; two when the footer is over
// ~64 KiB) and returns a Reader.
func Open(ctx context.Context, r RangeReader, size int64) (*Reader, error) {
	n := min(size, tailRead)
	if n < 0 {
		return nil, corruptf("negative size %d", size)
	}
	tail, err := r.ReadRange(ctx, size-n, n)
	if err != nil {
		return nil, err
	}
	if int64(len(tail)) != n {
		return nil, corruptf("tail read returned %d bytes, want %d", len(tail), n)
	}
	f, err := ParseTail(tail, size)
	var more *NeedMoreError
	if errors.As(err, &more) && more.Need > n && more.Need <= size {
		if tail, err = r.ReadRange(ctx, size-more.Need, more.Need); err != nil {
			return nil, err
		}
		if int64(len(tail)) != more.Need {
			return nil, corruptf("tail read returned %d bytes, want %d", len(tail), more.Need)
		}
		f, err = ParseTail(tail, size)
	}
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, size: size, footer: f}, nil
}

// Footer returns the segment's footer. Do not modify it.
func (r *Reader) Footer() *Footer { return r.footer }

// BlockForOffset returns the block holding off, or the first block after
// it; false when off is past the last offset.
func (r *Reader) BlockForOffset(off int64) (int, bool) { return r.footer.BlockForOffset(off) }

// BlockForTime returns the first block that may hold a record with
// timestamp >= ts; false when no record does.
func (r *Reader) BlockForTime(ts int64) (int, bool) { return r.footer.BlockForTime(ts) }

// BlockForOffset: see Reader.BlockForOffset.
func (f *Footer) BlockForOffset(off int64) (int, bool) {
	i := sort.Search(len(f.Blocks), func(i int) bool { return f.Blocks[i].LastOffset >= off })
	return i, i < len(f.Blocks)
}

// BlockForTime: see Reader.BlockForTime.
func (f *Footer) BlockForTime(ts int64) (int, bool) {
	i := sort.Search(len(f.Blocks), func(i int) bool { return f.Blocks[i].MaxTimestamp >= ts })
	return i, i < len(f.Blocks)
}

// ReadBlock reads and decodes block i with one ranged read.
func (r *Reader) ReadBlock(ctx context.Context, i int) ([]Batch, error) {
	if i < 0 || i >= len(r.footer.Blocks) {
		return nil, fmt.Errorf("segment: block %d out of range (%d blocks)", i, len(r.footer.Blocks))
	}
	b := r.footer.Blocks[i]
	raw, err := r.r.ReadRange(ctx, b.Pos, b.Len)
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) != b.Len {
		return nil, corruptf("block %d: read %d bytes, want %d", i, len(raw), b.Len)
	}
	batches, err := DecodeBlock(raw, r.footer.Codec)
	if err != nil {
		return nil, fmt.Errorf("block %d: %w", i, err)
	}
	return batches, nil
}
