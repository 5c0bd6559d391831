package auth_test

import (
	"context"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/internal/brokertest"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// The fetch quota counts the bytes sent, stored blocks included: fetches
// of sealed history as stored blocks wait off their whole messages.
func TestQuotaCountsStoredBlocks(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	cfg := brokertest.Config(t, store)
	cfg.Partition.Segment.BlockSize = 4 << 10
	w, waddr := brokertest.Start(t, cfg)
	wc := dialAPI(t, waddr)
	if _, err := wc.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	for range 20 { // batches of 5 records: a block holds whole batches
		var recs []*stratapb.Record
		for range 5 {
			recs = append(recs, &stratapb.Record{Value: make([]byte, 900)})
		}
		if _, err := wc.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Records: recs, Acks: stratapb.Acks_ACKS_LOCAL}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil { // seals everything
		t.Fatal(err)
	}

	clk := &fakeClock{now: time.Now()}
	q, err := auth.NewQuotas(auth.QuotaConfig{FetchBytesPerSecond: 1000, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	g, err := auth.NewGuard(auth.Config{Quotas: q})
	if err != nil {
		t.Fatal(err)
	}
	_, _, addr := brokertest.StartServer(t, brokertest.Config(t, store), grpcserver.DefaultConfig(), g.ServerOptions()...)
	c := dialAPI(t, addr)
	var respSize int64
	for i := range 3 {
		st, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: 1 << 20, StoredBlocks: true})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil || len(r.Blocks) < 2 {
			t.Fatalf("fetch %d: %d blocks, %v; want the sealed blocks", i, len(r.GetBlocks()), err)
		}
		respSize = int64(proto.Size(r))
		for {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
	}
	// As for records: (S-1000) + S bytes waited off at 1000 bytes/s.
	want := time.Duration(float64(2*respSize-1000) / 1000 * float64(time.Second))
	if n, total := q.Delays(); n != 2 || math.Abs(float64(total-want)) > float64(time.Millisecond) {
		t.Fatalf("%d delays, %v in all; want 2 adding up to %v (responses of %d bytes)", n, total, want, respSize)
	}
}

func dialAPI(t *testing.T, addr string) stratapb.StrataClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return stratapb.NewStrataClient(cc)
}
