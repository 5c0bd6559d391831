package flightserver

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// poolAllocator is the memory.Allocator of DoGet's builders and IPC
// writer: it recycles the buffers of record batches once they are
// released (after their IPC message is encoded), so a stream does not
// make the garbage collector clear and collect a batch's worth of fresh
// memory per batch. Buffers are power-of-two sized classes from 4 KiB to
// 256 MiB (larger ones come from the Go allocator and are not kept);
// what it hands out is zeroed, as the Go allocator's is, and 64-byte
// aligned. It is safe for concurrent use; idle buffers are the
// sync.Pool's, so the garbage collector still reclaims them.
type poolAllocator struct {
	classes [maxClass - minClass + 1]sync.Pool
}

const (
	minClass = 12 // 4 KiB
	maxClass = 28 // 256 MiB
)

var _ memory.Allocator = (*poolAllocator)(nil)

func classOf(size int) int {
	if size <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(size - 1))
}

func (a *poolAllocator) Allocate(size int) []byte {
	c := classOf(size)
	if c > maxClass {
		return memory.DefaultAllocator.Allocate(size)
	}
	if p, ok := a.classes[c-minClass].Get().(*[]byte); ok {
		b := (*p)[:size]
		clear(b)
		return b
	}
	// A power-of-two allocation of 4 KiB or more is at least page aligned
	// in Go's allocator.
	return make([]byte, size, 1<<c)
}

func (a *poolAllocator) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		if size > len(b) {
			clear(b[len(b):size])
		}
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	a.Free(b)
	return nb
}

func (a *poolAllocator) Free(b []byte) {
	c := cap(b)
	if c < 1<<minClass || c > 1<<maxClass || c&(c-1) != 0 {
		return // not one of ours: the garbage collector's
	}
	b = b[:0]
	a.classes[bits.Len(uint(c))-1-minClass].Put(&b)
}
