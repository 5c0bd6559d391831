package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

func produceValues(t *testing.T, b *Broker, topic string, p int32, n int) {
	t.Helper()
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i].Value = []byte(fmt.Sprint(i))
	}
	if _, err := b.Produce(context.Background(), &ProduceRequest{Topic: topic, Partition: p, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// A broker holds at most DefaultMaxGroups groups with members; reads of
// unknown groups take no room; a group whose last member left leaves
// memory and keeps its offsets in the bucket.
func TestGroupsInMemoryAreBounded(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "t", 0, 10)
	join := func(name string) (*Assignment, error) {
		return b.JoinGroup(ctx, name, "t", time.Hour)
	}
	first, err := join("g-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CommitOffsets(ctx, "g-0", first.MemberID, first.Generation, map[int32]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	n := DefaultMaxGroups
	for i := 1; i < n-1; i++ {
		if _, err := join(fmt.Sprintf("g-%d", i)); err != nil {
			t.Fatalf("join group %d of %d: %v", i, n, err)
		}
	}
	for i := 0; i < 100; i++ {
		ghost := fmt.Sprintf("ghost-%d", i)
		if _, _, err := b.FetchCommitted(ctx, ghost); err != nil {
			t.Fatal(err)
		}
		if _, err := b.DescribeGroup(ctx, ghost); !errors.Is(err, ErrGroupNotFound) {
			t.Fatalf("describe an unknown group: %v", err)
		}
		if _, err := b.Heartbeat(ghost, "x"); !errors.Is(err, ErrMemberNotFound) {
			t.Fatalf("heartbeat in an unknown group: %v", err)
		}
	}
	if _, err := join("g-last"); err != nil {
		t.Fatalf("join the %dth group after reads of unknown groups: %v", n, err)
	}
	_, err = join("g-over")
	if !errors.Is(err, ErrResourceExhausted) || !strings.Contains(err.Error(), fmt.Sprint(n)) {
		t.Fatalf("join group %d: %v, want ErrResourceExhausted naming the limit", n+1, err)
	}
	if err := b.LeaveGroup("g-0", first.MemberID); err != nil {
		t.Fatal(err)
	}
	if _, err := join("g-over"); err != nil {
		t.Fatalf("join after a group emptied: %v", err)
	}
	if _, got, err := b.FetchCommitted(ctx, "g-0"); err != nil || got[0] != 5 {
		t.Fatalf("the emptied group's offsets: %v, %v; want 5 (kept in the bucket)", got, err)
	}
}

func produceRecords(n int) []segment.Record {
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i].Value = []byte(fmt.Sprint(i))
	}
	return recs
}
