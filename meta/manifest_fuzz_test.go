package meta

import (
	"bytes"
	"testing"
)

// FuzzDecodeManifest: any bytes either fail to decode with an error or give
// a manifest that passes Validate and survives an encode/decode round trip
// unchanged. Never a panic.
func FuzzDecodeManifest(f *testing.F) {
	good := &Manifest{Version: ManifestVersion, Topic: "t", Partition: 1, Epoch: 2, LogStartOffset: 5,
		Segments:  []SegmentRef{{Key: "k1", BaseOffset: 5, LastOffset: 9, Records: 5, Size: 100, Codec: "zstd"}, {Key: "k2", BaseOffset: 10, LastOffset: 20}},
		Owner:     "0001700000000-abcd1234",
		WALOwners: []string{"0001600000000-00000000"},
		Producers: []ProducerState{{ID: 7, Epoch: 0, FirstSeq: 10, Count: 5, BaseOffset: 15, LastMs: 1}}}
	enc, err := EncodeManifest(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"wal_owners":["../x"]}`))
	f.Add([]byte(`{"version":1,"producers":[{"id":1,"count":0}]}`))
	f.Add([]byte(`{"version":99}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			if m != nil {
				t.Fatal("a manifest returned with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded manifest fails Validate: %v", err)
		}
		enc, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("decoded manifest does not encode: %v", err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		enc2, _ := EncodeManifest(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", enc, enc2)
		}
	})
}
