package segment

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Header is one record header. Keys are strings; values are opaque bytes.
type Header struct {
	Key   string
	Value []byte
}

// Record is one entry of a partition log.
type Record struct {
	Offset    int64  // dense per partition; assigned by the partition's owner
	Timestamp int64  // milliseconds since the Unix epoch
	Key       []byte // nil means "no key" (distinct from an empty key)
	Value     []byte // nil means "no value" (a tombstone)
	Headers   []Header
}

// NoProducer is the ProducerID of a batch sent without the idempotent
// producer.
const NoProducer int64 = -1

// Batch is the unit producers send and the log stores: records with
// consecutive offsets BaseOffset, BaseOffset+1, ... and the producer fields
// the idempotent producer uses to drop duplicates.
type Batch struct {
	BaseOffset    int64
	ProducerID    int64 // NoProducer when not idempotent
	ProducerEpoch int16
	BaseSequence  int32 // sequence number of Records[0] for this producer and partition
	Records       []Record
}

// LastOffset is the offset of the batch's last record.
func (b *Batch) LastOffset() int64 { return b.BaseOffset + int64(len(b.Records)) - 1 }

// MaxTimestamp is the largest record timestamp in the batch (math.MinInt64
// for an empty batch).
func (b *Batch) MaxTimestamp() int64 {
	m := int64(math.MinInt64)
	for i := range b.Records {
		if b.Records[i].Timestamp > m {
			m = b.Records[i].Timestamp
		}
	}
	return m
}

// batchFixedLen is the size of a batch's fixed fields: length, base offset,
// base timestamp, producer id, producer epoch, base sequence, record count.
const batchFixedLen = 4 + 8 + 8 + 8 + 2 + 4 + 4

// maxBatchRecords bounds the record count a decoder will believe.
const maxBatchRecords = 1 << 24

// AppendBatch appends b's encoding to dst and returns the extended slice.
//
// Layout (little endian): u32 length of the rest | i64 base offset |
// i64 base timestamp | i64 producer id | i16 epoch | i32 base sequence |
// u32 record count | records. A record is: varint timestamp delta |
// varint key length (-1 = nil) | key | varint value length (-1 = nil) | value |
// uvarint header count | per header: uvarint key length | key | varint value
// length (-1 = nil) | value. Record offsets are implicit: BaseOffset+i.
func AppendBatch(dst []byte, b *Batch) []byte {
	start := len(dst)
	var baseTS int64
	if len(b.Records) > 0 {
		baseTS = b.Records[0].Timestamp
	}
	dst = binary.LittleEndian.AppendUint32(dst, 0) // patched below
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.BaseOffset))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(baseTS))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.ProducerID))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(b.ProducerEpoch))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(b.BaseSequence))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b.Records)))
	for i := range b.Records {
		r := &b.Records[i]
		dst = binary.AppendVarint(dst, r.Timestamp-baseTS)
		dst = appendBytes(dst, r.Key)
		dst = appendBytes(dst, r.Value)
		dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
			dst = append(dst, h.Key...)
			dst = appendBytes(dst, h.Value)
		}
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// BatchSpan reads the base offset and the record count from the fixed
// fields of an encoded batch (AppendBatch) without decoding its records.
// ok is false when src is too short for them, its length field does not
// match len(src) exactly, or the base offset is negative.
func BatchSpan(src []byte) (base int64, count uint32, ok bool) {
	if len(src) < batchFixedLen || int64(binary.LittleEndian.Uint32(src)) != int64(len(src)-4) {
		return 0, 0, false
	}
	base = int64(binary.LittleEndian.Uint64(src[4:]))
	count = binary.LittleEndian.Uint32(src[34:])
	if base < 0 || base > math.MaxInt64-int64(count) {
		return 0, 0, false
	}
	return base, count, true
}

// DecodeBatch decodes one batch from the start of src and returns it with the
// number of bytes it used. Keys, values and header values alias src. Any
// malformed input gives an error wrapping ErrCorrupt, never a panic.
func DecodeBatch(src []byte) (Batch, int, error) {
	var b Batch
	if len(src) < batchFixedLen {
		return b, 0, corruptf("batch: %d bytes, need at least %d", len(src), batchFixedLen)
	}
	n := int(binary.LittleEndian.Uint32(src))
	if n < batchFixedLen-4 || n > len(src)-4 {
		return b, 0, corruptf("batch: length %d does not fit in %d bytes", n, len(src)-4)
	}
	body := src[4 : 4+n]
	b.BaseOffset = int64(binary.LittleEndian.Uint64(body[0:]))
	baseTS := int64(binary.LittleEndian.Uint64(body[8:]))
	b.ProducerID = int64(binary.LittleEndian.Uint64(body[16:]))
	b.ProducerEpoch = int16(binary.LittleEndian.Uint16(body[24:]))
	b.BaseSequence = int32(binary.LittleEndian.Uint32(body[26:]))
	count := binary.LittleEndian.Uint32(body[30:])
	if b.BaseOffset < 0 {
		return b, 0, corruptf("batch: negative base offset %d", b.BaseOffset)
	}
	// Every record takes at least 4 bytes, which bounds a lying count.
	if count > maxBatchRecords || int(count) > (len(body)-(batchFixedLen-4))/4 {
		return b, 0, corruptf("batch: record count %d impossible in %d bytes", count, n)
	}
	if b.BaseOffset > math.MaxInt64-int64(count) {
		return b, 0, corruptf("batch: offsets overflow")
	}
	p := body[batchFixedLen-4:]
	b.Records = make([]Record, count)
	for i := range b.Records {
		r := &b.Records[i]
		r.Offset = b.BaseOffset + int64(i)
		d, k := binary.Varint(p)
		if k <= 0 {
			return b, 0, corruptf("batch: record %d: bad timestamp delta", i)
		}
		r.Timestamp = baseTS + d
		p = p[k:]
		var err error
		if r.Key, p, err = readBytes(p); err != nil {
			return b, 0, fmt.Errorf("record %d key: %w", i, err)
		}
		if r.Value, p, err = readBytes(p); err != nil {
			return b, 0, fmt.Errorf("record %d value: %w", i, err)
		}
		hc, k := binary.Uvarint(p)
		if k <= 0 || hc > uint64(len(p)) {
			return b, 0, corruptf("batch: record %d: bad header count", i)
		}
		p = p[k:]
		if hc > 0 {
			r.Headers = make([]Header, hc)
		}
		for j := range r.Headers {
			kl, k := binary.Uvarint(p)
			if k <= 0 || kl > uint64(len(p)-k) {
				return b, 0, corruptf("batch: record %d header %d: bad key length", i, j)
			}
			r.Headers[j].Key = string(p[k : k+int(kl)])
			p = p[k+int(kl):]
			if r.Headers[j].Value, p, err = readBytes(p); err != nil {
				return b, 0, fmt.Errorf("record %d header %d: %w", i, j, err)
			}
		}
	}
	if len(p) != 0 {
		return b, 0, corruptf("batch: %d trailing bytes", len(p))
	}
	return b, 4 + n, nil
}

func readBytes(p []byte) ([]byte, []byte, error) {
	l, k := binary.Varint(p)
	if k <= 0 || l < -1 || l > int64(len(p)-k) {
		return nil, nil, corruptf("bad length")
	}
	if l == -1 {
		return nil, p[k:], nil
	}
	return p[k : k+int(l) : k+int(l)], p[k+int(l):], nil
}
