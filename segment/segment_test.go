package segment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// memRange is a RangeReader over bytes that counts reads.
type memRange struct {
	data  []byte
	reads int
}

func (m *memRange) ReadRange(_ context.Context, off, n int64) ([]byte, error) {
	m.reads++
	if off < 0 || n < 0 || off > int64(len(m.data)) {
		return nil, fmt.Errorf("bad range %d+%d of %d", off, n, len(m.data))
	}
	return m.data[off:min(off+n, int64(len(m.data)))], nil
}

// genBatches makes n batches starting at offset base with random records:
// nil and empty keys, headers, non-monotonic timestamps.
func genBatches(rng *rand.Rand, base int64, n int) []Batch {
	var out []Batch
	ts := int64(1_700_000_000_000)
	for i := 0; i < n; i++ {
		b := Batch{BaseOffset: base, ProducerID: NoProducer}
		if rng.IntN(3) == 0 {
			b.ProducerID, b.ProducerEpoch, b.BaseSequence = rng.Int64N(1000), int16(rng.IntN(5)), rng.Int32N(1<<20)
		}
		for j := 0; j < 1+rng.IntN(20); j++ {
			r := Record{Offset: base, Timestamp: ts + rng.Int64N(2000) - 500}
			switch rng.IntN(3) {
			case 0:
				r.Key = nil
			case 1:
				r.Key = []byte{}
			default:
				r.Key = fmt.Appendf(nil, "key-%d", rng.IntN(100))
			}
			if rng.IntN(10) > 0 {
				r.Value = bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(300))
			}
			for h := 0; h < rng.IntN(3); h++ {
				r.Headers = append(r.Headers, Header{Key: fmt.Sprint("h", h), Value: []byte(fmt.Sprint(rng.IntN(9)))})
			}
			b.Records = append(b.Records, r)
			base++
			ts += 10
		}
		out = append(out, b)
	}
	return out
}

func writeSegment(t testing.TB, opts WriterOptions, batches []Batch) ([]byte, *Footer) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, opts)
	for i := range batches {
		if err := w.Append(&batches[i]); err != nil {
			t.Fatal(err)
		}
	}
	f, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(buf.Len()) {
		t.Fatalf("Size() = %d, wrote %d", w.Size(), buf.Len())
	}
	return buf.Bytes(), f
}

func records(batches []Batch) []Record {
	var out []Record
	for _, b := range batches {
		out = append(out, b.Records...)
	}
	return out
}

// normalize makes empty header slices nil so DeepEqual compares content.
func normalize(rs []Record) []Record {
	for i := range rs {
		if len(rs[i].Headers) == 0 {
			rs[i].Headers = nil
		}
		for j := range rs[i].Headers {
			if len(rs[i].Headers[j].Value) == 0 && rs[i].Headers[j].Value != nil {
				rs[i].Headers[j].Value = []byte{}
			}
		}
	}
	return rs
}

func TestRoundTrip(t *testing.T) {
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		for _, bs := range []int{1, 512, 64 << 10} {
			t.Run(fmt.Sprintf("%s/block%d", codec, bs), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(bs), uint64(codec)))
				in := genBatches(rng, 1000, 60)
				data, wf := writeSegment(t, WriterOptions{Codec: codec, BlockSize: bs}, in)
				mr := &memRange{data: data}
				r, err := Open(context.Background(), mr, int64(len(data)))
				if err != nil {
					t.Fatal(err)
				}
				if mr.reads != 1 {
					t.Fatalf("Open used %d reads, want 1 for a small footer", mr.reads)
				}
				f := r.Footer()
				if !reflect.DeepEqual(f, wf) {
					t.Fatalf("footer read back differs:\n%+v\n%+v", f, wf)
				}
				var got []Batch
				for i := range f.Blocks {
					before := mr.reads
					bs, err := r.ReadBlock(context.Background(), i)
					if err != nil {
						t.Fatal(err)
					}
					if mr.reads-before != 1 {
						t.Fatalf("ReadBlock used %d reads", mr.reads-before)
					}
					got = append(got, bs...)
				}
				want := normalize(records(in))
				have := normalize(records(got))
				if !reflect.DeepEqual(want, have) {
					t.Fatal("records differ after a round trip")
				}
				for i := range in {
					if got[i].ProducerID != in[i].ProducerID || got[i].BaseSequence != in[i].BaseSequence || got[i].ProducerEpoch != in[i].ProducerEpoch {
						t.Fatalf("batch %d producer fields lost", i)
					}
				}
				if f.RecordCount != int64(len(want)) || f.FirstOffset != 1000 || f.LastOffset != 1000+int64(len(want))-1 {
					t.Fatalf("footer summary wrong: %+v", f)
				}
			})
		}
	}
}

// TestIndexLookups checks BlockForOffset and BlockForTime against a naive
// scan over every record.
func TestIndexLookups(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	in := genBatches(rng, 0, 200)
	data, _ := writeSegment(t, WriterOptions{BlockSize: 2048}, in)
	r, err := Open(context.Background(), &memRange{data: data}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f := r.Footer()
	if len(f.Blocks) < 10 {
		t.Fatalf("want many blocks, got %d", len(f.Blocks))
	}
	// Which block holds each record.
	blockOf := map[int64]int{}
	var all []Record
	for i := range f.Blocks {
		bs, _ := r.ReadBlock(context.Background(), i)
		for _, rec := range records(bs) {
			blockOf[rec.Offset] = i
			all = append(all, rec)
		}
	}
	for _, rec := range all {
		if bi, ok := r.BlockForOffset(rec.Offset); !ok || bi != blockOf[rec.Offset] {
			t.Fatalf("BlockForOffset(%d) = %d,%v; want %d", rec.Offset, bi, ok, blockOf[rec.Offset])
		}
	}
	if _, ok := r.BlockForOffset(f.LastOffset + 1); ok {
		t.Fatal("BlockForOffset past the end found a block")
	}
	for q := 0; q < 500; q++ {
		ts := f.MinTimestamp - 10 + rng.Int64N(f.MaxTimestamp-f.MinTimestamp+20)
		// Naive: the first record (by offset) with timestamp >= ts.
		want := -1
		for _, rec := range all {
			if rec.Timestamp >= ts {
				want = blockOf[rec.Offset]
				break
			}
		}
		bi, ok := r.BlockForTime(ts)
		if want < 0 {
			if ok {
				t.Fatalf("BlockForTime(%d) found block %d, but no record is that late", ts, bi)
			}
			continue
		}
		if !ok || bi != want {
			t.Fatalf("BlockForTime(%d) = %d,%v; want %d", ts, bi, ok, want)
		}
	}
}

func TestLargeFooterTakesTwoReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	in := genBatches(rng, 0, 3000)
	data, _ := writeSegment(t, WriterOptions{BlockSize: 1, Codec: CodecNone}, in) // one block per batch
	mr := &memRange{data: data}
	r, err := Open(context.Background(), mr, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Footer().Blocks) != 3000 || mr.reads != 2 {
		t.Fatalf("%d blocks opened with %d reads; want 3000 blocks in 2 reads", len(r.Footer().Blocks), mr.reads)
	}
}

func TestWriterRejectsOutOfOrder(t *testing.T) {
	w := NewWriter(&bytes.Buffer{}, WriterOptions{})
	b := Batch{BaseOffset: 10, Records: []Record{{Value: []byte("a")}}}
	if err := w.Append(&b); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(&b); err == nil {
		t.Fatal("a repeated offset was accepted")
	}
	if err := w.Append(&Batch{BaseOffset: 20}); err == nil {
		t.Fatal("an empty batch was accepted")
	}
}

func TestEmptySegment(t *testing.T) {
	data, f := writeSegment(t, WriterOptions{}, nil)
	if f.RecordCount != 0 || len(f.Blocks) != 0 {
		t.Fatalf("empty segment footer %+v", f)
	}
	r, err := Open(context.Background(), &memRange{data: data}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.BlockForOffset(0); ok {
		t.Fatal("empty segment has a block")
	}
}

// TestCorruptionNeverPanics flips every byte and truncates at every length
// of a small segment: Open and ReadBlock must fail with ErrCorrupt (or read
// valid data when the flipped byte is not covered by a checksum).
func TestCorruptionNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	in := genBatches(rng, 0, 6)
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		data, _ := writeSegment(t, WriterOptions{Codec: codec, BlockSize: 256}, in)
		want := normalize(records(in))
		readAll := func(d []byte) error {
			r, err := Open(context.Background(), &memRange{data: d}, int64(len(d)))
			if err != nil {
				return err
			}
			var got []Batch
			for i := range r.Footer().Blocks {
				bs, err := r.ReadBlock(context.Background(), i)
				if err != nil {
					return err
				}
				got = append(got, bs...)
			}
			if !reflect.DeepEqual(normalize(records(got)), want) {
				return errors.New("silently wrong data")
			}
			return nil
		}
		for i := range data {
			d := bytes.Clone(data)
			d[i] ^= 0x41
			err := readAll(d)
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("%s: flip at %d: %v (want ErrCorrupt)", codec, i, err)
			}
			if err == nil && i >= headerLen {
				// Only the file header, which a ranged reader never reads,
				// may change without detection.
				t.Fatalf("%s: flip at %d of %d went unnoticed", codec, i, len(data))
			}
		}
		for n := 0; n < len(data); n++ {
			if err := readAll(data[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: truncated to %d of %d: %v (want ErrCorrupt)", codec, n, len(data), err)
			}
		}
	}
}

func TestNewerVersionIsRefused(t *testing.T) {
	data, _ := writeSegment(t, WriterOptions{}, genBatches(rand.New(rand.NewPCG(1, 2)), 0, 2))
	data[len(data)-trailerLen+16] = 9 // trailer version
	_, err := Open(context.Background(), &memRange{data: data}, int64(len(data)))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v, want ErrUnsupportedVersion", err)
	}
	if want := "version 9 is newer than this build supports (1): upgrade strata"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestParseCodec(t *testing.T) {
	for _, c := range []Codec{CodecZstd, CodecS2, CodecNone} {
		if got, err := ParseCodec(c.String()); err != nil || got != c {
			t.Fatalf("ParseCodec(%q) = %v, %v", c, got, err)
		}
	}
	if _, err := ParseCodec("lz4"); err == nil {
		t.Fatal("lz4 accepted")
	}
}

func TestBatchCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, b := range genBatches(rng, 42, 50) {
		enc := AppendBatch(nil, &b)
		got, n, err := DecodeBatch(enc)
		if err != nil || n != len(enc) {
			t.Fatalf("decode: %v (%d of %d bytes)", err, n, len(enc))
		}
		if !reflect.DeepEqual(normalize(got.Records), normalize(b.Records)) || got.BaseOffset != b.BaseOffset || got.ProducerID != b.ProducerID {
			t.Fatal("batch differs after a round trip")
		}
		for cut := 0; cut < len(enc); cut++ {
			if _, _, err := DecodeBatch(enc[:cut]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated batch (%d of %d): %v", cut, len(enc), err)
			}
		}
	}
}
