// Command flight is a minimal Arrow Flight client of strata: it reads the
// whole of a topic (every partition, log start to high watermark) from a
// broker started with `strata serve --flight-listen HOST:PORT`, and prints
// the rows, the record batches and the throughput. docs/flight.md
// describes the descriptors, tickets and the report read here.
//
//	go run ./examples/flight --flight 127.0.0.1:7430 --topic events
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flightserver "github.com/stratalog/strata/server/flight"
)

func main() {
	addr := flag.String("flight", "127.0.0.1:7430", "the broker's Flight address")
	topic := flag.String("topic", "", "the topic to read")
	flag.Parse()
	if *topic == "" {
		log.Fatal("--topic is required")
	}
	ctx := context.Background()
	c, err := flight.NewClientWithMiddleware(*addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// A PATH descriptor is a whole topic; a CMD descriptor (a JSON
	// flightserver.Command) is a range of offsets or times.
	info, err := c.GetFlightInfo(ctx, flightserver.PathDescriptor(*topic))
	if err != nil {
		log.Fatal(err)
	}
	var rows, batches int64
	for _, ep := range info.Endpoint { // one per partition
		s, err := c.DoGet(ctx, ep.Ticket)
		if err != nil {
			log.Fatal(err)
		}
		r, err := flight.NewRecordReader(s)
		if err != nil {
			log.Fatal(err)
		}
		for r.Next() {
			rec := r.Record() // columns: partition, offset, timestamp, key, value, headers
			rows += rec.NumRows()
			batches++
			if rep, ok := flightserver.ParseReport(r.LatestAppMetadata()); ok {
				fmt.Printf("partition %d: offsets [%d, %d): %d rows, %d did not fit the value schema\n", rep.Partition, rep.From, rep.To, rep.Rows, rep.Invalid)
			}
		}
		if err := r.Err(); err != nil {
			log.Fatal(err)
		}
		r.Release()
	}
	took := time.Since(start)
	fmt.Printf("%d rows in %d batches in %v (%.0f rows/s); the broker announced %d\n", rows, batches, took.Round(time.Millisecond), float64(rows)/took.Seconds(), info.TotalRecords)
}
