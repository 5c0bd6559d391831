package grpcserver_test

import (
	"context"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
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
	produceN(t, c, "j", 0, 50)
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

// produceN appends n one-byte records to partition p of topic.
func produceN(t *testing.T, c stratapb.StrataClient, topic string, p int32, n int) {
	t.Helper()
	var recs []*stratapb.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &stratapb.Record{Value: []byte{byte(i)}})
	}
	if _, err := c.Produce(context.Background(), &stratapb.ProduceRequest{Topic: topic, Partition: p, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

func joinGroup(t *testing.T, c stratapb.StrataClient, group, topic string) *stratapb.GroupAssignment {
	t.Helper()
	a, err := c.JoinGroup(context.Background(), &stratapb.JoinGroupRequest{Group: group, Topic: topic, SessionTimeoutMs: 600_000})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func heartbeat(t *testing.T, c stratapb.StrataClient, group string, m *stratapb.GroupAssignment) *stratapb.GroupAssignment {
	t.Helper()
	a, err := c.Heartbeat(context.Background(), &stratapb.HeartbeatRequest{Group: group, MemberId: m.MemberId})
	if err != nil {
		t.Fatalf("heartbeat of member %s: %v", m.MemberId, err)
	}
	return a
}

func commitOne(c stratapb.StrataClient, group string, m *stratapb.GroupAssignment, off int64) error {
	_, err := c.CommitOffsets(context.Background(), &stratapb.CommitOffsetsRequest{Group: group, MemberId: m.MemberId, Generation: m.Generation, Offsets: map[int32]int64{m.Partitions[0]: off}})
	return err
}

func committed(t *testing.T, c stratapb.StrataClient, group string) map[int32]int64 {
	t.Helper()
	r, err := c.FetchCommitted(context.Background(), &stratapb.FetchCommittedRequest{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	return r.Offsets
}

// groupFaults passes every call to the inner store, except for consumer
// group state: while lose is set, writes of it reach the store and then
// lose their answer; while fail is set, reads of it fail. The faults are
// tier.FaultStore's.
type groupFaults struct {
	tier.Store
	lossy *tier.FaultStore // over the same inner store: loses every write's answer
	down  *tier.FaultStore // over the same inner store: down
	lose  atomic.Bool
	fail  atomic.Bool
}

func newGroupFaults(inner tier.Store) *groupFaults {
	f := &groupFaults{
		Store: inner,
		lossy: tier.NewFaultStore(inner, tier.FaultConfig{LostResponseRate: 1}),
		down:  tier.NewFaultStore(inner, tier.FaultConfig{}),
	}
	f.down.SetDown(true)
	return f
}

func isGroupKey(key string) bool { return strings.HasPrefix(key, "groups/") }

func (f *groupFaults) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if f.lose.Load() && isGroupKey(key) {
		return f.lossy.PutIfAbsent(ctx, key, r, size)
	}
	return f.Store.PutIfAbsent(ctx, key, r, size)
}

func (f *groupFaults) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if f.lose.Load() && isGroupKey(key) {
		return f.lossy.PutIfMatch(ctx, key, etag, r, size)
	}
	return f.Store.PutIfMatch(ctx, key, etag, r, size)
}

func (f *groupFaults) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	if f.fail.Load() && isGroupKey(key) {
		return f.down.Get(ctx, key)
	}
	return f.Store.Get(ctx, key)
}

// A save whose answer was lost (the write applied) is recognized as ours:
// at once when reading back works, and at the next save when reading back
// failed too. No member loses its id, and no commit is lost.
func TestGroupSurvivesAnAmbiguousSave(t *testing.T) {
	ctx := context.Background()
	store := newGroupFaults(tier.NewMemStore())
	c, _, _ := start(t, store, t.TempDir())
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, c, "t", 0, 100)
	produceN(t, c, "t", 1, 100)
	a := joinGroup(t, c, "g", "t")
	b := joinGroup(t, c, "g", "t")
	a = heartbeat(t, c, "g", a)
	pa, pb := a.Partitions[0], b.Partitions[0]

	store.lose.Store(true)
	if err := commitOne(c, "g", a, 10); err != nil {
		t.Fatalf("a commit that was stored but whose answer was lost (reading back shows it): %v, want success", err)
	}
	store.fail.Store(true)
	err := commitOne(c, "g", b, 20)
	if code(err) != codes.Unavailable || !strings.Contains(err.Error(), "may or may not be stored") {
		t.Fatalf("a commit whose answer was lost and that could not be read back: %v, want Unavailable saying the outcome is unknown", err)
	}
	store.lose.Store(false)
	store.fail.Store(false)
	// The next save's condition fails on our own earlier write: it is
	// adopted, not taken for another broker's.
	if err := commitOne(c, "g", a, 30); err != nil {
		t.Fatalf("the commit after an ambiguous save: %v", err)
	}
	for _, m := range []*stratapb.GroupAssignment{a, b} {
		if got := heartbeat(t, c, "g", m); got.Generation != a.Generation {
			t.Fatalf("member %s is at generation %d after the ambiguous save, want %d (no rebalance)", m.MemberId, got.Generation, a.Generation)
		}
	}
	c2, _, _ := start(t, store, t.TempDir())
	if got := committed(t, c2, "g"); got[pa] != 30 || got[pb] != 20 {
		t.Fatalf("the bucket holds %v, want partition %d at 30 and partition %d at 20 (the ambiguous commit applied)", got, pa, pb)
	}
}

// When another broker changed the group's stored offsets, a commit is
// refused with a retryable error, the members stay, and the retry lands.
func TestGroupKeepsItsMembersWhenAnotherBrokerWritesItsOffsets(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	c1, _, _ := start(t, store, t.TempDir())
	c2, _, _ := start(t, store, t.TempDir())
	if _, err := c1.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, c1, "t", 0, 100)
	a := joinGroup(t, c1, "g", "t")
	if err := commitOne(c1, "g", a, 10); err != nil {
		t.Fatal(err)
	}
	// The second broker has no members of g: an operator resets it there.
	if _, err := c2.ResetOffsets(ctx, &stratapb.ResetOffsetsRequest{Group: "g", Topic: "t", To: &stratapb.ResetOffsetsRequest_Earliest{Earliest: true}}); err != nil {
		t.Fatal(err)
	}
	err := commitOne(c1, "g", a, 20)
	if code(err) != codes.Aborted || !strings.Contains(err.Error(), "another broker") || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("commit after another broker wrote the offsets: %v, want Aborted saying so and to retry", err)
	}
	if got := heartbeat(t, c1, "g", a); got.Generation != a.Generation {
		t.Fatalf("generation %d after the refused commit, want %d", got.Generation, a.Generation)
	}
	if err := commitOne(c1, "g", a, 20); err != nil {
		t.Fatalf("the retried commit: %v", err)
	}
	if got := committed(t, c2, "g"); got[0] != 20 {
		t.Fatalf("the bucket holds %v, want partition 0 at 20", got)
	}
}

// Committed and reset offsets lie within the partition: never negative,
// never past the high watermark (nor below the log start for a reset).
func TestGroupOffsetsMustLieInThePartition(t *testing.T) {
	ctx := context.Background()
	c, _, _ := start(t, tier.NewMemStore(), t.TempDir())
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, c, "t", 0, 100)
	a := joinGroup(t, c, "g", "t")
	if err := commitOne(c, "g", a, 1<<40); code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "high watermark 100") {
		t.Fatalf("commit of 2^40: %v, want OutOfRange naming the high watermark 100", err)
	}
	if err := commitOne(c, "g", a, -1); code(err) != codes.InvalidArgument {
		t.Fatalf("commit of -1: %v, want InvalidArgument", err)
	}
	if err := commitOne(c, "g", a, 100); err != nil {
		t.Fatalf("commit at the high watermark: %v", err)
	}
	if _, err := c.LeaveGroup(ctx, &stratapb.LeaveGroupRequest{Group: "g", MemberId: a.MemberId}); err != nil {
		t.Fatal(err)
	}
	reset := func(off int64) error {
		_, err := c.ResetOffsets(ctx, &stratapb.ResetOffsetsRequest{Group: "g", Topic: "t", To: &stratapb.ResetOffsetsRequest_Offset{Offset: off}})
		return err
	}
	for _, tc := range []struct {
		off  int64
		want codes.Code
	}{{-5, codes.InvalidArgument}, {101, codes.OutOfRange}, {1 << 40, codes.OutOfRange}} {
		if err := reset(tc.off); code(err) != tc.want || !strings.Contains(err.Error(), "[0, 100]") {
			t.Errorf("reset to %d: %v, want %v naming the range [0, 100]", tc.off, err, tc.want)
		}
	}
	if got := committed(t, c, "g"); got[0] != 100 {
		t.Fatalf("refused resets changed the committed offset to %v", got)
	}
	if err := reset(40); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, c, "g"); got[0] != 40 {
		t.Fatalf("after reset to 40: %v", got)
	}
}

// Describing a group and resetting its offsets read the partitions'
// bounds from their manifests, without opening (claiming) them.
func TestGroupReadsClaimNoPartition(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		c, _, _ := start(t, store, t.TempDir())
		if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "cold", Partitions: 2}}); err != nil {
			t.Fatal(err)
		}
		etags := map[int32]string{}
		cold := storetest.TopicStorageName(t, store, "cold")
		for p := int32(0); p < 2; p++ {
			m := &meta.Manifest{Topic: cold, Partition: p, Epoch: 1, LogStartOffset: 5, Segments: []meta.SegmentRef{
				{Key: meta.SegmentKey(cold, p, 0, 1), BaseOffset: 0, LastOffset: 9, Records: 10, Size: 100, Codec: "zstd"},
			}}
			etag, err := meta.NewManifestStore(store, cold, p).Create(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			etags[p] = etag
		}
		reset := func(to *stratapb.ResetOffsetsRequest) (map[int32]int64, error) {
			to.Group, to.Topic = "g", "cold"
			r, err := c.ResetOffsets(ctx, to)
			return r.GetOffsets(), err
		}
		if _, err := reset(&stratapb.ResetOffsetsRequest{To: &stratapb.ResetOffsetsRequest_Offset{Offset: 3}}); code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "[5, 10]") {
			t.Fatalf("reset below the log start: %v, want OutOfRange naming [5, 10]", err)
		}
		if got, err := reset(&stratapb.ResetOffsetsRequest{To: &stratapb.ResetOffsetsRequest_Latest{Latest: true}}); err != nil || got[0] != 10 || got[1] != 10 {
			t.Fatalf("reset to latest: %v, %v; want 10 everywhere", got, err)
		}
		if got, err := reset(&stratapb.ResetOffsetsRequest{To: &stratapb.ResetOffsetsRequest_Earliest{Earliest: true}}); err != nil || got[0] != 5 || got[1] != 5 {
			t.Fatalf("reset to earliest: %v, %v; want 5 everywhere", got, err)
		}
		if _, err := reset(&stratapb.ResetOffsetsRequest{To: &stratapb.ResetOffsetsRequest_Offset{Offset: 7}}); err != nil {
			t.Fatal(err)
		}
		d, err := c.DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: "g"})
		if err != nil || len(d.Lag) != 2 {
			t.Fatalf("describe: %v, %v", d, err)
		}
		for _, l := range d.Lag {
			if l.Committed != 7 || l.HighWatermark != 10 || l.LagRecords != 3 {
				t.Fatalf("partition %d: committed %d, high watermark %d, lag %d; want 7, 10, 3", l.Partition, l.Committed, l.HighWatermark, l.LagRecords)
			}
		}
		for p := int32(0); p < 2; p++ {
			m, etag, err := meta.NewManifestStore(store, cold, p).Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if etag != etags[p] || m.Epoch != 1 || m.Owner != "" {
				t.Fatalf("partition %d was claimed by a read: its manifest changed to epoch %d, owner %q", p, m.Epoch, m.Owner)
			}
		}
	})
}

// The group check of a fetch reads memory only: a member the broker does
// not know is NotFound (join again) even while the object store is down.
func TestFetchGroupCheckReadsNoBucket(t *testing.T) {
	ctx := context.Background()
	store := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{})
	c, _, _ := start(t, store, t.TempDir())
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, c, "t", 0, 10)
	a := joinGroup(t, c, "g", "t")
	fetchAs := func(group, member string, gen int64) error {
		s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: 0, Group: group, MemberId: member, Generation: gen, Start: &stratapb.FetchRequest_Earliest{Earliest: true}})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	store.SetDown(true)
	defer store.SetDown(false)
	gets := store.Stats().Gets
	if err := fetchAs("other", "other-1", 1); code(err) != codes.NotFound {
		t.Fatalf("fetch naming an unknown group's member while the store is down: %v, want NotFound", err)
	}
	if err := fetchAs("g", a.MemberId, a.Generation-1); code(err) != codes.FailedPrecondition {
		t.Fatalf("fetch from a stale generation: %v, want FailedPrecondition", err)
	}
	if err := fetchAs("g", a.MemberId, a.Generation); err != nil {
		t.Fatalf("fetch by the member from the local tail while the store is down: %v", err)
	}
	if n := store.Stats().Gets - gets; n != 0 {
		t.Fatalf("the group checks read the bucket %d times", n)
	}
}

// A follower from a stale generation stops at its next response: the
// group check runs before every response, not once per stream.
func TestFetchStopsAFollowerOfAStaleGeneration(t *testing.T) {
	ctx := context.Background()
	c, _, _ := start(t, tier.NewMemStore(), t.TempDir())
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produceN(t, c, "t", 0, 10)
	a := joinGroup(t, c, "g", "t")
	s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: 0, Group: "g", MemberId: a.MemberId, Generation: a.Generation,
		Follow: true, MaxWaitMs: 60_000, Start: &stratapb.FetchRequest_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || len(r.Records) != 10 {
		t.Fatalf("first response: %v, %v; want the 10 records", r, err)
	}
	joinGroup(t, c, "g", "t") // a new generation: a's is stale
	produceN(t, c, "t", 0, 10)
	if r, err := s.Recv(); code(err) != codes.FailedPrecondition {
		t.Fatalf("the stale follower's next response: %d records, %v; want FailedPrecondition", len(r.GetRecords()), err)
	}
}
