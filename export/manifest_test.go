package export

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func goodManifest() *Manifest {
	return &Manifest{Version: ManifestVersion, Topic: "events", TopicID: testID, Partition: 2, UpdateID: "00ff",
		Ranges: []Range{
			{First: 0, Last: 99, Key: FileKey("x", "events", "2024-03-01", 2, 0, 99), Date: "2024-03-01", Claim: "ab", Rows: 100, Bytes: 5000,
				SegmentBytes: 4000, MinTimestamp: 1, MaxTimestamp: 9, Misfits: 2, MisfitOffsets: []int64{3, 7}, CommittedMs: 1},
			{First: 100, Last: 149, Date: "2024-03-01", Claim: "cd", Lost: "retention"},
		},
		Pending: &Claim{ID: "ef", First: 150, Last: 199, Key: FileKey("x", "events", "2024-03-02", 2, 150, 199), Date: "2024-03-02",
			RowGroupBytes: 10, RowGroupLimit: 20, By: "host-1", ClaimedMs: 5}}
}

func TestManifestValidate(t *testing.T) {
	if err := goodManifest().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(m *Manifest){
		"newer version":      func(m *Manifest) { m.Version = ManifestVersion + 1 },
		"bad topic":          func(m *Manifest) { m.Topic = "a/b" },
		"bad topic id":       func(m *Manifest) { m.TopicID = "XYZ" },
		"overlapping ranges": func(m *Manifest) { m.Ranges[1].First = 99 },
		"unsorted ranges":    func(m *Manifest) { m.Ranges[0], m.Ranges[1] = m.Ranges[1], m.Ranges[0] },
		"last before first":  func(m *Manifest) { m.Ranges[0].Last = -1 },
		"too many rows":      func(m *Manifest) { m.Ranges[0].Rows = 101 },
		"misfit outside":     func(m *Manifest) { m.Ranges[0].MisfitOffsets = []int64{100} },
		"more offsets":       func(m *Manifest) { m.Ranges[0].Misfits = 1 },
		"lost with a file":   func(m *Manifest) { m.Ranges[1].Key = m.Ranges[0].Key },
		"no key":             func(m *Manifest) { m.Ranges[0].Key = "" },
		"not parquet":        func(m *Manifest) { m.Ranges[0].Key = "a/b.json" },
		"bad key":            func(m *Manifest) { m.Ranges[0].Key = "../a.parquet" },
		"bad date":           func(m *Manifest) { m.Ranges[0].Date = "2024/03/01" },
		"claim overlaps":     func(m *Manifest) { m.Pending.First = 149 },
		"claim row groups":   func(m *Manifest) { m.Pending.RowGroupLimit = 5 },
		"claim without id":   func(m *Manifest) { m.Pending.ID = "" },
	} {
		m := goodManifest()
		mut(m)
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "newer version" && !errors.Is(err, ErrManifestVersion) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestManifestGaps(t *testing.T) {
	m := &Manifest{Ranges: []Range{{First: 10, Last: 19}, {First: 30, Last: 39}}}
	for _, tc := range []struct {
		from, to, s, end int64
		ok               bool
	}{
		{0, 100, 0, 10, true},
		{10, 100, 20, 30, true},
		{15, 25, 20, 25, true},
		{30, 40, 40, 40, false},
		{35, 100, 40, 100, true},
		{10, 20, 20, 20, false},
	} {
		s, end, ok := m.nextGap(tc.from, tc.to)
		if s != tc.s || end != tc.end || ok != tc.ok {
			t.Errorf("nextGap(%d, %d) = %d, %d, %v; want %d, %d, %v", tc.from, tc.to, s, end, ok, tc.s, tc.end, tc.ok)
		}
	}
	if got := m.Covered(15, 35); got != 5+5 {
		t.Errorf("Covered(15, 35) = %d", got)
	}
	c := m.commit(Range{First: 20, Last: 29})
	if len(c.Ranges) != 3 || c.Ranges[1].First != 20 || len(m.Ranges) != 2 {
		t.Errorf("commit: %+v (original %+v)", c.Ranges, m.Ranges)
	}
}

func TestKeys(t *testing.T) {
	if got, want := FileKey("exports", "t.1", "2024-03-01", 3, 7, 1234), "exports/topic=t.1/date=2024-03-01/partition=3/00000000000000000007-00000000000000001234.parquet"; got != want {
		t.Errorf("FileKey = %s, want %s", got, want)
	}
	if got, want := ManifestKey("", "t", "", 0), "_strata/export/t/_/0.json"; got != want {
		t.Errorf("ManifestKey = %s, want %s", got, want)
	}
	if got := DateOf(midnight - 1); got != "2024-02-29" {
		t.Errorf("DateOf(midnight-1) = %s", got)
	}
	if strings.HasSuffix(ManifestKey("p", "t", testID, 1), ".parquet") {
		t.Error("a manifest key ends in .parquet")
	}
}

// FuzzDecodeManifest: any bytes either fail to decode with an error or
// give a manifest that passes Validate and survives an encode/decode
// round trip unchanged. Never a panic.
func FuzzDecodeManifest(f *testing.F) {
	enc, err := EncodeManifest(goodManifest())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(`{"version":1,"topic":"t","partition":0,"update_id":"","ranges":null}`))
	f.Add([]byte(`{"version":1,"topic":"t","ranges":[{"first":5,"last":4}]}`))
	f.Add([]byte(`{"version":2,"extra":1}`))
	f.Add([]byte(`{"version":1,"topic":"t"} {}`))
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
