package grpcserver_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

func TestDeleteTopic(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		c, _, _ := start(t, store, t.TempDir())
		ctx := context.Background()
		c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "gone", Partitions: 2}})
		c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "kept", Partitions: 1}})
		var recs []*stratapb.Record
		for i := 0; i < 2000; i++ {
			recs = append(recs, &stratapb.Record{Value: make([]byte, 100)})
		}
		for _, topic := range []string{"gone", "kept"} {
			if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: topic, Partition: -1, Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := c.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "gone"})
		if err != nil || resp.ObjectsDeleted == 0 {
			t.Fatalf("delete: %v, %v", resp, err)
		}
		if _, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "gone"}); code(err) != codes.NotFound {
			t.Fatalf("describe after delete: %v", err)
		}
		left := 0
		store.List(ctx, "topics/gone/", func(tier.ObjectInfo) error { left++; return nil })
		if left != 0 {
			t.Fatalf("%d objects left under the deleted topic", left)
		}
		// Re-created, it starts empty; the other topic is untouched.
		c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "gone", Partitions: 2}})
		d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "gone"})
		if err != nil || d.Partitions[0].HighWatermark != 0 {
			t.Fatalf("re-created topic is not empty: %v %v", d, err)
		}
		k, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "kept"})
		if err != nil || k.Partitions[0].HighWatermark != 2000 {
			t.Fatalf("the other topic was damaged: %v %v", k, err)
		}
	})
}

// rawCodec sends bytes as they are: a client that speaks broken protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

func TestBadClientsDoNotHurtTheBroker(t *testing.T) {
	store := tier.NewMemStore()
	c, _, addr := start(t, store, t.TempDir())
	ctx := context.Background()
	c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}})

	// Malformed protobuf: a clear error, nothing appended.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, garbage := range [][]byte{{0xff, 0xff, 0xff}, {0x0a, 0x80}, []byte("not protobuf at all")} {
		var out []byte
		err := conn.Invoke(ctx, "/strata.v1.Strata/Produce", &garbage, &out)
		if code(err) != codes.Internal && code(err) != codes.InvalidArgument && code(err) != codes.NotFound {
			t.Fatalf("malformed request: %v", err)
		}
	}

	// A follower that never reads: the broker blocks on flow control for
	// that stream only.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := c.Fetch(sctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Earliest{Earliest: true}, Follow: true}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 900)
	for i := 0; i < 20; i++ {
		var recs []*stratapb.Record
		for j := 0; j < 1000; j++ {
			recs = append(recs, &stratapb.Record{Value: big})
		}
		if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: recs}); err != nil {
			t.Fatalf("produce while a reader stalls: %v", err)
		}
	}

	// Many idle connections: each costs a socket, not a failure.
	var idle []net.Conn
	for i := 0; i < 500; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		idle = append(idle, nc)
	}
	defer func() {
		for _, nc := range idle {
			nc.Close()
		}
	}()
	if len(idle) < 100 {
		t.Fatalf("only %d idle connections could be opened", len(idle))
	}
	// The broker still serves everyone else, and the log is whole.
	d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "t"})
	if err != nil || d.Partitions[0].HighWatermark != 20000 {
		t.Fatalf("after the bad clients: %v %v", d, err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	s, err := c.Fetch(rctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Offset{Offset: 19999}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || len(m.Records) != 1 || m.Records[0].Offset != 19999 {
		t.Fatalf("a normal reader after the bad clients: %v %v", m, err)
	}
}
