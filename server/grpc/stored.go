package grpcserver

// Encoding a fetch response that carries stored blocks without copying
// them: the blocks' bytes (the read cache's, immutable) go into the
// transport as they are, between the few bytes of protobuf framing around
// them. The result is byte for byte what proto.Marshal gives
// (TestStoredResponseEncodesAsProto).

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
)

// Field numbers of api/proto/strata/v1/strata.proto that marshalStored
// writes.
const (
	fetchBlocksField     = 5 // FetchResponse.blocks
	fetchSkipBeforeField = 6 // FetchResponse.skip_before
	blockDataField       = 1 // StoredBlock.data
	blockFirstField      = 2 // StoredBlock.first_offset
	blockLastField       = 3 // StoredBlock.last_offset
	blockRecordsField    = 4 // StoredBlock.records
	blockCodecField      = 5 // StoredBlock.codec
)

// appendVarintField appends field num with value v, omitted when 0 (proto3).
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// blockTrailer is StoredBlock's fields after data, as proto writes them.
func blockTrailer(b []byte, blk *stratapb.StoredBlock) []byte {
	b = appendVarintField(b, blockFirstField, uint64(blk.FirstOffset))
	b = appendVarintField(b, blockLastField, uint64(blk.LastOffset))
	b = appendVarintField(b, blockRecordsField, uint64(blk.Records))
	return appendVarintField(b, blockCodecField, uint64(blk.Codec))
}

// blockHeader is FetchResponse.blocks' tag and length for blk and
// StoredBlock.data's tag and length.
func blockHeader(b []byte, blk *stratapb.StoredBlock) []byte {
	size := len(blockTrailer(nil, blk))
	if len(blk.Data) > 0 {
		size += protowire.SizeTag(blockDataField) + protowire.SizeBytes(len(blk.Data))
	}
	b = protowire.AppendTag(b, fetchBlocksField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	if len(blk.Data) > 0 {
		b = protowire.AppendTag(b, blockDataField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(blk.Data)))
	}
	return b
}

// marshalStored encodes resp (which has blocks) as pieces: pooled buffers
// for the records and scalars before the blocks and for the framing after
// the last one, the blocks' bytes themselves in between, and small
// framing between blocks. done is called when the transport frees the last
// piece, which it frees last: every byte is then written (or dropped with
// the stream).
func marshalStored(resp *stratapb.FetchResponse, pool mem.BufferPool, done func()) (mem.BufferSlice, int, error) {
	// Fields 1-4 (records, next_offset, high_watermark, log_start_offset)
	// come first, as proto orders them, then the blocks, then field 6.
	head := &stratapb.FetchResponse{Records: resp.Records, NextOffset: resp.NextOffset, HighWatermark: resp.HighWatermark, LogStartOffset: resp.LogStartOffset}
	headSize := proto.Size(head)
	first := blockHeader(nil, resp.Blocks[0])
	hb := pool.Get(headSize + len(first))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*hb)[:0], head)
	if err != nil {
		pool.Put(hb)
		return nil, 0, err
	}
	*hb = append(buf, first...)
	out := make(mem.BufferSlice, 0, 2*len(resp.Blocks)+1)
	out = append(out, mem.NewBuffer(hb, pool))
	total := len(*hb)
	// The framing between blocks: one allocation for all of them (at most
	// 4 varint fields and 2 tags with lengths each).
	glue := make([]byte, 0, len(resp.Blocks)*64)
	for i, blk := range resp.Blocks {
		if len(blk.Data) > 0 {
			out = append(out, mem.SliceBuffer(blk.Data))
			total += len(blk.Data)
		}
		if i == len(resp.Blocks)-1 {
			break
		}
		start := len(glue)
		glue = blockTrailer(glue, blk)
		glue = blockHeader(glue, resp.Blocks[i+1])
		out = append(out, mem.SliceBuffer(glue[start:len(glue):len(glue)]))
		total += len(glue) - start
	}
	// The last piece: pooled (at least the pooling threshold, so freeing
	// it reaches the pool), it carries done.
	last := resp.Blocks[len(resp.Blocks)-1]
	tb := pool.Get(4 << 10)
	t := blockTrailer((*tb)[:0], last)
	t = appendVarintField(t, fetchSkipBeforeField, uint64(resp.SkipBefore))
	*tb = t
	out = append(out, mem.NewBuffer(tb, &donePool{BufferPool: pool, done: done}))
	total += len(t)
	return out, total, nil
}

// donePool calls done when the buffer it pools is freed.
type donePool struct {
	mem.BufferPool
	done func()
}

func (p *donePool) Put(b *[]byte) {
	p.BufferPool.Put(b)
	p.done()
}
