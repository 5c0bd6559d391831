package ingest

import (
	"fmt"
	"testing"
)

// The dedup set holds at most max ids and forgets them after the window;
// an id stored again after its window keeps its new offset when the old
// entry leaves the queue.
func TestDedupSetBounds(t *testing.T) {
	s := newMsgIDs(1000, 10)
	for i := range 5000 {
		s.add(fmt.Append(nil, "id-", i), int64(i), 0, 0)
		if s.len() > 10 || len(s.order)-s.head > 10 {
			t.Fatalf("after %d ids: %d remembered, %d queued; want at most 10", i+1, s.len(), len(s.order)-s.head)
		}
	}
	if _, ok := s.lookup([]byte("id-4990"), 0); !ok {
		t.Fatal("a recent id is forgotten")
	}
	if _, ok := s.lookup([]byte("id-4990"), 1001); ok {
		t.Fatal("an id is remembered past the window")
	}
	// id-4995 again after its window: the old entry's turn in the queue
	// must not drop the new one.
	s.add([]byte("id-4995"), 9000, 1001, 1001)
	s.add([]byte("other"), 9001, 1500, 1500)
	if off, ok := s.lookup([]byte("id-4995"), 1500); !ok || off != 9000 {
		t.Fatalf("id stored again: %d, %v; want offset 9000", off, ok)
	}
	if s.len() != 2 {
		t.Fatalf("%d ids remembered, want the 2 stored within the window", s.len())
	}
}
