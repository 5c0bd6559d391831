package partitioner

import "testing"

// The golden values pin the mapping: a change here breaks per-key ordering
// for every deployed topic.
func TestForKeyIsStable(t *testing.T) {
	for _, tc := range []struct {
		key        string
		partitions int32
		want       int32
	}{
		{"", 1, 0},
		{"", 7, 0x811c9dc5 % 7},
		{"a", 16, 0xe40c292c % 16},
		{"user-1", 3, 1},
		{"user-1", 1000, 500},
		{"order-42", 12, 8},
	} {
		if got := ForKey([]byte(tc.key), tc.partitions); got != tc.want {
			t.Errorf("ForKey(%q, %d) = %d, want %d", tc.key, tc.partitions, got, tc.want)
		}
	}
}
