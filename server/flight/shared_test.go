package flightserver_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
)

// DoGet builds its batches from the read cache's decoded batches
// themselves (no copy), which the gRPC Fetch path reads too: neither may
// write to them. One broker serves a sealed range (read cold, through
// its one cache) and a tail over both front ends; the range is read over
// Flight, then gRPC, then Flight, then gRPC, each compared with what was
// produced (a write by either path into a shared batch shows in the next
// read of the other), then by both at once, many times (under -race, a
// write that races a read is reported).
func TestSharedBatchesStayIntact(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fcfg := flightserver.DefaultConfig()
	fcfg.BatchBytes = 16 << 10 // batches cut inside decoded batches too
	e := start(t, testConfig(t, storetest.File(t)), fcfg)
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "shared", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	want := map[int32]map[int64]segment.Record{}
	const sealed, tail = 3000, 150
	produce(t, e.b, "shared", 0, sealed, want)
	waitFor(t, time.Minute, "the partition to seal", func() bool {
		d, err := e.b.DescribeTopic(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		return d.Partitions[0].SealedSegments > 1
	})
	produce(t, e.b, "shared", sealed, sealed+tail, want)
	n := int64(len(want[0]))

	info, err := e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("shared"))
	if err != nil {
		t.Fatal(err)
	}
	tkt := info.Endpoint[0].Ticket
	viaFlight := func() error {
		s, err := doGet(ctx, e.flight, tkt)
		if err != nil {
			return err
		}
		if int64(len(s.rows)) != n {
			return fmt.Errorf("flight: %d rows, want %d", len(s.rows), n)
		}
		for i, r := range s.rows {
			if w := want[0][int64(i)]; !reflect.DeepEqual(r.rec, w) {
				return fmt.Errorf("flight: row %d:\n got %+v\nwant %+v", i, r.rec, w)
			}
		}
		return nil
	}
	viaGRPC := func() error {
		recs, err := readGRPCRange(ctx, e.grpc, "shared", 0, 0, n)
		if err != nil {
			return err
		}
		if int64(len(recs)) != n {
			return fmt.Errorf("gRPC: %d records, want %d", len(recs), n)
		}
		for i, r := range recs {
			if w := want[0][int64(i)]; !sameRecord(r, w) {
				return fmt.Errorf("gRPC: offset %d:\n got %+v\nwant %+v", i, r, w)
			}
		}
		return nil
	}
	for i, read := range []func() error{viaFlight, viaGRPC, viaFlight, viaGRPC} {
		if err := read(); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	gets := e.b.Stats().Cache.Gets
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		read := viaFlight
		if i%2 == 1 {
			read = viaGRPC
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if err := read(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g := e.b.Stats().Cache.Gets; g != gets {
		t.Fatalf("the concurrent reads made %d GETs: they did not share the cached blocks", g-gets)
	}
}
