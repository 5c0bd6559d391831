package flightserver_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
)

// produceAt writes one record of size bytes per timestamp to partition p.
func produceAt(t *testing.T, b *core.Broker, topic string, p int32, size int, ts ...int64) {
	t.Helper()
	var recs []segment.Record
	for _, v := range ts {
		recs = append(recs, segment.Record{Timestamp: v, Value: make([]byte, size)})
	}
	if _, err := b.Produce(context.Background(), &core.ProduceRequest{Topic: topic, Partition: p, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// info asks GetFlightInfo for a command.
func info(t *testing.T, fc flight.Client, c *flightserver.Command) (*flight.FlightInfo, error) {
	t.Helper()
	d, err := c.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	return fc.GetFlightInfo(context.Background(), d)
}

// offsets reads every endpoint of info and returns the offsets of each.
func offsets(t *testing.T, fc flight.Client, info *flight.FlightInfo) [][]int64 {
	t.Helper()
	var out [][]int64
	for _, ep := range info.Endpoint {
		s, err := doGet(context.Background(), fc, ep.Ticket)
		if err != nil {
			t.Fatal(err)
		}
		if s.report == nil || s.report.Rows != int64(len(s.rows)) {
			t.Fatalf("report %+v for %d rows", s.report, len(s.rows))
		}
		var offs []int64
		for _, r := range s.rows {
			offs = append(offs, r.rec.Offset)
		}
		out = append(out, offs)
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// Offset and time ranges: time ranges resolve to the first record at or
// after each bound (from inclusive, to exclusive), on sealed and tail
// records, per partition; an empty range is one endpoint of zero rows.
func TestRanges(t *testing.T) {
	e := start(t, testConfig(t, storetest.File(t)), flightserver.DefaultConfig())
	ctx := context.Background()
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "tr", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	// Partition 0: offsets 0-99 at baseTS + 1s*i, 0-59 sealed (read
	// cold), 60-99 the tail. Partition 1: 40 records a millisecond before
	// baseTS.
	var ts []int64
	for i := range 100 {
		ts = append(ts, baseTS+int64(i)*1000)
	}
	produceAt(t, e.b, "tr", 0, 600, ts[:60]...) // over SealBytes: sealed
	old := make([]int64, 40)
	for i := range old {
		old[i] = baseTS - 1
	}
	produceAt(t, e.b, "tr", 1, 10, old...)
	waitFor(t, time.Minute, "partition 0 to seal", func() bool {
		d, err := e.b.DescribeTopic(ctx, "tr")
		return err == nil && d.Partitions[0].SealedSegments > 0
	})
	produceAt(t, e.b, "tr", 0, 10, ts[60:]...)
	at := func(i int) *flightserver.Millis { m := flightserver.Millis(baseTS + int64(i)*1000); return &m }

	for _, tc := range []struct {
		name string
		cmd  flightserver.Command
		want [][]int64
	}{
		{"offsets", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromOffset: map[int32]int64{0: 10}, ToOffset: map[int32]int64{0: 70}}, [][]int64{span(10, 70)}},
		{"from offset to the end", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromOffset: map[int32]int64{0: 95}}, [][]int64{span(95, 100)}},
		{"empty offset range", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromOffset: map[int32]int64{0: 5}, ToOffset: map[int32]int64{0: 5}}, [][]int64{nil}},
		{"time range", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromTime: at(10), ToTime: at(70)}, [][]int64{span(10, 70)}},
		{"time between records", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromTime: flightserver.MillisOf(time.UnixMilli(baseTS + 10500)), ToTime: flightserver.MillisOf(time.UnixMilli(baseTS + 12500))}, [][]int64{{11, 12}}},
		{"time past the end", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromTime: at(98), ToTime: at(1000)}, [][]int64{{98, 99}}},
		{"time before everything", flightserver.Command{Topic: "tr", Partitions: []int32{0}, FromTime: at(-1000), ToTime: at(2)}, [][]int64{{0, 1}}},
		{"every partition, by time", flightserver.Command{Topic: "tr", FromTime: at(0)}, [][]int64{span(0, 100), nil}},
		{"partitions in the order named", flightserver.Command{Topic: "tr", Partitions: []int32{1, 0}, ToOffset: map[int32]int64{0: 3, 1: 2}}, [][]int64{{0, 1}, {0, 1, 2}}},
		{"offsets on one partition, time on none", flightserver.Command{Topic: "tr", FromOffset: map[int32]int64{1: 38}}, [][]int64{span(0, 100), {38, 39}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := info(t, e.flight, &tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			got := offsets(t, e.flight, fi)
			if len(got) != len(tc.want) {
				t.Fatalf("%d endpoints, want %d", len(got), len(tc.want))
			}
			var total int64
			for i := range got {
				if len(got[i]) != len(tc.want[i]) {
					t.Fatalf("endpoint %d: offsets %v, want %v", i, got[i], tc.want[i])
				}
				for j := range got[i] {
					if got[i][j] != tc.want[i][j] {
						t.Fatalf("endpoint %d: offsets %v, want %v", i, got[i], tc.want[i])
					}
				}
				total += int64(len(got[i]))
			}
			if fi.TotalRecords != total {
				t.Fatalf("total_records %d, read %d", fi.TotalRecords, total)
			}
			var ep flightserver.EndpointInfo
			if err := json.Unmarshal(fi.Endpoint[0].AppMetadata, &ep); err != nil || ep.To-ep.From != int64(len(got[0])) {
				t.Fatalf("endpoint metadata %s: %+v %v", fi.Endpoint[0].AppMetadata, ep, err)
			}
		})
	}
	// A command's JSON as documented, times as RFC 3339 and milliseconds.
	raw := `{"v":1,"topic":"tr","partitions":[0],"from_time":"` + time.UnixMilli(baseTS+20000).UTC().Format(time.RFC3339) + `","to_time":` + jsonInt(baseTS+25000) + `}`
	fi, err := e.flight.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if got := offsets(t, e.flight, fi); len(got) != 1 || len(got[0]) != 5 || got[0][0] != 20 {
		t.Fatalf("%s read %v, want offsets 20-24", raw, got)
	}
	// GetSchema and ListFlights.
	sr, err := e.flight.GetSchema(ctx, flightserver.PathDescriptor("tr"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := flight.DeserializeSchema(sr.Schema, nil); err != nil || s.Field(1).Name != "offset" {
		t.Fatalf("schema %v %v", s, err)
	}
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "other", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	// A share group's state log ("__share.tr") is the broker's: not listed.
	if _, err := e.b.CreateShareGroup(ctx, core.ShareGroupConfig{Topic: "tr", Group: "g", DeadLetterTopic: "other"}); err != nil {
		t.Fatal(err)
	}
	ls, err := e.flight.ListFlights(ctx, &flight.Criteria{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		fi, err := ls.Recv()
		if err != nil {
			break
		}
		names = append(names, fi.FlightDescriptor.Path[0])
		if fi.FlightDescriptor.Path[0] == "tr" && fi.TotalRecords != 140 {
			t.Fatalf("ListFlights: tr has %d records, want 140", fi.TotalRecords)
		}
	}
	if len(names) != 2 || names[0] != "other" || names[1] != "tr" {
		t.Fatalf("ListFlights lists %v, want [other tr]", names)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }
