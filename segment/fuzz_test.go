package segment

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// Seeds come from valid encodings made here plus the files under
// testdata/fuzz/<FuzzName>/ (crashers found earlier are kept there).

func seedSegments(f *testing.F) [][]byte {
	var out [][]byte
	rng := rand.New(rand.NewPCG(11, 12))
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		var buf bytes.Buffer
		w := NewWriter(&buf, WriterOptions{Codec: codec, BlockSize: 200})
		for _, b := range genBatches(rng, 5, 4) {
			if err := w.Append(&b); err != nil {
				f.Fatal(err)
			}
		}
		if _, err := w.Finish(); err != nil {
			f.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

func FuzzDecodeBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, b := range genBatches(rng, 0, 5) {
		f.Add(AppendBatch(nil, &b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, n, err := DecodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if n > len(data) {
			t.Fatalf("used %d of %d bytes", n, len(data))
		}
		// Re-encoding a decoded batch decodes to the same batch.
		again, _, err := DecodeBatch(AppendBatch(nil, &b))
		if err != nil || !reflect.DeepEqual(normalize(again.Records), normalize(b.Records)) || again.BaseOffset != b.BaseOffset {
			t.Fatalf("re-decode differs: %v", err)
		}
	})
}

// FuzzBatchSpan: BatchSpan never panics, and on every batch DecodeBatch
// takes whole it agrees with DecodeBatch.
func FuzzBatchSpan(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, b := range genBatches(rng, 7, 5) {
		f.Add(AppendBatch(nil, &b))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		base, count, ok := BatchSpan(data)
		b, n, err := DecodeBatch(data)
		if err == nil && n == len(data) {
			if !ok || base != b.BaseOffset || int(count) != len(b.Records) {
				t.Fatalf("BatchSpan = %d, %d, %v; DecodeBatch: base %d, %d records", base, count, ok, b.BaseOffset, len(b.Records))
			}
		}
		if ok && (base < 0 || len(data) < batchFixedLen) {
			t.Fatalf("BatchSpan accepted %d bytes with base %d", len(data), base)
		}
	})
}

func FuzzDecodeBlock(f *testing.F) {
	for _, seg := range seedSegments(f) {
		r, err := Open(context.Background(), &memRange{data: seg}, int64(len(seg)))
		if err != nil {
			f.Fatal(err)
		}
		for _, bl := range r.Footer().Blocks {
			f.Add(seg[bl.Pos:bl.Pos+bl.Len], uint8(r.Footer().Codec))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, codec uint8) {
		batches, err := DecodeBlock(raw, Codec(codec))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if len(batches) == 0 {
			t.Fatal("a decoded block with no batches")
		}
	})
}

func FuzzParseTail(f *testing.F) {
	for _, seg := range seedSegments(f) {
		f.Add(seg, int64(len(seg)))
		f.Add(seg[len(seg)/2:], int64(len(seg)))
	}
	f.Fuzz(func(t *testing.T, tail []byte, size int64) {
		ft, err := ParseTail(tail, size)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		// A footer that parsed is consistent: blocks tile the data region.
		pos := int64(headerLen)
		for _, b := range ft.Blocks {
			if b.Pos != pos || b.Len < blockHdrLen {
				t.Fatalf("accepted footer with a bad block table: %+v", ft.Blocks)
			}
			pos += b.Len
		}
		if pos > size {
			t.Fatalf("blocks run to %d past the object's %d bytes", pos, size)
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, seg := range seedSegments(f) {
		f.Add(seg)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(context.Background(), &memRange{data: data}, int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		var n int64
		for i := range r.Footer().Blocks {
			bs, err := r.ReadBlock(context.Background(), i)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			for _, b := range bs {
				n += int64(len(b.Records))
			}
		}
		if n > int64(len(data)) {
			t.Fatalf("decoded %d records from %d bytes", n, len(data))
		}
	})
}
