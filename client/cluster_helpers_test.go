package client_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/membership"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// staticCluster is the cluster of an in-process test: a fixed member list
// the test changes (a member dies, a key is moved to another member), and
// ownership proposed as the gossip cluster does (membership.Owner over the
// live members), unless the test moved the key. Every broker has its own
// view (its Self and its Changes channel); a change signals them all.
type staticCluster struct {
	mu      sync.Mutex
	members []core.Node       // live, sorted by ID
	moved   map[string]string // key -> node ID, overriding the proposal
	views   []*clusterView
}

// clusterView is one broker's core.Cluster.
type clusterView struct {
	s       *staticCluster
	self    core.Node
	changes chan struct{}
}

var _ core.Cluster = (*clusterView)(nil)

func (v *clusterView) Self() core.Node            { return v.self }
func (v *clusterView) Members() []core.Node       { return v.s.live() }
func (v *clusterView) Owner(key string) core.Node { return v.s.owner(key) }
func (v *clusterView) Changes() <-chan struct{}   { return v.changes }
func (s *staticCluster) view(n core.Node) *clusterView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := &clusterView{s: s, self: n, changes: make(chan struct{}, 1)}
	s.views = append(s.views, v)
	return v
}

func (s *staticCluster) live() []core.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]core.Node(nil), s.members...)
}

// owner proposes key's owner: the member the test moved it to, else by
// rendezvous hashing over the live members.
func (s *staticCluster) owner(key string) core.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.moved[key]; ok {
		for _, n := range s.members {
			if n.ID == id {
				return n
			}
		}
	}
	ms := make([]membership.Member, len(s.members))
	for i, n := range s.members {
		ms[i] = membership.Member{Name: n.ID, ClientAddr: n.Addr}
	}
	m, ok := membership.Owner(key, ms)
	if !ok {
		return core.Node{}
	}
	return core.Node{ID: m.Name, Addr: m.ClientAddr}
}

// signal tells every broker the cluster changed. Caller holds mu.
func (s *staticCluster) signal() {
	for _, v := range s.views {
		select {
		case v.changes <- struct{}{}:
		default:
		}
	}
}

// move makes node id the owner of key.
func (s *staticCluster) move(key, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moved[key] = id
	s.signal()
}

// remove takes node id out of the members (it died): its keys move.
func (s *staticCluster) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range s.members {
		if n.ID == id {
			s.members = append(s.members[:i], s.members[i+1:]...)
		}
	}
	s.signal()
}

// clusterBroker is one broker of a testCluster.
type clusterBroker struct {
	node core.Node
	b    *core.Broker
	srv  *grpc.Server
}

// testCluster is n real brokers (core plus the gRPC front end, each on a
// loopback port) sharing one in-memory bucket, with a staticCluster (or,
// startGossipCluster, real membership over loopback gossip).
type testCluster struct {
	t       *testing.T
	sc      *staticCluster             // nil with gossip
	owner   func(key string) core.Node // the proposed owner of key
	brokers []*clusterBroker
	rec     *produceLog
}

// startCluster starts n brokers b0, b1, ... in a staticCluster. Every
// broker logs the produce requests it answers (tc.rec).
func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	sc := &staticCluster{moved: map[string]string{}}
	lis := listeners(t, n)
	for i, l := range lis {
		sc.members = append(sc.members, core.Node{ID: fmt.Sprintf("b%d", i), Addr: l.Addr().String()})
	}
	tc := &testCluster{t: t, sc: sc, owner: sc.owner, rec: &produceLog{}}
	tc.serve(lis, sc.members, func(n core.Node) core.Cluster { return sc.view(n) })
	return tc
}

func listeners(t *testing.T, n int) []net.Listener {
	t.Helper()
	var out []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// serve starts a broker per node, serving on its listener.
func (tc *testCluster) serve(lis []net.Listener, nodes []core.Node, clusterOf func(core.Node) core.Cluster) {
	t := tc.t
	t.Helper()
	store := tier.NewMemStore()
	for i, node := range nodes {
		cfg := brokertest.Config(t, store)
		cfg.Cluster = clusterOf(node)
		b, err := core.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fe, err := grpcserver.New(b, grpcserver.DefaultConfig())
		if err != nil {
			b.Close(context.Background())
			t.Fatal(err)
		}
		srv := grpc.NewServer(append(fe.ServerOptions(), grpc.UnaryInterceptor(tc.rec.interceptor(node.ID)))...)
		stratapb.RegisterStrataServer(srv, fe)
		go srv.Serve(lis[i])
		cb := &clusterBroker{node: node, b: b, srv: srv}
		tc.brokers = append(tc.brokers, cb)
		t.Cleanup(func() { tc.stop(cb) })
	}
}

func (tc *testCluster) stop(cb *clusterBroker) {
	if cb.srv == nil {
		return
	}
	cb.srv.Stop()
	cb.b.Close(context.Background())
	cb.srv, cb.b = nil, nil
}

// kill stops broker i's gRPC server and closes its core (without a
// hand-off); the cluster still lists it until remove.
func (tc *testCluster) kill(i int) { tc.stop(tc.brokers[i]) }

// byID returns the broker of node id.
func (tc *testCluster) byID(id string) *clusterBroker {
	for _, cb := range tc.brokers {
		if cb.node.ID == id {
			return cb
		}
	}
	tc.t.Fatalf("no broker %q", id)
	return nil
}

// partitionOwners returns the node ID owning each partition of topic.
func (tc *testCluster) partitionOwners(topic string, partitions int32) []string {
	out := make([]string, partitions)
	for p := range partitions {
		out[p] = tc.owner(core.PartitionKey(topic, p)).ID
	}
	return out
}

// produceLog records, per broker, the produce requests it accepted and
// those it redirected.
type produceLog struct {
	mu         sync.Mutex
	phase      int // set by the test
	accepted   []accepted
	redirected int
}

// setPhase starts a new phase of the test: what is accepted from now on
// is noted with it.
func (l *produceLog) setPhase(n int) {
	l.mu.Lock()
	l.phase = n
	l.mu.Unlock()
}

// accepted is a produce request a broker stored (or recognized as a
// retry), in the test's phase (produceLog.phase) when it answered.
type accepted struct {
	broker    string
	partition int32
	records   int
	phase     int
}

func (l *produceLog) interceptor(id string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		pr, ok := req.(*stratapb.ProduceRequest)
		if !ok {
			return resp, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, moved := notOwnerAnswer(err); moved {
			l.redirected++
		} else if err == nil {
			l.accepted = append(l.accepted, accepted{broker: id, partition: pr.Partition, records: len(pr.Records), phase: l.phase})
		}
		return resp, err
	}
}

func (l *produceLog) snapshot() ([]accepted, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]accepted(nil), l.accepted...), l.redirected
}

// notOwnerAnswer reports whether err is the front end's NOT_OWNER answer.
func notOwnerAnswer(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return "", false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == grpcserver.NotOwnerReason && info.Domain == grpcserver.ErrorDomain {
			return info.Metadata["owner_address"], true
		}
	}
	return "", false
}

// brokerIDs returns the distinct broker IDs of owners, sorted.
func brokerIDs(owners []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range owners {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}
