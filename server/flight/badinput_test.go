package flightserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
)

// Every bad descriptor and ticket answers its status code with a message
// that says what to do; the server keeps serving.
func TestBadInput(t *testing.T) {
	e := start(t, testConfig(t, storetest.File(t)), flightserver.DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produceAt(t, e.b, "t", 0, 10, 1, 2, 3, 4, 5)
	// "ret" keeps only its newest segment: its log start moves up.
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "ret", Partitions: 1, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	big := make([]int64, 50)
	for round := 0; ; round++ {
		produceAt(t, e.b, "ret", 0, 1000, big...)
		d, err := e.b.DescribeTopic(ctx, "ret")
		if err != nil {
			t.Fatal(err)
		}
		if d.Partitions[0].LogStartOffset > 0 {
			break
		}
		if round == 200 {
			t.Fatal("retention never moved the log start of topic ret")
		}
		time.Sleep(50 * time.Millisecond)
	}
	id := topicID(t, e, "t")
	tkt := func(format string, args ...any) *flight.Ticket {
		return &flight.Ticket{Ticket: fmt.Appendf(nil, format, args...)}
	}
	cmd := func(s string) *flight.FlightDescriptor {
		return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(s)}
	}
	getInfo := func(d *flight.FlightDescriptor) func() error {
		return func() error { _, err := e.flight.GetFlightInfo(ctx, d); return err }
	}
	doGetErr := func(tk *flight.Ticket) func() error {
		return func() error { _, err := doGet(ctx, e.flight, tk); return err }
	}
	logStart := func() int64 {
		d, err := e.b.DescribeTopic(ctx, "ret")
		if err != nil {
			t.Fatal(err)
		}
		return d.Partitions[0].LogStartOffset
	}()
	retID := topicID(t, e, "ret")

	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		says string
	}{
		{"no descriptor type", getInfo(&flight.FlightDescriptor{}), codes.InvalidArgument, "PATH"},
		{"path of two", getInfo(&flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"t", "0"}}), codes.InvalidArgument, "names one topic"},
		{"cmd not JSON", getInfo(cmd("topic=t")), codes.InvalidArgument, "not a valid range request"},
		{"cmd unknown field", getInfo(cmd(`{"topic":"t","form_offset":{"0":1}}`)), codes.InvalidArgument, `unknown field "form_offset"`},
		{"cmd trailing data", getInfo(cmd(`{"topic":"t"} {}`)), codes.InvalidArgument, "trailing data"},
		{"cmd version", getInfo(cmd(`{"v":2,"topic":"t"}`)), codes.InvalidArgument, "version 2"},
		{"cmd no topic", getInfo(cmd(`{"partitions":[0]}`)), codes.InvalidArgument, "no topic"},
		{"cmd bad time", getInfo(cmd(`{"topic":"t","from_time":"yesterday"}`)), codes.InvalidArgument, "RFC 3339"},
		{"cmd bad partition key", getInfo(cmd(`{"topic":"t","from_offset":{"zero":1}}`)), codes.InvalidArgument, "not a valid range request"},
		{"cmd offset and time", getInfo(cmd(`{"topic":"t","from_offset":{"0":1},"from_time":5}`)), codes.InvalidArgument, "use one"},
		{"cmd to before from", getInfo(cmd(`{"topic":"t","from_offset":{"0":3},"to_offset":{"0":2}}`)), codes.InvalidArgument, "below its from_offset"},
		{"cmd to_time before from_time", getInfo(cmd(`{"topic":"t","from_time":5000,"to_time":4000}`)), codes.InvalidArgument, "before from_time"},
		{"cmd negative offset", getInfo(cmd(`{"topic":"t","from_offset":{"0":-1}}`)), codes.InvalidArgument, "not negative"},
		{"cmd offset of unnamed partition", getInfo(cmd(`{"topic":"t","partitions":[1],"from_offset":{"0":1}}`)), codes.InvalidArgument, "not in partitions"},
		{"cmd partition twice", getInfo(cmd(`{"topic":"t","partitions":[1,1]}`)), codes.InvalidArgument, "twice"},
		{"cmd too large", getInfo(cmd(`{"topic":"` + strings.Repeat("t", 70<<10) + `"}`)), codes.InvalidArgument, "limit"},
		{"unknown topic", getInfo(flightserver.PathDescriptor("nope")), codes.NotFound, "does not exist"},
		{"invalid topic name", getInfo(flightserver.PathDescriptor("bad name!")), codes.InvalidArgument, "invalid topic name"},
		{"broker's own topic", getInfo(flightserver.PathDescriptor("__share.t")), codes.InvalidArgument, "strata's own"},
		{"partition out of range", getInfo(cmd(`{"topic":"t","partitions":[2]}`)), codes.InvalidArgument, "partitions 0-1"},
		{"offset map partition out of range", getInfo(cmd(`{"topic":"t","to_offset":{"5":1}}`)), codes.InvalidArgument, "partitions 0-1"},
		{"from below the log start", getInfo(cmd(`{"topic":"ret","from_offset":{"0":0}}`)), codes.OutOfRange, "is below its log start"},
		{"to below the log start", getInfo(cmd(`{"topic":"ret","to_offset":{"0":0}}`)), codes.OutOfRange, "log start"},
		{"from past the high watermark", getInfo(cmd(`{"topic":"t","from_offset":{"0":6}}`)), codes.OutOfRange, "high watermark 5"},
		{"to past the high watermark", getInfo(cmd(`{"topic":"t","to_offset":{"0":99}}`)), codes.OutOfRange, "end at 5 at most"},
		{"to before from, defaults", getInfo(cmd(`{"topic":"t","from_offset":{"0":4},"to_offset":{"1":0},"partitions":[0,1]}`)), codes.OK, ""},
		{"schema of unknown topic", func() error { _, err := e.flight.GetSchema(ctx, flightserver.PathDescriptor("nope")); return err }, codes.NotFound, "does not exist"},
		{"list with criteria", func() error {
			s, err := e.flight.ListFlights(ctx, &flight.Criteria{Expression: []byte("t*")})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.InvalidArgument, "no criteria"},

		{"ticket not JSON", doGetErr(tkt("hello")), codes.InvalidArgument, "GetFlightInfo"},
		{"ticket empty", doGetErr(tkt("")), codes.InvalidArgument, "GetFlightInfo"},
		{"ticket unknown field", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":%q,"partition":0,"from":0,"to":1,"x":1}`, id)), codes.InvalidArgument, "unknown field"},
		{"ticket version", doGetErr(tkt(`{"v":9,"topic":"t","topic_id":%q,"partition":0,"from":0,"to":1}`, id)), codes.InvalidArgument, "version 9"},
		{"ticket to before from", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":%q,"partition":0,"from":3,"to":2}`, id)), codes.InvalidArgument, "ends before it starts"},
		{"ticket negative partition", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":%q,"partition":-1,"from":0,"to":1}`, id)), codes.InvalidArgument, "numbered from 0"},
		{"ticket partition out of range", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":%q,"partition":2,"from":0,"to":1}`, id)), codes.InvalidArgument, "partitions 0-1"},
		{"ticket of another identity", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":"00ff","partition":0,"from":0,"to":1}`)), codes.NotFound, "GetFlightInfo again"},
		{"ticket of an unknown topic", doGetErr(tkt(`{"v":1,"topic":"nope","topic_id":"00ff","partition":0,"from":0,"to":1}`)), codes.NotFound, "does not exist"},
		{"ticket of the broker's own topic", doGetErr(tkt(`{"v":1,"topic":"__share.t","topic_id":"00ff","partition":0,"from":0,"to":1}`)), codes.InvalidArgument, "strata's own"},
		{"ticket below the log start", doGetErr(tkt(`{"v":1,"topic":"ret","topic_id":%q,"partition":0,"from":0,"to":%d}`, retID, logStart)), codes.OutOfRange, "the log starts at"},
		{"ticket past the high watermark", doGetErr(tkt(`{"v":1,"topic":"t","topic_id":%q,"partition":0,"from":0,"to":6}`, id)), codes.OutOfRange, "high watermark 5"},
		{"ticket too large", doGetErr(tkt(`{"v":1,"topic":"%s"}`, strings.Repeat("t", 5000))), codes.InvalidArgument, "limit"},
		{"put", func() error {
			s, err := e.flight.DoPut(ctx)
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.Unimplemented, "read-only"},
		{"action", func() error {
			s, err := e.flight.DoAction(ctx, &flight.Action{Type: "drop"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.Unimplemented, "no actions"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.says) {
			t.Errorf("%s: got %v, want %v saying %q", tc.name, err, tc.code, tc.says)
		}
	}

	// A ticket of a deleted and re-created topic is refused, not read
	// against the new topic; the server still serves.
	fi, err := e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := doGet(ctx, e.flight, fi.Endpoint[0].Ticket); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("ticket of a deleted topic: %v, want NOT_FOUND", err)
	}
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produceAt(t, e.b, "t", 0, 10, 7, 8, 9, 10, 11, 12)
	if _, err := doGet(ctx, e.flight, fi.Endpoint[0].Ticket); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("ticket of a re-created topic: %v, want NOT_FOUND saying it was deleted", err)
	}
	fi, err = e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("t"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := doGet(ctx, e.flight, fi.Endpoint[0].Ticket)
	if err != nil || len(s.rows) != 6 || s.rows[0].rec.Timestamp != 7 {
		t.Fatalf("new ticket of the re-created topic: %+v %v", s, err)
	}
}

// topicID reads a topic's identity from one of the server's tickets.
func topicID(t *testing.T, e *env, topic string) string {
	t.Helper()
	id, _, err := e.b.TopicID(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// DoGet streams wait for memory beyond MemoryBytes: with room for one
// stream, a second DoGet waits until its deadline while the first is
// stalled by its reader, and runs once the first ends.
func TestDoGetMemoryBound(t *testing.T) {
	fcfg := flightserver.DefaultConfig()
	fcfg.BatchBytes, fcfg.ReadBytes = 4<<10, 16<<10
	fcfg.MemoryBytes = fcfg.StreamBytes() // one stream at a time
	e := start(t, testConfig(t, storetest.File(t)), fcfg)
	ctx := context.Background()
	if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: "m", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var recs []segment.Record
	for range 2000 {
		recs = append(recs, segment.Record{Timestamp: 1, Value: make([]byte, 1000)})
	}
	if _, err := e.b.Produce(ctx, &core.ProduceRequest{Topic: "m", Partition: 0, Records: recs}); err != nil {
		t.Fatal(err)
	}
	fi, err := e.flight.GetFlightInfo(ctx, flightserver.PathDescriptor("m"))
	if err != nil {
		t.Fatal(err)
	}
	// The first stream: read one batch, then stall. Its client's fixed
	// 64 KiB windows cannot hold 2 MB of records, so its DoGet stays
	// running.
	slow, err := flight.NewClientWithMiddleware(e.addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	ctx1, cancel1 := context.WithCancel(ctx)
	s1, err := slow.DoGet(ctx1, fi.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err = doGet(ctx2, e.flight, fi.Endpoint[0].Ticket)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a second stream beyond MemoryBytes: %v, want it to wait until its deadline", err)
	}
	cancel1()
	for {
		if _, err := s1.Recv(); err != nil {
			break
		}
	}
	// The first stream's memory comes back once its DoGet returns.
	var s *stream
	waitFor(t, 30*time.Second, "a stream to run after the first ended", func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err = doGet(c, e.flight, fi.Endpoint[0].Ticket)
		return err == nil
	})
	if len(s.rows) != 2000 || s.report == nil || s.report.Rows != 2000 {
		t.Fatalf("after the first stream ended: %d rows, report %+v", len(s.rows), s.report)
	}
}
