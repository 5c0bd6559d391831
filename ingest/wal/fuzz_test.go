package wal

import (
	"bytes"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/stratalog/strata/segment"
)

func sampleObject() ([]byte, *Header) {
	var data []byte
	h := &Header{Incarnation: "0000000001234-abcd", Seq: 3, CreatedMs: 99}
	for p := int32(0); p < 3; p++ {
		start := len(data)
		data = segment.AppendBatch(data, batch(10, 2, "a"))
		data = segment.AppendBatch(data, batch(12, 1, "b"))
		h.Entries = append(h.Entries, Entry{Topic: "orders", Partition: p, First: 10, Last: 12, Pos: uint64(start), Len: uint32(len(data) - start), CRC: crc32.Checksum(data[start:], castagnoli)})
	}
	return append(encodeHeader(h), data...), h
}

func TestHeaderRoundTrip(t *testing.T) {
	obj, want := sampleObject()
	h, err := DecodeHeader(obj)
	if err != nil {
		t.Fatal(err)
	}
	if h.Incarnation != want.Incarnation || h.Seq != want.Seq || len(h.Entries) != 3 || h.Entries[2] != want.Entries[2] {
		t.Fatalf("decoded %+v, want %+v", h, want)
	}
	e, ok := h.Find("orders", 1)
	if !ok {
		t.Fatal("entry of partition 1 not found")
	}
	bs, err := DecodeEntry(e, obj[h.DataStart+int64(e.Pos):h.DataStart+int64(e.Pos)+int64(e.Len)])
	if err != nil || len(bs) != 2 || bs[1].BaseOffset != 12 {
		t.Fatalf("DecodeEntry = %v, %v", bs, err)
	}
	// Every single-byte corruption of the header is detected.
	for i := 0; i < int(h.DataStart); i++ {
		bad := bytes.Clone(obj)
		bad[i] ^= 0x40
		if _, err := DecodeHeader(bad); err == nil {
			t.Fatalf("flipping header byte %d went unnoticed", i)
		}
	}
	if _, err := DecodeHeader(fenceBody("x", 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a fence decoded as a header: %v", err)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	obj, _ := sampleObject()
	f.Add(obj)
	f.Add(fenceBody("x", 1))
	f.Add([]byte(magicWAL))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		again, err := DecodeHeader(append(encodeHeader(h), b[h.DataStart:]...))
		if err != nil || again.Seq != h.Seq || len(again.Entries) != len(h.Entries) {
			t.Fatalf("re-encoded header does not decode the same: %v", err)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	obj, h := sampleObject()
	hd, _ := DecodeHeader(obj)
	e := h.Entries[0]
	f.Add(obj[hd.DataStart:hd.DataStart+int64(e.Len)], int64(10), int64(12))
	f.Fuzz(func(t *testing.T, data []byte, first, last int64) {
		e := Entry{Topic: "t", First: first, Last: last, Len: uint32(len(data)), CRC: crc32.Checksum(data, castagnoli)}
		bs, err := DecodeEntry(e, data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		next := first
		for _, b := range bs {
			if b.BaseOffset != next || len(b.Records) == 0 {
				t.Fatalf("accepted batches are not dense from %d", first)
			}
			next = b.LastOffset() + 1
		}
		if next != last+1 {
			t.Fatalf("accepted data ending at %d for an entry ending at %d", next-1, last)
		}
	})
}
