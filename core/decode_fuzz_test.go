package core

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecodeTopicConfig: a stored topic config either fails with an error
// or satisfies what CreateTopic checks. Never a panic.
func FuzzDecodeTopicConfig(f *testing.F) {
	f.Add([]byte(`{"name":"orders","partitions":3,"compression":"zstd"}`))
	f.Add([]byte(`{"name":"orders","partitions":0}`))
	f.Add([]byte(`{"name":"other","partitions":3}`))
	f.Add([]byte(`{"name":"orders","partitions":3,"compression":"lz4"}`))
	f.Add([]byte(`{"name":"orders","partitions":3,"retention_ms":-1}`))
	f.Add([]byte(`{"name":"orders","partitions":3,"retention_ms":9223372036854775807}`))
	f.Add([]byte(`{"name":"orders","partitions":3,"retention_ms":18446744073710,"segment_bytes":1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeTopicConfig("orders", data)
		if err != nil {
			return
		}
		if cfg.Name != "orders" || cfg.Partitions < 1 || cfg.Partitions > maxStoredPartitions || checkTopicSizes(cfg.TopicConfig) != nil ||
			cfg.RetentionMs < 0 || cfg.RetentionMs > MaxRetentionMs || cfg.RetentionBytes < 0 || cfg.RetentionBytes > MaxRetentionBytes ||
			cfg.SegmentBytes != 0 && (cfg.SegmentBytes < MinSegmentBytes || cfg.SegmentBytes > MaxSegmentBytes) {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
		// Retention converts to a time.Duration without wrapping.
		if d := time.Duration(cfg.RetentionMs) * time.Millisecond; d < 0 || d.Milliseconds() != cfg.RetentionMs {
			t.Fatalf("retention_ms %d wraps to %v", cfg.RetentionMs, d)
		}
	})
}

// FuzzDecodeGroupState: committed offsets that decode are never negative.
func FuzzDecodeGroupState(f *testing.F) {
	f.Add([]byte(`{"topic":"orders","offsets":{"0":10,"1":0}}`))
	f.Add([]byte(`{"topic":"orders","offsets":{"-1":10}}`))
	f.Add([]byte(`{"topic":"orders","offsets":{"0":-5}}`))
	f.Add([]byte(`{"offsets":{"x":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeGroupState(data)
		if err != nil {
			return
		}
		for p, off := range st.Offsets {
			if p < 0 || off < 0 {
				t.Fatalf("accepted offset %d for partition %d", off, p)
			}
		}
		if _, err := json.Marshal(st); err != nil {
			t.Fatal(err)
		}
	})
}
