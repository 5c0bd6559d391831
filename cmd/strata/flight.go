package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/client"
	flightserver "github.com/stratalog/strata/server/flight"
)

const flightUsage = `usage: strata flight get TOPIC --flight HOST:PORT [--partition P] [--from-offset N] [--to-offset N] [--from-time T] [--to-time T] [--print] [--tls ... --token ...]

Reads a range of TOPIC over Arrow Flight (a broker started with
strata serve --flight-listen) with the arrow Go Flight client, and prints
per partition and in total the rows, record batches, Arrow bytes and the
throughput, and the rows whose value did not fit the topic's value schema.
Without a range it reads every partition from its log start to its high
watermark now. --from-offset/--to-offset are offsets of the partition
--partition names; --from-time/--to-time (RFC 3339 or milliseconds since
the Unix epoch) apply to every partition read. The range is [from, to).
--print also writes every row as a JSON object (binary columns base64).
The TLS and token flags are those of every command (docs/security.md);
reading needs consume on the topic.
`

func flightCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "get" {
		return errors.New(strings.SplitN(flightUsage, "\n", 2)[0])
	}
	return flightGet(ctx, args[1:])
}

func flightGet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("flight get", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), flightUsage+"\n"); fs.PrintDefaults() }
	addr := withConnFlags(fs, fs.String("flight", "127.0.0.1:7430", "the broker's Arrow Flight address HOST:PORT (its strata serve --flight-listen)"))
	partition := fs.Int("partition", -1, "read only this partition; -1 reads every partition")
	fromOffset := fs.Int64("from-offset", -1, "start at this offset (of the partition --partition names)")
	toOffset := fs.Int64("to-offset", -1, "end before this offset (of the partition --partition names)")
	fromTime := fs.String("from-time", "", "start each partition at its first record at or after this time (RFC 3339 or ms)")
	toTime := fs.String("to-time", "", "end each partition before its first record at or after this time (RFC 3339 or ms)")
	printRows := fs.Bool("print", false, "also print every row as a JSON object")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New(strings.SplitN(flightUsage, "\n", 2)[0])
	}
	cmd := &flightserver.Command{V: flightserver.Version, Topic: pos[0]}
	if *partition < -1 {
		return fmt.Errorf("--partition %d: use a partition number, or -1 for every partition", *partition)
	}
	if *partition >= 0 {
		cmd.Partitions = []int32{int32(*partition)}
	}
	for _, o := range []struct {
		name string
		v    int64
		m    *map[int32]int64
	}{{"from-offset", *fromOffset, &cmd.FromOffset}, {"to-offset", *toOffset, &cmd.ToOffset}} {
		if o.v < 0 {
			continue
		}
		if *partition < 0 {
			return fmt.Errorf("--%s %d is an offset in one partition: add --partition P (or read every partition with --from-time/--to-time)", o.name, o.v)
		}
		*o.m = map[int32]int64{int32(*partition): o.v}
	}
	for _, o := range []struct {
		name, v string
		m       **flightserver.Millis
	}{{"from-time", *fromTime, &cmd.FromTime}, {"to-time", *toTime, &cmd.ToTime}} {
		if o.v == "" {
			continue
		}
		m, err := parseFlightTime(o.v)
		if err != nil {
			return fmt.Errorf("--%s %q: %v", o.name, o.v, err)
		}
		*o.m = m
	}
	desc, err := cmd.Descriptor()
	if err != nil {
		return err
	}
	dopts, err := flightDialOptions(addr)
	if err != nil {
		return err
	}
	fc, err := flight.NewClientWithMiddleware(*addr, nil, nil, append(dopts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))...)
	if err != nil {
		return fmt.Errorf("flight %s: %w", *addr, err)
	}
	defer fc.Close()
	start := time.Now()
	info, err := fc.GetFlightInfo(ctx, desc)
	if err != nil {
		return fmt.Errorf("flight %s: get flight info: %w", *addr, rpcErr(err))
	}
	var total flightTotals
	for _, ep := range info.Endpoint {
		got, err := readEndpoint(ctx, fc, ep, *printRows)
		if err != nil {
			return err
		}
		r := got.report
		fmt.Fprintf(stdout, "partition %d: offsets [%d, %d): %d rows in %d batches, %s, %s\n", r.Partition, r.From, r.To, r.Rows, got.batches, mb(got.bytes), got.took.Round(time.Millisecond))
		if r.Invalid > 0 {
			fmt.Fprintf(stdout, "partition %d: %d rows did not fit the topic's value schema (their values are in _raw, the reason in _invalid); first offsets %v\n", r.Partition, r.Invalid, r.FirstInvalidOffsets)
		}
		total.add(got)
	}
	took := time.Since(start)
	secs := max(took.Seconds(), 1e-9)
	fmt.Fprintf(stdout, "total: %d rows in %d batches, %s, %s: %.0f rows/s, %.1f MB/s", total.rows, total.batches, mb(total.bytes), took.Round(time.Millisecond), float64(total.rows)/secs, float64(total.bytes)/1e6/secs)
	if total.invalid > 0 {
		fmt.Fprintf(stdout, "; %d rows did not fit the value schema", total.invalid)
	}
	fmt.Fprintln(stdout)
	return nil
}

// flightDialOptions are the gRPC dial options of the connection flags
// (--tls, --tls-ca, --tls-cert, --token, ...) that go with the --flight
// flag addr, as dial reads them for --broker (conn.go).
func flightDialOptions(addr *string) ([]grpc.DialOption, error) {
	connFlagsMu.Lock()
	f := connFlagsOf[addr]
	connFlagsMu.Unlock()
	useTLS := *f.tls || *f.ca != "" || *f.cert != "" || *f.key != "" || *f.serverName != ""
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if useTLS {
		cfg, err := client.LoadTLSConfig(client.TLSFiles{CAFile: *f.ca, CertFile: *f.cert, KeyFile: *f.key, ServerName: *f.serverName})
		if err != nil {
			return nil, err
		}
		opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	}
	tok := *f.tok
	if tok == "" {
		tok = strings.TrimSpace(os.Getenv("STRATA_TOKEN"))
	}
	switch {
	case tok == "":
	case useTLS || *f.insecureToken:
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: useTLS}))
	default:
		return nil, errors.New("a bearer token (--token or STRATA_TOKEN) is sent over TLS only: give --tls-ca (or --tls), or --insecure-token to send it in clear text")
	}
	return opts, nil
}

// bearer sends a bearer token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// parseFlightTime reads RFC 3339 or milliseconds since the Unix epoch.
func parseFlightTime(s string) (*flightserver.Millis, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		m := flightserver.Millis(n)
		return &m, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, errors.New("use RFC 3339, like 2026-11-22T10:00:00Z, or milliseconds since the Unix epoch")
	}
	return flightserver.MillisOf(t), nil
}

// endpointRead is what one DoGet stream carried.
type endpointRead struct {
	batches int
	bytes   int64 // Arrow buffer bytes of the batches
	took    time.Duration
	report  flightserver.Report
}

type flightTotals struct {
	rows, bytes, invalid int64
	batches              int
}

func (t *flightTotals) add(r *endpointRead) {
	t.rows += r.report.Rows
	t.bytes += r.bytes
	t.invalid += r.report.Invalid
	t.batches += r.batches
}

// readEndpoint reads one endpoint's stream to its end and checks that it
// ended with the server's report.
func readEndpoint(ctx context.Context, fc flight.Client, ep *flight.FlightEndpoint, print bool) (*endpointRead, error) {
	start := time.Now()
	s, err := fc.DoGet(ctx, ep.Ticket)
	if err != nil {
		return nil, fmt.Errorf("do get: %w", rpcErr(err))
	}
	rdr, err := flight.NewRecordReader(s)
	if err != nil {
		return nil, fmt.Errorf("do get: %w", rpcErr(err))
	}
	defer rdr.Release()
	out := &endpointRead{}
	var rows int64
	var reported bool
	for rdr.Next() {
		rec := rdr.Record()
		out.batches++
		out.bytes += recordBytes(rec)
		rows += rec.NumRows()
		if print {
			if err := array.RecordToJSON(rec, stdout); err != nil {
				return nil, err
			}
		}
		if r, ok := flightserver.ParseReport(rdr.LatestAppMetadata()); ok {
			out.report, reported = r, true
		}
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("do get (after %d rows): %w", rows, rpcErr(err))
	}
	switch {
	case !reported:
		return nil, fmt.Errorf("do get: the stream ended after %d rows without the server's report: it is incomplete; read the range again", rows)
	case out.report.Rows != rows:
		return nil, fmt.Errorf("do get: the server reports %d rows, %d arrived", out.report.Rows, rows)
	}
	out.took = time.Since(start)
	return out, nil
}

// mb spells a byte count in MB.
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// recordBytes is the bytes of a record batch's Arrow buffers.
func recordBytes(rec arrow.Record) int64 {
	var n int64
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, c := range rec.Columns() {
		add(c.Data())
	}
	return n
}
