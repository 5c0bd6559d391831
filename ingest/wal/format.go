package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/stratalog/strata/meta"
	"hash/crc32"
	"math"

	"github.com/stratalog/strata/segment"
)

// Object layout, format version 1 (little endian):
//
//	magic "STRWAL01" (8 bytes)
//	u32 header length H
//	header (H bytes):
//	    u16 len | incarnation
//	    u64 sequence number
//	    i64 creation time (ms since the Unix epoch)
//	    u32 entry count
//	    per entry: u16 len | topic, i32 partition, i64 first offset,
//	               i64 last offset, u64 data position (from the start of
//	               the data), u32 data length, u32 CRC32C of the data
//	u32 CRC32C of the header length and header
//	data: per entry, whole batches in segment.AppendBatch encoding
//
// A fence object has the magic "STRFENCE" followed by free text saying who
// fenced the incarnation and when.

const (
	magicWAL   = "STRWAL01"
	magicFence = "STRFENCE"
	// HeadBytes is how much of an object a reader fetches first: enough for
	// the header of any object with up to a few thousand entries.
	HeadBytes = 64 << 10
	// maxHeader bounds a header a decoder will believe (about 600k entries).
	maxHeader = 64 << 20
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("wal: object corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Entry says where one partition's records sit in a WAL object.
type Entry struct {
	Topic     string
	Partition int32
	First     int64  // first offset held
	Last      int64  // last offset held (inclusive)
	Pos       uint64 // data position, from the start of the data section
	Len       uint32 // data length
	CRC       uint32 // CRC32C of the data
}

// Header is a WAL object's header.
type Header struct {
	Incarnation string
	Seq         uint64
	CreatedMs   int64
	Entries     []Entry
	// DataStart is the object position of the data section (set by
	// DecodeHeader; ignored by Encode).
	DataStart int64
}

// Find returns the entry of a partition, if the object holds one.
func (h *Header) Find(topic string, partition int32) (Entry, bool) {
	for _, e := range h.Entries {
		if e.Topic == topic && e.Partition == partition {
			return e, true
		}
	}
	return Entry{}, false
}

// Key is the object key of sequence number seq of an incarnation
// (meta.WALKey: every key is named in package meta).
func Key(incarnation string, seq uint64) string { return meta.WALKey(incarnation, seq) }

// IncarnationPrefix is the prefix under which an incarnation's objects live.
func IncarnationPrefix(incarnation string) string { return meta.WALIncarnationPrefix(incarnation) }

// Prefix is the prefix of every WAL object.
const Prefix = meta.WALPrefix

// ParseKey splits a WAL object key into incarnation and sequence number.
func ParseKey(key string) (incarnation string, seq uint64, ok bool) { return meta.ParseWALKey(key) }

// encodeHeader returns magic | header length | header | crc for h.
func encodeHeader(h *Header) []byte {
	body := make([]byte, 0, 64+len(h.Entries)*48)
	body = appendString(body, h.Incarnation)
	body = binary.LittleEndian.AppendUint64(body, h.Seq)
	body = binary.LittleEndian.AppendUint64(body, uint64(h.CreatedMs))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(h.Entries)))
	for _, e := range h.Entries {
		body = appendString(body, e.Topic)
		body = binary.LittleEndian.AppendUint32(body, uint32(e.Partition))
		body = binary.LittleEndian.AppendUint64(body, uint64(e.First))
		body = binary.LittleEndian.AppendUint64(body, uint64(e.Last))
		body = binary.LittleEndian.AppendUint64(body, e.Pos)
		body = binary.LittleEndian.AppendUint32(body, e.Len)
		body = binary.LittleEndian.AppendUint32(body, e.CRC)
	}
	out := make([]byte, 0, len(magicWAL)+8+len(body))
	out = append(out, magicWAL...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	crc := crc32.Checksum(out[len(magicWAL):], castagnoli)
	return binary.LittleEndian.AppendUint32(out, crc)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// IsFence reports whether the object starting with head is a fence.
func IsFence(head []byte) bool { return bytes.HasPrefix(head, []byte(magicFence)) }

// fenceBody is the content of a fence object.
func fenceBody(by string, atMs int64) []byte {
	return fmt.Appendf([]byte(magicFence), " fenced by %s at %d\n", by, atMs)
}

// HeaderSize returns the total size of the header (magic through CRC) of
// an object starting with head, which must hold at least 12 bytes.
func HeaderSize(head []byte) (int64, error) {
	if len(head) < len(magicWAL)+4 {
		return 0, corruptf("object of %d bytes is too short for a header", len(head))
	}
	if string(head[:len(magicWAL)]) != magicWAL {
		if IsFence(head) {
			return 0, corruptf("object is a fence, not a WAL object")
		}
		return 0, corruptf("bad magic %q", head[:len(magicWAL)])
	}
	n := binary.LittleEndian.Uint32(head[len(magicWAL):])
	if n > maxHeader {
		return 0, corruptf("header length %d is over the %d limit", n, maxHeader)
	}
	return int64(len(magicWAL)) + 4 + int64(n) + 4, nil
}

// DecodeHeader decodes the header at the start of an object. head must
// hold at least HeaderSize(head) bytes.
func DecodeHeader(head []byte) (*Header, error) {
	size, err := HeaderSize(head)
	if err != nil {
		return nil, err
	}
	if int64(len(head)) < size {
		return nil, corruptf("header needs %d bytes, have %d", size, len(head))
	}
	covered := head[len(magicWAL) : size-4]
	if crc32.Checksum(covered, castagnoli) != binary.LittleEndian.Uint32(head[size-4:]) {
		return nil, corruptf("header crc mismatch")
	}
	r := reader{b: covered[4:]}
	h := &Header{DataStart: size}
	h.Incarnation = r.str()
	h.Seq = r.u64()
	h.CreatedMs = int64(r.u64())
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(r.b))/34 {
		return nil, corruptf("entry count %d impossible in %d bytes", n, len(r.b))
	}
	if r.err == nil {
		h.Entries = make([]Entry, 0, n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		e := Entry{Topic: r.str(), Partition: int32(r.u32()), First: int64(r.u64()), Last: int64(r.u64()), Pos: r.u64(), Len: r.u32(), CRC: r.u32()}
		if r.err != nil {
			break
		}
		switch {
		case e.First < 0 || e.Last < e.First:
			return nil, corruptf("entry %d: offsets %d-%d", i, e.First, e.Last)
		case e.Pos > math.MaxInt64/2 || e.Len == 0:
			return nil, corruptf("entry %d: data at %d length %d", i, e.Pos, e.Len)
		}
		h.Entries = append(h.Entries, e)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, corruptf("%d trailing header bytes", len(r.b))
	}
	return h, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = corruptf("header truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str() string {
	v := r.take(2)
	if v == nil {
		return ""
	}
	return string(r.take(int(binary.LittleEndian.Uint16(v))))
}

// DecodeEntry decodes an entry's data (exactly e.Len bytes) into batches,
// checking the CRC and that the batches hold offsets First..Last densely.
func DecodeEntry(e Entry, data []byte) ([]segment.Batch, error) {
	if len(data) != int(e.Len) {
		return nil, corruptf("%s/%d: entry data is %d bytes, header says %d", e.Topic, e.Partition, len(data), e.Len)
	}
	if crc32.Checksum(data, castagnoli) != e.CRC {
		return nil, corruptf("%s/%d: entry data crc mismatch", e.Topic, e.Partition)
	}
	var out []segment.Batch
	next := e.First
	for len(data) > 0 {
		b, n, err := segment.DecodeBatch(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s/%d: %v", ErrCorrupt, e.Topic, e.Partition, err)
		}
		if len(b.Records) == 0 || b.BaseOffset != next {
			return nil, corruptf("%s/%d: batch at offset %d where %d was expected", e.Topic, e.Partition, b.BaseOffset, next)
		}
		next = b.LastOffset() + 1
		out = append(out, b)
		data = data[n:]
	}
	if next != e.Last+1 {
		return nil, corruptf("%s/%d: data ends at offset %d, header says %d", e.Topic, e.Partition, next-1, e.Last)
	}
	return out, nil
}
