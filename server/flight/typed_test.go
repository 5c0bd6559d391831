package flightserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
)

// A topic of JSON values with a value schema reads as one column per
// field; values that do not fit are rows with null fields, the reason in
// _invalid and the value in _raw, counted in the report with their
// offsets; GetSchema and FlightInfo carry the typed schema.
func TestTypedColumns(t *testing.T) {
	e := start(t, testConfig(t, storetest.File(t)), flightserver.DefaultConfig())
	ctx := context.Background()
	schema := `{"fields":[{"name":"user","type":"string"},{"name":"amount","type":"float64"}]}`
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "pay", Partitions: 1, ValueFormat: core.ValueFormatJSON, ValueSchema: json.RawMessage(schema)}); err != nil {
		t.Fatal(err)
	}
	values := [][]byte{[]byte(`{"user":"ann","amount":1.5}`), []byte(`not json`), []byte(`{"user":"bob"}`), nil, []byte(`{"user":7,"amount":2}`), []byte(`{"amount":-3}`)}
	var recs []segment.Record
	for i, v := range values {
		recs = append(recs, segment.Record{Timestamp: baseTS + int64(i), Value: v})
	}
	if _, err := e.b.Produce(ctx, &core.ProduceRequest{Topic: "pay", Partition: 0, Records: recs}); err != nil {
		t.Fatal(err)
	}
	sr, err := e.flight.GetSchema(ctx, flightserver.PathDescriptor("pay"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := flight.DeserializeSchema(sr.Schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range s.Fields() {
		names = append(names, f.Name)
	}
	if want := "partition offset timestamp key headers user amount _invalid _raw"; strings.Join(names, " ") != want {
		t.Fatalf("schema columns %q, want %q", strings.Join(names, " "), want)
	}
	fi, err := e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("pay"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := flight.DeserializeSchema(fi.Schema, nil); !got.Equal(s) {
		t.Fatalf("FlightInfo schema %v, GetSchema %v", got, s)
	}
	ds, err := e.flight.DoGet(ctx, fi.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := flight.NewRecordReader(ds)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var users, raws []string
	var amounts []float64
	var invalid []bool
	var rep flightserver.Report
	for rdr.Next() {
		rec := rdr.Record()
		u := rec.Column(s.FieldIndices("user")[0]).(*array.String)
		a := rec.Column(s.FieldIndices("amount")[0]).(*array.Float64)
		inv := rec.Column(s.FieldIndices("_invalid")[0]).(*array.String)
		raw := rec.Column(s.FieldIndices("_raw")[0]).(*array.Binary)
		for i := 0; i < int(rec.NumRows()); i++ {
			users = append(users, u.ValueStr(i))
			amounts = append(amounts, a.Value(i))
			invalid = append(invalid, inv.IsValid(i))
			raws = append(raws, raw.ValueStr(i))
		}
		if r, ok := flightserver.ParseReport(rdr.LatestAppMetadata()); ok {
			rep = r
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	wantUsers := []string{"ann", "(null)", "bob", "(null)", "(null)", "(null)"}
	wantInvalid := []bool{false, true, false, true, true, false}
	for i := range values {
		if users[i] != wantUsers[i] || invalid[i] != wantInvalid[i] {
			t.Errorf("row %d (%q): user %q, invalid %v; want %q, %v", i, values[i], users[i], invalid[i], wantUsers[i], wantInvalid[i])
		}
	}
	if amounts[0] != 1.5 || amounts[5] != -3 || raws[1] == "(null)" {
		t.Errorf("amounts %v, raw %v", amounts, raws)
	}
	if rep.Rows != 6 || rep.Invalid != 3 || len(rep.FirstInvalidOffsets) != 3 || rep.FirstInvalidOffsets[0] != 1 || rep.FirstInvalidOffsets[1] != 3 || rep.FirstInvalidOffsets[2] != 4 {
		t.Fatalf("report %+v, want 6 rows, offsets 1, 3 and 4 invalid", rep)
	}
}
