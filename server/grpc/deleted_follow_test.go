package grpcserver_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/tier"
)

// A follower reading a topic through a broker that did not handle its
// DeleteTopic ends with NOT_FOUND once that broker refreshes its topics,
// instead of waiting forever on a partition that no longer exists.
func TestFollowerOfTopicDeletedElsewhereEnds(t *testing.T) {
	s := tier.NewMemStore()
	a, _, _ := start(t, s, t.TempDir())
	b, bb, _ := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 1)
	produceTo(t, a, "t", 0, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := b.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: 0, Follow: true, MaxWaitMs: 10,
		Start: &stratapb.FetchRequest_Offset{Offset: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || len(resp.Records) != 1 {
		t.Fatalf("first response %v, %v; want the record", resp, err)
	}
	if _, err := a.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := bb.RefreshTopics(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		_, err = st.Recv()
		if err != nil {
			break
		}
	}
	if code(err) != codes.NotFound {
		t.Fatalf("the follower of a deleted topic ended with %v, want NotFound", err)
	}
}
