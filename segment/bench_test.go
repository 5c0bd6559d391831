package segment

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// benchBatches is ~8 MiB of 1 KiB JSON-like records (keys, some repetition,
// a random part), 16 records a batch.
func benchBatches() []Batch {
	rng := rand.New(rand.NewPCG(1, 1))
	var out []Batch
	off := int64(0)
	size := 0
	for size < 8<<20 {
		b := Batch{BaseOffset: off, ProducerID: NoProducer}
		for range 16 {
			raw := make([]byte, 400)
			for i := range raw {
				raw[i] = byte(rng.IntN(32))
			}
			v := fmt.Appendf(nil, `{"id":%d,"user":"user-%05d","event":"add_to_cart","sku":"sku-%04d","price":%d.%02d,"session":"%s","ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}`,
				off, rng.IntN(100000), rng.IntN(5000), rng.IntN(500), rng.IntN(100), base64.StdEncoding.EncodeToString(raw))
			b.Records = append(b.Records, Record{Offset: off, Timestamp: 1_700_000_000_000 + off, Key: fmt.Appendf(nil, "user-%05d", off%100000), Value: v})
			size += len(v) + 10
			off++
		}
		out = append(out, b)
	}
	return out
}

// rawBlocks is the same data as the writer's uncompressed blocks.
func rawBlocks(batches []Batch, blockSize int) [][]byte {
	var out [][]byte
	var cur []byte
	for i := range batches {
		cur = AppendBatch(cur, &batches[i])
		if len(cur) >= blockSize {
			out = append(out, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func totalLen(bs [][]byte) int64 {
	var n int64
	for _, b := range bs {
		n += int64(len(b))
	}
	return n
}

// BenchmarkEncode: Writer (batch encoding, zstd, CRC, index) vs
// BenchmarkRawZstdEncode on the same uncompressed block bytes. Both report
// uncompressed MB/s.
func BenchmarkEncode(b *testing.B) {
	batches := benchBatches()
	b.SetBytes(totalLen(rawBlocks(batches, 1<<20)))
	var buf bytes.Buffer
	b.ReportAllocs()
	for range b.N {
		buf.Reset()
		w := NewWriter(&buf, WriterOptions{})
		for i := range batches {
			if err := w.Append(&batches[i]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Finish(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(totalLen(rawBlocks(batches, 1<<20)))/float64(buf.Len()), "ratio")
}

func BenchmarkRawZstdEncode(b *testing.B) {
	blocks := rawBlocks(benchBatches(), 1<<20)
	b.SetBytes(totalLen(blocks))
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	var dst []byte
	b.ReportAllocs()
	for range b.N {
		for _, blk := range blocks {
			dst = enc.EncodeAll(blk, dst[:0])
		}
	}
}

// BenchmarkDecode: ReadBlock (CRC, zstd, batch decoding into records) of
// every block vs BenchmarkRawZstdDecode of the same compressed blocks.
func BenchmarkDecode(b *testing.B) {
	batches := benchBatches()
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{})
	for i := range batches {
		w.Append(&batches[i])
	}
	w.Finish()
	data := buf.Bytes()
	r, err := Open(context.Background(), &memRange{data: data}, int64(len(data)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(totalLen(rawBlocks(batches, 1<<20)))
	b.ReportAllocs()
	for range b.N {
		for i := range r.Footer().Blocks {
			if _, err := r.ReadBlock(context.Background(), i); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkRawZstdDecode(b *testing.B) {
	blocks := rawBlocks(benchBatches(), 1<<20)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	var comp [][]byte
	for _, blk := range blocks {
		comp = append(comp, enc.EncodeAll(blk, nil))
	}
	dec, _ := zstd.NewReader(nil)
	b.SetBytes(totalLen(blocks))
	var dst []byte
	b.ReportAllocs()
	for range b.N {
		for _, c := range comp {
			var err error
			if dst, err = dec.DecodeAll(c, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
