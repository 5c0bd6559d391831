package auth_test

import (
	"context"
	"math"
	"sync"
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

// fakeClock stands still until something sleeps on it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return nil
}

func TestQuotaBucketDelaysByTheDebt(t *testing.T) {
	clk := &fakeClock{now: timeAt(0)}
	q, err := auth.NewQuotas(auth.QuotaConfig{ProduceBytesPerSecond: 1000, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A full bucket (one second of the rate) and then one request into
	// debt go at once; each later 1000 bytes wait one second.
	for range 5 {
		if err := q.Wait(ctx, "p", auth.ProduceQuota); err != nil {
			t.Fatal(err)
		}
		q.Charge("p", auth.ProduceQuota, 1000)
	}
	if n, total := q.Delays(); n != 3 || total != 3*time.Second {
		t.Fatalf("%d delays, %v in all; want 3 delays of 1s", n, total)
	}
	// A request larger than the bucket is charged whole (in pieces).
	q.Charge("p", auth.ProduceQuota, 2500)
	q.Wait(ctx, "p", auth.ProduceQuota)
	if n, total := q.Delays(); n != 4 || total != 6500*time.Millisecond {
		t.Fatalf("%d delays, %v in all; want a 4th of 3.5s", n, total)
	}
	// Other principals and the fetch rate (unlimited) are untouched.
	q.Wait(ctx, "other", auth.ProduceQuota)
	q.Charge("other", auth.FetchQuota, 1<<30)
	q.Wait(ctx, "other", auth.FetchQuota)
	if n, _ := q.Delays(); n != 4 {
		t.Fatalf("%d delays: another principal or an unlimited rate was delayed", n)
	}
}

// A client over its quota is slowed, not failed: every produce and fetch
// succeeds, and the broker waited the debt off before each one over.
func TestQuotaSlowsProduceAndFetchThroughTheBroker(t *testing.T) {
	ctx := context.Background()
	req := &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: make([]byte, 900)}}}
	size := int64(proto.Size(req))
	clk := &fakeClock{now: time.Now()}
	q, err := auth.NewQuotas(auth.QuotaConfig{ProduceBytesPerSecond: size, FetchBytesPerSecond: 1000, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	g, err := auth.NewGuard(auth.Config{Quotas: q})
	if err != nil {
		t.Fatal(err)
	}
	_, _, addr := brokertest.StartServer(t, brokertest.Config(t, tier.NewMemStore()), grpcserver.DefaultConfig(), g.ServerOptions()...)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := stratapb.NewStrataClient(cc)
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Produce(ctx, req); err != nil {
			t.Fatalf("produce %d over the quota failed: %v", i, err)
		}
	}
	if n, total := q.Delays(); n != 3 || total != 3*time.Second {
		t.Fatalf("produce: %d delays, %v in all; want 3 of 1s (a bucket of one request, one into debt, then one per second)", n, total)
	}
	var respSize int64
	for i := range 4 {
		st, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Earliest{Earliest: true}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil || len(r.Records) != 5 {
			t.Fatalf("fetch %d over the quota: %v records, %v", i, len(r.GetRecords()), err)
		}
		respSize = int64(proto.Size(r))
		for {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
	}
	// Each response is charged after it is sent; the next waits the debt
	// off: (S-1000) + S + S bytes at 1000 bytes per second.
	want := time.Duration(float64(3*respSize-1000) / 1000 * float64(time.Second))
	n, total := q.Delays()
	if n != 6 || math.Abs(float64(total-3*time.Second-want)) > float64(time.Millisecond) {
		t.Fatalf("fetch: %d delays in all, %v of them for fetches; want 3 fetch delays of %v (responses of %d bytes)", n-3, total-3*time.Second, want, respSize)
	}
}
