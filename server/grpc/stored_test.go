package grpcserver

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"unsafe"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
)

// A response with stored blocks encodes, without copying the blocks, to
// exactly proto.Marshal's bytes; its lease lasts until the transport frees
// the last piece.
func TestStoredResponseEncodesAsProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	c := &serverCodec{proto: encoding.GetCodecV2("proto"), lim: newLimiter(DefaultLimits())}
	b := newBudget("fetch responses", 1<<30)
	ctx, cancel := context.WithCancel(context.Background())
	s := b.stream(ctx, 1<<30)
	defer s.finish(ctx)
	defer cancel() // a failed check leaves a lease: end the stream first
	for i := range 200 {
		resp := &stratapb.FetchResponse{NextOffset: rng.Int64N(1 << 40), HighWatermark: rng.Int64N(1 << 40), SkipBefore: rng.Int64N(1<<40) - 5}
		if i%3 == 0 {
			resp.LogStartOffset, resp.SkipBefore = 0, 0 // zero fields are omitted
		}
		for range 1 + rng.IntN(5) {
			data := make([]byte, 1<<10+rng.IntN(8<<10)) // over gRPC's pooling threshold: smaller responses are marshaled plainly
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			resp.Blocks = append(resp.Blocks, &stratapb.StoredBlock{Data: data, FirstOffset: rng.Int64N(1 << 40), LastOffset: rng.Int64N(1 << 40), Records: rng.Int64N(5000), Codec: uint32(rng.IntN(3))})
		}
		for range rng.IntN(3) {
			resp.Records = append(resp.Records, &stratapb.Record{Offset: rng.Int64N(1 << 30), Value: make([]byte, rng.IntN(2000)), Key: []byte{}})
		}
		want, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		blocks := append([]*stratapb.StoredBlock(nil), resp.Blocks...)
		l, err := s.acquire(ctx, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		m := &leasedResponse{FetchResponse: resp, lease: l}
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			n := 0
			for n < min(len(got), len(want)) && got[n] == want[n] {
				n++
			}
			t.Fatalf("response %d: %d bytes encoded, proto.Marshal gives %d; first difference at %d", i, len(got), len(want), n)
		}
		if !m.transferred || l.Size() != int64(len(want)) {
			t.Fatalf("response %d: lease of %d for %d bytes, transferred %v", i, l.Size(), len(want), m.transferred)
		}
		// Every block's bytes are in the encoding as they are: not copied.
		for _, blk := range blocks {
			shared := false
			for _, piece := range data {
				if p := piece.ReadOnlyData(); len(p) == len(blk.Data) && unsafe.SliceData(p) == unsafe.SliceData(blk.Data) {
					shared = true
				}
			}
			if !shared {
				t.Fatalf("response %d: a block's bytes were copied", i)
			}
		}
		data.Ref()  // the transport's reference
		data.Free() // SendMsg is done
		if b.state().used == 0 {
			t.Fatalf("response %d: the lease ended while the transport held the bytes", i)
		}
		for _, piece := range data[:len(data)-1] {
			piece.Free() // written, in order
		}
		if b.state().used == 0 {
			t.Fatalf("response %d: the lease ended before the last piece was written", i)
		}
		data[len(data)-1].Free()
		if used := b.state().used; used != 0 {
			t.Fatalf("response %d: %d bytes still counted after the transport freed the response", i, used)
		}
		b.mu.Lock()
		b.sending--
		b.mu.Unlock()
	}
}
