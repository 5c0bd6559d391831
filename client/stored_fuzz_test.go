package client

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/segment"
)

// storedResponse builds a FetchResponse of the blocks of a real segment
// holding records [0, n) (small blocks, the given codec), skipping below
// skip, followed by `hot` records as records.
func storedResponse(t testing.TB, codec segment.Codec, n, skip, hot int) *stratapb.FetchResponse {
	var buf bytes.Buffer
	w := segment.NewWriter(&buf, segment.WriterOptions{Codec: codec, BlockSize: 300})
	for off := 0; off < n; {
		b := segment.Batch{BaseOffset: int64(off), ProducerID: segment.NoProducer}
		for j := off; j < min(off+1+off%4, n); j++ {
			r := segment.Record{Offset: int64(j), Timestamp: int64(1000 + j), Value: fmt.Appendf(nil, "value-%d", j)}
			if j%2 == 0 {
				r.Key = fmt.Appendf(nil, "k%d", j)
				r.Headers = []segment.Header{{Key: "h", Value: []byte("v")}}
			}
			b.Records = append(b.Records, r)
		}
		if err := w.Append(&b); err != nil {
			t.Fatal(err)
		}
		off += len(b.Records)
	}
	f, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	resp := &stratapb.FetchResponse{SkipBefore: int64(skip)}
	for _, bl := range f.Blocks {
		if bl.LastOffset < int64(skip) {
			continue
		}
		resp.Blocks = append(resp.Blocks, &stratapb.StoredBlock{Data: data[bl.Pos : bl.Pos+bl.Len], FirstOffset: bl.FirstOffset, LastOffset: bl.LastOffset, Records: bl.Records, Codec: uint32(codec)})
	}
	for j := n; j < n+hot; j++ {
		resp.Records = append(resp.Records, &stratapb.Record{Offset: int64(j), Value: fmt.Appendf(nil, "hot-%d", j)})
	}
	resp.NextOffset = int64(n + hot)
	return resp
}

// The decoder of stored blocks in a fetch response: never a panic, only
// *CorruptBlockError for bad input; what it accepts is in strictly
// increasing offset order, at or after skip_before, the same however many
// goroutines decode it, and the same when decoded again.
func FuzzDecodeFetch(f *testing.F) {
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecS2, segment.CodecNone} {
		for _, tc := range [][3]int{{20, 0, 0}, {20, 7, 3}, {5, 4, 0}, {0, 0, 2}} {
			b, err := proto.Marshal(storedResponse(f, codec, tc[0], tc[1], tc[2]))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp stratapb.FetchResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		one, err1 := decodeFetch("t", 3, &resp, 1)
		many, errN := decodeFetch("t", 3, &resp, 3)
		if (err1 == nil) != (errN == nil) || !reflect.DeepEqual(one, many) {
			t.Fatalf("1 worker: %d records, %v; 3 workers: %d records, %v", len(one), err1, len(many), errN)
		}
		if err1 != nil {
			var ce *CorruptBlockError
			if !errors.As(err1, &ce) || !errors.Is(err1, segment.ErrCorrupt) || ce.Topic != "t" || ce.Partition != 3 {
				t.Fatalf("error %v is not a *CorruptBlockError of t/3 wrapping segment.ErrCorrupt", err1)
			}
			return
		}
		last := int64(-1)
		for i, r := range one {
			fromBlock := i < len(one)-len(resp.Records)
			if r.Offset <= last || fromBlock && (r.Offset < resp.SkipBefore || r.Partition != 3) || r.Topic != "t" {
				t.Fatalf("record %d: offset %d after %d (skip_before %d)", i, r.Offset, last, resp.SkipBefore)
			}
			last = r.Offset
		}
		again, err := decodeFetch("t", 3, &resp, 2)
		if err != nil || !reflect.DeepEqual(again, one) {
			t.Fatalf("decoding again: %d records, %v", len(again), err)
		}
	})
}

// A real response decodes to its records: the blocks' from skip_before on,
// then the hot records; a flipped byte anywhere in a block fails it.
func TestDecodeFetch(t *testing.T) {
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecS2, segment.CodecNone} {
		resp := storedResponse(t, codec, 40, 13, 5)
		recs, err := decodeFetch("t", 0, resp, 4)
		if err != nil || len(recs) != 40-13+5 {
			t.Fatalf("%v: %d records, %v", codec, len(recs), err)
		}
		for i, r := range recs {
			if r.Offset != int64(13+i) {
				t.Fatalf("%v: record %d has offset %d", codec, i, r.Offset)
			}
		}
		for bi, b := range resp.Blocks {
			for _, pos := range []int{0, 13, len(b.Data) - 1} {
				b.Data[pos] ^= 1
				_, err := decodeFetch("t", 0, resp, 4)
				var ce *CorruptBlockError
				if !errors.As(err, &ce) || ce.FirstOffset != b.FirstOffset {
					t.Fatalf("%v: block %d with byte %d flipped: %v", codec, bi, pos, err)
				}
				b.Data[pos] ^= 1
			}
		}
	}
}
