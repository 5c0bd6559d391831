package flightserver

import (
	"bytes"
	"testing"
	"unsafe"
)

// The pool hands out zeroed, 64-byte aligned buffers, reuses freed ones,
// and Reallocate keeps the contents.
func TestPoolAllocator(t *testing.T) {
	var a poolAllocator
	for _, size := range []int{1, 100, 4096, 4097, 1 << 20, 3<<20 + 5} {
		b := a.Allocate(size)
		if len(b) != size || uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
			t.Fatalf("Allocate(%d): len %d, address %p", size, len(b), &b[0])
		}
		for i := range b {
			b[i] = 0xff
		}
		a.Free(b)
		c := a.Allocate(size)
		if !bytes.Equal(c, make([]byte, size)) {
			t.Fatalf("Allocate(%d) after a Free: not zeroed", size)
		}
		copy(c, "strata")
		d := a.Reallocate(2*size+10, c)
		if len(d) != 2*size+10 || !bytes.HasPrefix(d, []byte("strata"[:min(6, size)])) || !bytes.Equal(d[size:], make([]byte, size+10)) {
			t.Fatalf("Reallocate(%d): contents %q..., tail not zeroed", 2*size+10, d[:min(6, size)])
		}
		a.Free(d)
	}
	a.Free(make([]byte, 1000)) // not one of its classes: ignored
	a.Free(nil)
}
