package broker_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

func TestGroupSplitsTakesOverAndSkipsNothing(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		c, _, _ := start(t, store, t.TempDir())
		if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "jobs", Partitions: 6}}); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 6; p++ {
			var recs []*stratapb.Record
			for i := 0; i < 100; i++ {
				recs = append(recs, &stratapb.Record{Value: []byte{byte(i)}})
			}
			if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "jobs", Partition: p, Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		join := func(timeout time.Duration) *stratapb.GroupAssignment {
			a, err := c.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: "workers", Topic: "jobs", SessionTimeoutMs: int32(timeout.Milliseconds())})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		a, b, d := join(time.Minute), join(time.Minute), join(300*time.Millisecond)
		hb := func(m *stratapb.GroupAssignment) *stratapb.GroupAssignment {
			r, err := c.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: "workers", MemberId: m.MemberId})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a, b, d = hb(a), hb(b), hb(d)
		covers := func(as ...*stratapb.GroupAssignment) []int32 {
			var all []int32
			for _, x := range as {
				all = append(all, x.Partitions...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			return all
		}
		if got := covers(a, b, d); len(got) != 6 || got[0] != 0 || got[5] != 5 || len(a.Partitions) != 2 || len(d.Partitions) != 2 {
			t.Fatalf("three members should split 6 partitions 2/2/2 with no overlap: %v %v %v", a.Partitions, b.Partitions, d.Partitions)
		}
		// Each member consumes half its partitions' records and commits.
		for _, m := range []*stratapb.GroupAssignment{a, b, d} {
			offs := map[int32]int64{}
			for _, p := range m.Partitions {
				offs[p] = 50
			}
			if _, err := c.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: "workers", MemberId: m.MemberId, Generation: m.Generation, Offsets: offs}); err != nil {
				t.Fatal(err)
			}
		}
		// d dies: it stops heartbeating; after its session the others
		// take its partitions over in a new generation.
		dead := d
		deadline := time.Now().Add(20 * time.Second)
		for {
			time.Sleep(100 * time.Millisecond)
			a, b = hb(a), hb(b)
			if len(covers(a, b)) == 6 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the survivors never took over: %v %v", a.Partitions, b.Partitions)
			}
		}
		if a.Generation <= dead.Generation {
			t.Fatalf("no new generation after the member died: %d", a.Generation)
		}
		// The dead member's late commit is rejected.
		_, err := c.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: "workers", MemberId: dead.MemberId, Generation: dead.Generation, Offsets: map[int32]int64{dead.Partitions[0]: 99}})
		if code(err) != codes.NotFound {
			t.Fatalf("commit from the expired member: %v, want NotFound", err)
		}
		// A stale generation from a live member is rejected too.
		_, err = c.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: "workers", MemberId: a.MemberId, Generation: a.Generation - 1, Offsets: map[int32]int64{a.Partitions[0]: 60}})
		if code(err) != codes.FailedPrecondition {
			t.Fatalf("commit from a stale generation: %v, want FailedPrecondition", err)
		}
		// Fetches that name a stale generation or a foreign partition are
		// rejected too, so a member presumed dead stops reading.
		fetchAs := func(m *stratapb.GroupAssignment, gen int64, p int32) error {
			s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "jobs", Partition: p, Group: "workers", MemberId: m.MemberId, Generation: gen})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}
		if err := fetchAs(a, a.Generation-1, a.Partitions[0]); code(err) != codes.FailedPrecondition {
			t.Fatalf("fetch from a stale generation: %v, want FailedPrecondition", err)
		}
		if err := fetchAs(a, a.Generation, b.Partitions[0]); code(err) != codes.FailedPrecondition {
			t.Fatalf("fetch of another member's partition: %v, want FailedPrecondition", err)
		}
		if err := fetchAs(dead, dead.Generation, dead.Partitions[0]); code(err) != codes.NotFound {
			t.Fatalf("fetch by the expired member: %v, want NotFound", err)
		}
		if err := fetchAs(a, a.Generation, a.Partitions[0]); err != nil {
			t.Fatalf("fetch by the current owner: %v", err)
		}
		// The survivors continue every partition exactly where it was
		// committed: nothing skipped, nothing re-read beyond the commit.
		committed, err := c.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: "workers"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range covers(a, b) {
			if committed.Offsets[p] != 50 {
				t.Fatalf("partition %d resumes at %d, want the committed 50", p, committed.Offsets[p])
			}
		}
		desc, err := c.DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: "workers"})
		if err != nil || len(desc.Members) != 2 || len(desc.Lag) != 6 || desc.Lag[0].LagRecords != 50 || desc.Lag[0].LagSeconds <= 0 {
			t.Fatalf("describe: %v, %v", desc, err)
		}
		// Reset is refused while members live, allowed after they leave.
		if _, err := c.ResetOffsets(ctx, &stratapb.ResetOffsetsRequest{Group: "workers", Topic: "jobs", To: &stratapb.ResetOffsetsRequest_Earliest{Earliest: true}}); code(err) != codes.FailedPrecondition {
			t.Fatalf("reset with live members: %v", err)
		}
		for _, m := range []*stratapb.GroupAssignment{a, b} {
			if _, err := c.LeaveGroup(ctx, &stratapb.LeaveGroupRequest{Group: "workers", MemberId: m.MemberId}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := c.ResetOffsets(ctx, &stratapb.ResetOffsetsRequest{Group: "workers", Topic: "jobs", To: &stratapb.ResetOffsetsRequest_Latest{Latest: true}})
		if err != nil || r.Offsets[3] != 100 {
			t.Fatalf("reset to latest: %v, %v", r, err)
		}
	})
}

// Committed offsets live in the bucket: a fresh broker sees them.
func TestGroupOffsetsSurviveABrokerRestart(t *testing.T) {
	ctx := context.Background()
	store := storetest.File(t)
	c, _, _ := start(t, store, t.TempDir())
	c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "j", Partitions: 1}})
	m, err := c.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: "g", Topic: "j"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: "g", MemberId: m.MemberId, Generation: m.Generation, Offsets: map[int32]int64{0: 42}}); err != nil {
		t.Fatal(err)
	}
	c2, _, _ := start(t, store, t.TempDir())
	got, err := c2.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: "g"})
	if err != nil || got.Offsets[0] != 42 || got.Topic != "j" {
		t.Fatalf("fresh broker sees %v, %v; want offset 42", got, err)
	}
	if l, _ := c2.ListGroups(ctx, &stratapb.ListGroupsRequest{}); len(l.Groups) != 1 || l.Groups[0] != "g" {
		t.Fatalf("list groups: %v", l)
	}
	if _, err := c2.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: "g", Topic: "other"}); code(err) != codes.NotFound && code(err) != codes.InvalidArgument {
		t.Fatalf("joining with another topic: %v", err)
	}
}
