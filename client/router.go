package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
)

// router is the cluster's API as Client.API returns it: each call goes to
// the broker that should answer it (route.go).
//   - Produce naming a partition: its owner (callRouted: NOT_OWNER
//     redirects, failover while the owner cannot be reached). A request
//     with partition -1 goes to any broker, which answers NOT_OWNER
//     (NotOwner reads it) unless it owns every partition the records go
//     to: in a cluster, name the partition.
//   - Fetch and ListOffsets: the partition's owner (it has the freshest
//     tail), else any other broker; a fetch fails over only before its
//     first response. A group member's fetch goes to the group's
//     coordinator, the broker that checks its generation.
//   - JoinGroup, Heartbeat, LeaveGroup, CommitOffsets, ResetOffsets: the
//     group's coordinator (callRouted).
//   - DescribeGroup, FetchCommitted: the coordinator first (it knows the
//     live members), else any broker.
//   - Receive naming one partition: its owner (callRouted). Ack, Nack,
//     Release, Reject, Extend whose receipts are all of one partition
//     (ReceiptPartition): its owner. Otherwise any broker, which serves
//     what it owns (a ShareConsumer asks every owner itself: share.go).
//   - Everything else: any live broker, the next one when a broker cannot
//     be reached (callAny). A create or delete whose broker became
//     unreachable mid-call may have been applied: its retry elsewhere may
//     then answer ALREADY_EXISTS or NOT_FOUND.
type router struct{ c *Client }

var _ stratapb.StrataClient = router{}

// unary runs one routed call and returns its response.
func unary[Req, Resp any](ctx context.Context, send func(context.Context, call) error, req Req, rpc func(stratapb.StrataClient) func(context.Context, Req, ...grpc.CallOption) (Resp, error), opts []grpc.CallOption) (Resp, error) {
	var resp Resp
	err := send(ctx, func(ctx context.Context, api stratapb.StrataClient) error {
		var err error
		resp, err = rpc(api)(ctx, req, opts...)
		return err
	})
	return resp, err
}

func (r router) anyBroker(ctx context.Context, do call) error { return r.c.callAny(ctx, "", do) }

func (r router) coordinatorFirst(group string) func(context.Context, call) error {
	return func(ctx context.Context, do call) error {
		return r.c.callAny(ctx, r.c.coordinatorOf(ctx, group), do)
	}
}

func (r router) ownerFirst(topic string, p int32) func(context.Context, call) error {
	return func(ctx context.Context, do call) error {
		return r.c.callAny(ctx, r.c.ownerOf(ctx, topic, p), do)
	}
}

func (r router) group(group string) func(context.Context, call) error {
	return func(ctx context.Context, do call) error { return r.c.callGroup(ctx, group, do) }
}

func (r router) CreateTopic(ctx context.Context, in *stratapb.CreateTopicRequest, opts ...grpc.CallOption) (*stratapb.CreateTopicResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.CreateTopicRequest, ...grpc.CallOption) (*stratapb.CreateTopicResponse, error) {
		return a.CreateTopic
	}, opts)
}

func (r router) DeleteTopic(ctx context.Context, in *stratapb.DeleteTopicRequest, opts ...grpc.CallOption) (*stratapb.DeleteTopicResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.DeleteTopicRequest, ...grpc.CallOption) (*stratapb.DeleteTopicResponse, error) {
		return a.DeleteTopic
	}, opts)
}

func (r router) ListTopics(ctx context.Context, in *stratapb.ListTopicsRequest, opts ...grpc.CallOption) (*stratapb.ListTopicsResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ListTopicsRequest, ...grpc.CallOption) (*stratapb.ListTopicsResponse, error) {
		return a.ListTopics
	}, opts)
}

func (r router) DescribeTopic(ctx context.Context, in *stratapb.DescribeTopicRequest, opts ...grpc.CallOption) (*stratapb.DescribeTopicResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.DescribeTopicRequest, ...grpc.CallOption) (*stratapb.DescribeTopicResponse, error) {
		return a.DescribeTopic
	}, opts)
}

func (r router) ListOffsets(ctx context.Context, in *stratapb.ListOffsetsRequest, opts ...grpc.CallOption) (*stratapb.ListOffsetsResponse, error) {
	return unary(ctx, r.ownerFirst(in.GetTopic(), in.GetPartition()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ListOffsetsRequest, ...grpc.CallOption) (*stratapb.ListOffsetsResponse, error) {
		return a.ListOffsets
	}, opts)
}

func (r router) Produce(ctx context.Context, in *stratapb.ProduceRequest, opts ...grpc.CallOption) (*stratapb.ProduceResponse, error) {
	send := r.anyBroker
	if in.GetPartition() >= 0 {
		send = func(ctx context.Context, do call) error {
			return r.c.callPartition(ctx, in.GetTopic(), in.GetPartition(), do)
		}
	}
	return unary(ctx, send, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ProduceRequest, ...grpc.CallOption) (*stratapb.ProduceResponse, error) {
		return a.Produce
	}, opts)
}

func (r router) InitProducer(ctx context.Context, in *stratapb.InitProducerRequest, opts ...grpc.CallOption) (*stratapb.InitProducerResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.InitProducerRequest, ...grpc.CallOption) (*stratapb.InitProducerResponse, error) {
		return a.InitProducer
	}, opts)
}

func (r router) JoinGroup(ctx context.Context, in *stratapb.JoinGroupRequest, opts ...grpc.CallOption) (*stratapb.GroupAssignment, error) {
	return unary(ctx, r.group(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.JoinGroupRequest, ...grpc.CallOption) (*stratapb.GroupAssignment, error) {
		return a.JoinGroup
	}, opts)
}

func (r router) Heartbeat(ctx context.Context, in *stratapb.HeartbeatRequest, opts ...grpc.CallOption) (*stratapb.GroupAssignment, error) {
	return unary(ctx, r.group(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.HeartbeatRequest, ...grpc.CallOption) (*stratapb.GroupAssignment, error) {
		return a.Heartbeat
	}, opts)
}

func (r router) LeaveGroup(ctx context.Context, in *stratapb.LeaveGroupRequest, opts ...grpc.CallOption) (*stratapb.LeaveGroupResponse, error) {
	return unary(ctx, r.group(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.LeaveGroupRequest, ...grpc.CallOption) (*stratapb.LeaveGroupResponse, error) {
		return a.LeaveGroup
	}, opts)
}

func (r router) CommitOffsets(ctx context.Context, in *stratapb.CommitOffsetsRequest, opts ...grpc.CallOption) (*stratapb.CommitOffsetsResponse, error) {
	return unary(ctx, r.group(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.CommitOffsetsRequest, ...grpc.CallOption) (*stratapb.CommitOffsetsResponse, error) {
		return a.CommitOffsets
	}, opts)
}

func (r router) FetchCommitted(ctx context.Context, in *stratapb.FetchCommittedRequest, opts ...grpc.CallOption) (*stratapb.FetchCommittedResponse, error) {
	return unary(ctx, r.coordinatorFirst(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.FetchCommittedRequest, ...grpc.CallOption) (*stratapb.FetchCommittedResponse, error) {
		return a.FetchCommitted
	}, opts)
}

func (r router) ListGroups(ctx context.Context, in *stratapb.ListGroupsRequest, opts ...grpc.CallOption) (*stratapb.ListGroupsResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ListGroupsRequest, ...grpc.CallOption) (*stratapb.ListGroupsResponse, error) {
		return a.ListGroups
	}, opts)
}

func (r router) DescribeGroup(ctx context.Context, in *stratapb.DescribeGroupRequest, opts ...grpc.CallOption) (*stratapb.DescribeGroupResponse, error) {
	return unary(ctx, r.coordinatorFirst(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.DescribeGroupRequest, ...grpc.CallOption) (*stratapb.DescribeGroupResponse, error) {
		return a.DescribeGroup
	}, opts)
}

func (r router) ResetOffsets(ctx context.Context, in *stratapb.ResetOffsetsRequest, opts ...grpc.CallOption) (*stratapb.ResetOffsetsResponse, error) {
	return unary(ctx, r.group(in.GetGroup()), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ResetOffsetsRequest, ...grpc.CallOption) (*stratapb.ResetOffsetsResponse, error) {
		return a.ResetOffsets
	}, opts)
}

func (r router) GetStats(ctx context.Context, in *stratapb.GetStatsRequest, opts ...grpc.CallOption) (*stratapb.BrokerStats, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.GetStatsRequest, ...grpc.CallOption) (*stratapb.BrokerStats, error) {
		return a.GetStats
	}, opts)
}

func (r router) Metadata(ctx context.Context, in *stratapb.MetadataRequest, opts ...grpc.CallOption) (*stratapb.MetadataResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.MetadataRequest, ...grpc.CallOption) (*stratapb.MetadataResponse, error) {
		return a.Metadata
	}, opts)
}

// Fetch opens the stream at the partition's owner (a group member's at
// its group's coordinator). Until the first response arrives, a stream
// that cannot reach its broker is opened again at the next one (not for
// a group member's fetch: only the coordinator can check it).
func (r router) Fetch(ctx context.Context, in *stratapb.FetchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[stratapb.FetchResponse], error) {
	var addrs []string
	if in.GetGroup() != "" {
		addrs = []string{r.c.coordinatorOf(ctx, in.GetGroup())}
	} else {
		owner := r.c.ownerOf(ctx, in.GetTopic(), in.GetPartition())
		addrs = append([]string{owner}, r.c.candidates()...)
	}
	s := &failoverStream{c: r.c, ctx: ctx, req: in, opts: opts, tried: map[string]bool{}, rest: addrs}
	if err := s.next(); err != nil {
		return nil, err
	}
	return s, nil
}

// failoverStream is a fetch stream that, until its first response, is
// opened again at the next broker when its broker cannot be reached.
type failoverStream struct {
	grpc.ServerStreamingClient[stratapb.FetchResponse] // the current stream
	c                                                  *Client
	ctx                                                context.Context
	req                                                *stratapb.FetchRequest
	opts                                               []grpc.CallOption
	addr                                               string
	rest                                               []string
	tried                                              map[string]bool
	got                                                bool // a response arrived: no more failover
}

// next opens the stream at the next broker not tried yet that can be
// reached (gRPC fails a stream at once when its connection is down).
func (s *failoverStream) next() error {
	var err error
	for len(s.rest) > 0 {
		addr := s.rest[0]
		s.rest = s.rest[1:]
		if s.tried[addr] {
			continue
		}
		s.tried[addr] = true
		api, derr := s.c.stub(addr)
		if derr != nil {
			return derr
		}
		var st grpc.ServerStreamingClient[stratapb.FetchResponse]
		st, err = api.Fetch(s.ctx, s.req, s.opts...)
		if err == nil {
			s.ServerStreamingClient, s.addr = st, addr
			return nil
		}
		if !unreachable(err) || s.ctx.Err() != nil {
			return err
		}
		s.c.markDown(addr)
		s.c.refreshInBackground()
	}
	return err
}

func (s *failoverStream) Recv() (*stratapb.FetchResponse, error) {
	for {
		m, err := s.ServerStreamingClient.Recv()
		if err == nil {
			if !s.got {
				s.got = true
				s.c.answered(s.addr)
			}
			return m, nil
		}
		if s.got || !unreachable(err) || s.ctx.Err() != nil || len(s.rest) == 0 {
			return nil, err
		}
		s.c.markDown(s.addr)
		s.c.refreshInBackground()
		prev := s.addr
		if nerr := s.next(); nerr != nil || s.addr == prev {
			return nil, cmpErr(nerr, err)
		}
	}
}

// cmpErr is err, or else def.
func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

func (r router) CreateShareGroup(ctx context.Context, in *stratapb.CreateShareGroupRequest, opts ...grpc.CallOption) (*stratapb.CreateShareGroupResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.CreateShareGroupRequest, ...grpc.CallOption) (*stratapb.CreateShareGroupResponse, error) {
		return a.CreateShareGroup
	}, opts)
}

func (r router) AlterShareGroup(ctx context.Context, in *stratapb.AlterShareGroupRequest, opts ...grpc.CallOption) (*stratapb.AlterShareGroupResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.AlterShareGroupRequest, ...grpc.CallOption) (*stratapb.AlterShareGroupResponse, error) {
		return a.AlterShareGroup
	}, opts)
}

func (r router) DeleteShareGroup(ctx context.Context, in *stratapb.DeleteShareGroupRequest, opts ...grpc.CallOption) (*stratapb.DeleteShareGroupResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.DeleteShareGroupRequest, ...grpc.CallOption) (*stratapb.DeleteShareGroupResponse, error) {
		return a.DeleteShareGroup
	}, opts)
}

func (r router) ListShareGroups(ctx context.Context, in *stratapb.ListShareGroupsRequest, opts ...grpc.CallOption) (*stratapb.ListShareGroupsResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ListShareGroupsRequest, ...grpc.CallOption) (*stratapb.ListShareGroupsResponse, error) {
		return a.ListShareGroups
	}, opts)
}

func (r router) DescribeShareGroup(ctx context.Context, in *stratapb.DescribeShareGroupRequest, opts ...grpc.CallOption) (*stratapb.DescribeShareGroupResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.DescribeShareGroupRequest, ...grpc.CallOption) (*stratapb.DescribeShareGroupResponse, error) {
		return a.DescribeShareGroup
	}, opts)
}

// partitionRoute sends to the owner of partition p of topic when p >= 0,
// else to any broker.
func (r router) partitionRoute(topic string, p int32) func(context.Context, call) error {
	if p < 0 {
		return r.anyBroker
	}
	return func(ctx context.Context, do call) error { return r.c.callPartition(ctx, topic, p, do) }
}

func (r router) Receive(ctx context.Context, in *stratapb.ReceiveRequest, opts ...grpc.CallOption) (*stratapb.ReceiveResponse, error) {
	p := int32(-1)
	if len(in.GetPartitions()) == 1 {
		p = in.Partitions[0]
	}
	return unary(ctx, r.partitionRoute(in.GetTopic(), p), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ReceiveRequest, ...grpc.CallOption) (*stratapb.ReceiveResponse, error) {
		return a.Receive
	}, opts)
}

// settleRoute routes a settle: to the owner of its receipts' partition
// when they share one.
func (r router) settleRoute(in *stratapb.SettleRequest) func(context.Context, call) error {
	p := int32(-1)
	for i, rc := range in.GetReceipts() {
		q, err := ReceiptPartition(rc)
		if err != nil || (i > 0 && q != p) {
			return r.anyBroker
		}
		p = q
	}
	return r.partitionRoute(in.GetTopic(), p)
}

func (r router) Ack(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error) {
	return unary(ctx, r.settleRoute(in), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.SettleRequest, ...grpc.CallOption) (*stratapb.SettleResponse, error) {
		return a.Ack
	}, opts)
}

func (r router) Nack(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error) {
	return unary(ctx, r.settleRoute(in), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.SettleRequest, ...grpc.CallOption) (*stratapb.SettleResponse, error) {
		return a.Nack
	}, opts)
}

func (r router) Release(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error) {
	return unary(ctx, r.settleRoute(in), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.SettleRequest, ...grpc.CallOption) (*stratapb.SettleResponse, error) {
		return a.Release
	}, opts)
}

func (r router) Reject(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error) {
	return unary(ctx, r.settleRoute(in), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.SettleRequest, ...grpc.CallOption) (*stratapb.SettleResponse, error) {
		return a.Reject
	}, opts)
}

func (r router) Extend(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error) {
	return unary(ctx, r.settleRoute(in), in, func(a stratapb.StrataClient) func(context.Context, *stratapb.SettleRequest, ...grpc.CallOption) (*stratapb.SettleResponse, error) {
		return a.Extend
	}, opts)
}
