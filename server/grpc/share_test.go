package grpcserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/tier"
)

// shareSetup creates a topic of parts partitions and a share group on it
// (starting at the end), and returns a client.
func shareSetup(t *testing.T, topic string, parts int32) stratapb.StrataClient {
	t.Helper()
	c, _, _ := start(t, tier.NewMemStore(), t.TempDir())
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: topic, Partitions: parts}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{Config: &stratapb.ShareGroupConfig{Topic: topic, Group: "workers"}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func produceValues(t *testing.T, c stratapb.StrataClient, topic string, values ...string) {
	t.Helper()
	var recs []*stratapb.Record
	for _, v := range values {
		recs = append(recs, &stratapb.Record{Value: []byte(v)})
	}
	if _, err := c.Produce(context.Background(), &stratapb.ProduceRequest{Topic: topic, Partition: -1, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// receiveN receives until n deliveries came (each receive long-polls).
func receiveN(t *testing.T, c stratapb.StrataClient, topic string, n int) []*stratapb.Delivery {
	t.Helper()
	var out []*stratapb.Delivery
	for range 20 {
		if len(out) >= n {
			break
		}
		resp, err := c.Receive(context.Background(), &stratapb.ReceiveRequest{Topic: topic, Group: "workers", MaxRecords: int32(n - len(out)), WaitMs: 2000})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.Deliveries...)
	}
	if len(out) != n {
		t.Fatalf("received %d deliveries, want %d", len(out), n)
	}
	return out
}

func receipts(ds []*stratapb.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Receipt)
	}
	return out
}

// The round trip over the wire: create, produce, receive (each record
// once, leased, with a receipt naming its partition), ack; a second ack
// of the same receipts is refused per receipt; the group counts what
// was acked.
func TestShareGroupRoundTrip(t *testing.T) {
	c := shareSetup(t, "jobs", 2)
	ctx := context.Background()
	if _, err := c.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{Config: &stratapb.ShareGroupConfig{Topic: "jobs", Group: "workers"}}); code(err) != codes.AlreadyExists {
		t.Fatalf("creating the group again: %v, want ALREADY_EXISTS", err)
	}
	list, err := c.ListShareGroups(ctx, &stratapb.ListShareGroupsRequest{Topic: "jobs"})
	if err != nil || len(list.Groups) != 1 || list.Groups[0].Group != "workers" || list.Groups[0].Seed == 0 || len(list.Groups[0].StartOffsets) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	var values []string
	for i := range 10 {
		values = append(values, fmt.Sprintf("job-%d", i))
	}
	produceValues(t, c, "jobs", values...)
	ds := receiveN(t, c, "jobs", 10)
	seen := map[string]bool{}
	for _, d := range ds {
		v := string(d.Record.Value)
		if seen[v] {
			t.Fatalf("%s delivered twice", v)
		}
		seen[v] = true
		if d.DeliveryCount != 1 || d.LeaseUntilMs <= time.Now().UnixMilli() || d.Record.Partition != d.Partition {
			t.Fatalf("delivery %v: want count 1, a lease in the future and the record's partition", d)
		}
		if !strings.HasPrefix(d.Receipt, fmt.Sprintf("%d-", d.Partition)) {
			t.Fatalf("receipt %q does not start with its partition %d", d.Receipt, d.Partition)
		}
	}
	// Everything is leased: nothing more to receive.
	if resp, err := c.Receive(ctx, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 10}); err != nil || len(resp.Deliveries) != 0 {
		t.Fatalf("receive while every record is leased: %v, %v", resp, err)
	}
	// Extend answers the new lease end.
	ext, err := c.Extend(ctx, &stratapb.SettleRequest{Topic: "jobs", Group: "workers", Receipts: receipts(ds[:1]), DelayMs: 60_000})
	if err != nil || !ext.Outcomes[0].Ok || ext.Outcomes[0].LeaseUntilMs < time.Now().Add(50*time.Second).UnixMilli() {
		t.Fatalf("extend: %v, %v", ext, err)
	}
	ack, err := c.Ack(ctx, &stratapb.SettleRequest{Topic: "jobs", Group: "workers", Receipts: receipts(ds)})
	if err != nil || len(ack.Outcomes) != 10 {
		t.Fatalf("ack: %v, %v", ack, err)
	}
	for i, o := range ack.Outcomes {
		if !o.Ok || o.Receipt != ds[i].Receipt {
			t.Fatalf("ack outcome %d: %v", i, o)
		}
	}
	again, err := c.Ack(ctx, &stratapb.SettleRequest{Topic: "jobs", Group: "workers", Receipts: append(receipts(ds[:1]), "0-AAAAAAAA")})
	if err != nil {
		t.Fatal(err)
	}
	if o := again.Outcomes[0]; o.Ok || o.Code != "FAILED_PRECONDITION" || !strings.Contains(o.Message, "already settled") {
		t.Fatalf("a second ack: %v, want FAILED_PRECONDITION saying it is settled", o)
	}
	if o := again.Outcomes[1]; o.Ok || o.Code != "INVALID_ARGUMENT" || !strings.Contains(o.Message, "malformed") {
		t.Fatalf("a forged receipt: %v, want INVALID_ARGUMENT saying it is malformed", o)
	}
	d, err := c.DescribeShareGroup(ctx, &stratapb.DescribeShareGroupRequest{Topic: "jobs", Group: "workers"})
	if err != nil || d.Totals.Acked != 10 || d.Totals.InFlight != 0 || len(d.Partitions) != 2 {
		t.Fatalf("describe after the acks: %v, %v", d, err)
	}
	for _, p := range d.Partitions {
		if !p.Live {
			t.Fatalf("partition %d described from its snapshot, though this broker holds its state", p.Partition)
		}
	}
	if err := deleteGroup(c, "jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(ctx, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 1}); code(err) != codes.NotFound {
		t.Fatalf("receive from a deleted group: %v, want NOT_FOUND", err)
	}
}

func deleteGroup(c stratapb.StrataClient, topic string) error {
	_, err := c.DeleteShareGroup(context.Background(), &stratapb.DeleteShareGroupRequest{Topic: topic, Group: "workers"})
	return err
}

// Nack (with a delay), release and reject over the wire: a released
// record comes back at once without its delivery counted, a nacked one
// with it counted, a rejected one lands in the dead-letter topic with its
// reason.
func TestShareGroupNackReleaseReject(t *testing.T) {
	c := shareSetup(t, "jobs", 1)
	ctx := context.Background()
	produceValues(t, c, "jobs", "a", "b", "c")
	ds := receiveN(t, c, "jobs", 3)
	byValue := map[string]*stratapb.Delivery{}
	for _, d := range ds {
		byValue[string(d.Record.Value)] = d
	}
	settle := func(rpc func(context.Context, *stratapb.SettleRequest) (*stratapb.SettleResponse, error), req *stratapb.SettleRequest) {
		t.Helper()
		req.Topic, req.Group = "jobs", "workers"
		resp, err := rpc(ctx, req)
		if err != nil || !resp.Outcomes[0].Ok {
			t.Fatalf("settle %v: %v, %v", req, resp, err)
		}
	}
	settle(func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Release(ctx, r)
	},
		&stratapb.SettleRequest{Receipts: []string{byValue["a"].Receipt}})
	settle(func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Nack(ctx, r)
	},
		&stratapb.SettleRequest{Receipts: []string{byValue["b"].Receipt}, DelayMs: 1000, Reason: "try later"})
	settle(func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Reject(ctx, r)
	},
		&stratapb.SettleRequest{Receipts: []string{byValue["c"].Receipt}, Reason: "poison"})
	got := map[string]int32{}
	for _, d := range receiveN(t, c, "jobs", 2) {
		got[string(d.Record.Value)] = d.DeliveryCount
	}
	if got["a"] != 1 || got["b"] != 2 || len(got) != 2 {
		t.Fatalf("redelivered %v: want a (released: count 1) and b (nacked: count 2), not c", got)
	}
	// The rejected record is in the dead-letter topic, with its reason.
	var dead *stratapb.Record
	for range 50 {
		s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "jobs.dlq.workers", Partition: 0, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxWaitMs: 200})
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Records) > 0 {
			dead = m.Records[0]
			break
		}
	}
	if dead == nil || string(dead.Value) != "c" {
		t.Fatalf("dead-letter topic holds %v, want the rejected record c", dead)
	}
	headers := map[string]string{}
	for _, h := range dead.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers["strata-dlq-reason"] != "poison" || headers["strata-dlq-origin-topic"] != "jobs" {
		t.Fatalf("dead letter headers %v: want the reject's reason and the origin topic", headers)
	}
}

// Every malformed share request is refused with INVALID_ARGUMENT (or the
// core's own code) and a message saying what to send; the broker keeps
// serving.
func TestShareBadInputs(t *testing.T) {
	c := shareSetup(t, "jobs", 2)
	ctx := context.Background()
	produceValues(t, c, "jobs", "x")
	ds := receiveN(t, c, "jobs", 1)
	rc := ds[0].Receipt
	recv := func(r *stratapb.ReceiveRequest) error {
		r.Topic, r.Group = "jobs", cmp(r.Group, "workers")
		_, err := c.Receive(ctx, r)
		return err
	}
	type settleRPC func(context.Context, *stratapb.SettleRequest) (*stratapb.SettleResponse, error)
	settle := func(rpc settleRPC, r *stratapb.SettleRequest) error {
		r.Topic, r.Group = "jobs", "workers"
		_, err := rpc(ctx, r)
		return err
	}
	ack := func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Ack(ctx, r)
	}
	nack := func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Nack(ctx, r)
	}
	release := func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Release(ctx, r)
	}
	extend := func(ctx context.Context, r *stratapb.SettleRequest) (*stratapb.SettleResponse, error) {
		return c.Extend(ctx, r)
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = rc
	}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
		says string
	}{
		{"max_records 0", recv(&stratapb.ReceiveRequest{}), codes.InvalidArgument, "ask for 1 to 1000 records"},
		{"max_records 1001", recv(&stratapb.ReceiveRequest{MaxRecords: 1001}), codes.InvalidArgument, "ask for 1 to 1000 records"},
		{"negative wait", recv(&stratapb.ReceiveRequest{MaxRecords: 1, WaitMs: -1}), codes.InvalidArgument, "wait 0 (answer at once) to 20000 ms"},
		{"wait too long", recv(&stratapb.ReceiveRequest{MaxRecords: 1, WaitMs: 20001}), codes.InvalidArgument, "wait 0 (answer at once) to 20000 ms"},
		{"visibility too short", recv(&stratapb.ReceiveRequest{MaxRecords: 1, VisibilityMs: 999}), codes.InvalidArgument, "or 0 for the group's visibility"},
		{"visibility too long", recv(&stratapb.ReceiveRequest{MaxRecords: 1, VisibilityMs: 12*3600*1000 + 1}), codes.InvalidArgument, "(12 h)"},
		{"negative max_bytes", recv(&stratapb.ReceiveRequest{MaxRecords: 1, MaxBytes: -1}), codes.InvalidArgument, "max_bytes -1 is negative"},
		{"negative partition", recv(&stratapb.ReceiveRequest{MaxRecords: 1, Partitions: []int32{-1}}), codes.InvalidArgument, "name partitions from 0"},
		{"partition twice", recv(&stratapb.ReceiveRequest{MaxRecords: 1, Partitions: []int32{1, 1}}), codes.InvalidArgument, "named twice"},
		{"partition out of range", recv(&stratapb.ReceiveRequest{MaxRecords: 1, Partitions: []int32{5}}), codes.InvalidArgument, "partitions 0-1"},
		{"unknown group", recv(&stratapb.ReceiveRequest{MaxRecords: 1, Group: "nobody"}), codes.NotFound, "does not exist"},
		{"no receipts", settle(ack, &stratapb.SettleRequest{}), codes.InvalidArgument, "send 1 to 1000 receipts"},
		{"too many receipts", settle(ack, &stratapb.SettleRequest{Receipts: many}), codes.InvalidArgument, "split it into smaller requests"},
		{"negative nack delay", settle(nack, &stratapb.SettleRequest{Receipts: []string{rc}, DelayMs: -1}), codes.InvalidArgument, "(366 days)"},
		{"nack delay too long", settle(nack, &stratapb.SettleRequest{Receipts: []string{rc}, DelayMs: 367 * 24 * 3600 * 1000}), codes.InvalidArgument, "(366 days)"},
		{"extend without a length", settle(extend, &stratapb.SettleRequest{Receipts: []string{rc}}), codes.InvalidArgument, "the new lease length from now"},
		{"extend too long", settle(extend, &stratapb.SettleRequest{Receipts: []string{rc}, DelayMs: 12*3600*1000 + 1}), codes.InvalidArgument, "(12 h)"},
		{"ack with a delay", settle(ack, &stratapb.SettleRequest{Receipts: []string{rc}, DelayMs: 5}), codes.InvalidArgument, "ack takes no delay_ms"},
		{"release with a reason", settle(release, &stratapb.SettleRequest{Receipts: []string{rc}, Reason: "why"}), codes.InvalidArgument, "release takes no reason"},
		{"reason too long", settle(nack, &stratapb.SettleRequest{Receipts: []string{rc}, Reason: strings.Repeat("r", 1025)}), codes.InvalidArgument, "over the limit of 1024"},
		{"create without config", func() error { _, err := c.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{}); return err }(), codes.InvalidArgument, "config is required"},
		{"create with a bad visibility", func() error {
			_, err := c.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{Config: &stratapb.ShareGroupConfig{Topic: "jobs", Group: "g2", VisibilityMs: 10}})
			return err
		}(), codes.InvalidArgument, "visibility timeout"},
		{"alter an unknown group", func() error {
			_, err := c.AlterShareGroup(ctx, &stratapb.AlterShareGroupRequest{Config: &stratapb.ShareGroupConfig{Topic: "jobs", Group: "nobody"}})
			return err
		}(), codes.NotFound, "does not exist"},
		{"group on an unknown topic", func() error {
			_, err := c.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{Config: &stratapb.ShareGroupConfig{Topic: "nope", Group: "g"}})
			return err
		}(), codes.NotFound, "nope"},
	} {
		if code(tc.err) != tc.want || !strings.Contains(tc.err.Error(), tc.says) {
			t.Errorf("%s: got %v, want %v saying %q", tc.name, tc.err, tc.want, tc.says)
		}
	}
	// None of it settled the lease, and the broker still serves: the
	// receipt acks.
	resp, err := c.Ack(ctx, &stratapb.SettleRequest{Topic: "jobs", Group: "workers", Receipts: []string{rc}})
	if err != nil || !resp.Outcomes[0].Ok {
		t.Fatalf("ack after the bad requests: %v, %v", resp, err)
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// A receive's long poll answers (empty) before the call's deadline rather
// than failing with DEADLINE_EXCEEDED, and a record produced while it
// waits ends the wait.
func TestReceiveLongPoll(t *testing.T) {
	c := shareSetup(t, "jobs", 1)
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	resp, err := c.Receive(short, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 1, WaitMs: 20000})
	if err != nil || len(resp.Deliveries) != 0 {
		t.Fatalf("a long poll past the call's deadline: %v, %v; want an empty answer", resp, err)
	}
	got := make(chan *stratapb.ReceiveResponse, 1)
	go func() {
		resp, err := c.Receive(ctx, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 1, WaitMs: 20000})
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	time.Sleep(50 * time.Millisecond) // let the receive start waiting
	produceValues(t, c, "jobs", "late")
	if r := <-got; r == nil || len(r.Deliveries) != 1 || string(r.Deliveries[0].Record.Value) != "late" {
		t.Fatalf("the waiting receive got %v, want the record produced meanwhile", r)
	}
}

// A receive answers at most max_bytes of records (but always one); what
// the core leased past it is released at once, its delivery not
// counted.
func TestReceiveMaxBytesReleasesTheRest(t *testing.T) {
	c := shareSetup(t, "jobs", 1)
	ctx := context.Background()
	big := strings.Repeat("v", 900)
	produceValues(t, c, "jobs", big+"0", big+"1", big+"2", big+"3")
	resp, err := c.Receive(ctx, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 4, WaitMs: 2000, MaxBytes: 1000})
	if err != nil || len(resp.Deliveries) != 1 {
		t.Fatalf("a receive bounded to 1000 bytes: %v, %v; want one record", resp, err)
	}
	rest, err := c.Receive(ctx, &stratapb.ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 4})
	if err != nil || len(rest.Deliveries) != 3 {
		t.Fatalf("the records past the bound: %v, %v; want the 3 others available at once", rest, err)
	}
	for _, d := range rest.Deliveries {
		if d.DeliveryCount != 1 {
			t.Fatalf("%s was delivered with count %d: the release counted a delivery", d.Record.Value[900:], d.DeliveryCount)
		}
	}
}
