package auth

import (
	"fmt"
	"slices"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
)

// QuotaKind says which of a principal's byte rates an RPC's bytes count
// against.
type QuotaKind int

// The quota kinds.
const (
	NoQuota      QuotaKind = iota
	ProduceQuota           // the request messages' bytes (produce)
	FetchQuota             // the response messages' bytes (fetch, receive)
)

// Rule is what one RPC needs from its caller.
type Rule struct {
	// Public RPCs need no authentication (the health check: a load
	// balancer has no credentials). Nothing else is public.
	Public bool
	// Needs returns the accesses a request message needs; every one must
	// be allowed. On a stream it is asked of every message the client
	// sends. Nil: an authenticated caller is enough.
	Needs func(msg any) ([]Access, error)
	// Filter, when set, removes from a response what the caller may not
	// see: allowed reports whether an access is allowed.
	Filter func(resp any, allowed func(Access) bool)
	// Quota is the byte rate the RPC's messages count against.
	Quota QuotaKind
}

// Rules maps full gRPC method names ("/strata.v1.Strata/Produce") to
// their rules. A method without a rule is refused once enforcement is on.
type Rules map[string]Rule

// Merge returns the union of the rule sets; a method in several takes the
// later one's rule.
func Merge(sets ...Rules) Rules {
	out := Rules{}
	for _, s := range sets {
		for m, r := range s {
			out[m] = r
		}
	}
	return out
}

// Missing returns the methods of the service that have no rule, sorted
// (a test of each front end asserts there are none).
func (r Rules) Missing(sd *grpc.ServiceDesc) []string {
	var out []string
	for _, m := range sd.Methods {
		if _, ok := r["/"+sd.ServiceName+"/"+m.MethodName]; !ok {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
	}
	for _, s := range sd.Streams {
		if _, ok := r["/"+sd.ServiceName+"/"+s.StreamName]; !ok {
			out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	slices.Sort(out)
	return out
}

// On is a Needs of one message type: f's accesses for a *T, an error for
// any other message.
func On[T any](f func(*T) []Access) func(any) ([]Access, error) {
	return func(msg any) ([]Access, error) {
		m, ok := msg.(*T)
		if !ok {
			var want *T
			return nil, fmt.Errorf("auth: rule for %T got a %T", want, msg)
		}
		return f(m), nil
	}
}

// TopicAccess and the rest build accesses.
func TopicAccess(op Operation, name string) Access {
	return Access{Op: op, Resource: Resource{Type: Topic, Name: name}}
}

// GroupAccess is op on the group name.
func GroupAccess(op Operation, name string) Access {
	return Access{Op: op, Resource: Resource{Type: Group, Name: name}}
}

// ClusterAccess is op on the cluster.
func ClusterAccess(op Operation) Access {
	return Access{Op: op, Resource: Resource{Type: Cluster}}
}

func list(a ...Access) []Access { return a }

// StandardRules covers the standard gRPC services a broker may serve:
// the health check is public (probes carry no credentials; it tells
// nothing but serving or not), reflection needs an authenticated caller
// (it tells the API's shape, no data).
func StandardRules() Rules {
	return Rules{
		"/grpc.health.v1.Health/Check":                                   {Public: true},
		"/grpc.health.v1.Health/Watch":                                   {Public: true},
		"/grpc.health.v1.Health/List":                                    {Public: true},
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {},
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {},
	}
}

// StrataRules covers every RPC of the strata.v1.Strata service. Admin
// operations (creating and deleting topics, resetting offsets, creating,
// altering and deleting share groups, changing ACLs) need admin. Lists
// are filtered to what the caller may describe.
func StrataRules() Rules {
	type pb = stratapb.ProduceRequest
	consumeGroupTopic := func(group, topic string) []Access {
		return list(GroupAccess(Consume, group), TopicAccess(Consume, topic))
	}
	settle := Rule{Needs: On(func(r *stratapb.SettleRequest) []Access { return consumeGroupTopic(r.Group, r.Topic) })}
	return Rules{
		stratapb.Strata_CreateTopic_FullMethodName: {Needs: On(func(r *stratapb.CreateTopicRequest) []Access {
			return list(TopicAccess(Admin, r.GetConfig().GetName()))
		})},
		stratapb.Strata_DeleteTopic_FullMethodName: {Needs: On(func(r *stratapb.DeleteTopicRequest) []Access {
			return list(TopicAccess(Admin, r.Name))
		})},
		stratapb.Strata_ListTopics_FullMethodName: {Filter: func(resp any, allowed func(Access) bool) {
			r := resp.(*stratapb.ListTopicsResponse)
			r.Topics = slices.DeleteFunc(r.Topics, func(t *stratapb.TopicConfig) bool { return !allowed(TopicAccess(Describe, t.Name)) })
		}},
		stratapb.Strata_DescribeTopic_FullMethodName: {Needs: On(func(r *stratapb.DescribeTopicRequest) []Access {
			return list(TopicAccess(Describe, r.Name))
		})},
		stratapb.Strata_ListOffsets_FullMethodName: {Needs: On(func(r *stratapb.ListOffsetsRequest) []Access {
			return list(TopicAccess(Describe, r.Topic))
		})},
		stratapb.Strata_Produce_FullMethodName: {Quota: ProduceQuota, Needs: On(func(r *pb) []Access {
			return list(TopicAccess(Produce, r.Topic))
		})},
		// A producer id names no topic; it is worth nothing without
		// produce on one.
		stratapb.Strata_InitProducer_FullMethodName: {},
		stratapb.Strata_Fetch_FullMethodName: {Quota: FetchQuota, Needs: On(func(r *stratapb.FetchRequest) []Access {
			if r.Group != "" {
				return consumeGroupTopic(r.Group, r.Topic)
			}
			return list(TopicAccess(Consume, r.Topic))
		})},
		stratapb.Strata_JoinGroup_FullMethodName: {Needs: On(func(r *stratapb.JoinGroupRequest) []Access {
			return consumeGroupTopic(r.Group, r.Topic)
		})},
		stratapb.Strata_Heartbeat_FullMethodName: {Needs: On(func(r *stratapb.HeartbeatRequest) []Access {
			return list(GroupAccess(Consume, r.Group))
		})},
		stratapb.Strata_LeaveGroup_FullMethodName: {Needs: On(func(r *stratapb.LeaveGroupRequest) []Access {
			return list(GroupAccess(Consume, r.Group))
		})},
		stratapb.Strata_CommitOffsets_FullMethodName: {Needs: On(func(r *stratapb.CommitOffsetsRequest) []Access {
			return list(GroupAccess(Consume, r.Group))
		})},
		stratapb.Strata_FetchCommitted_FullMethodName: {Needs: On(func(r *stratapb.FetchCommittedRequest) []Access {
			return list(GroupAccess(Describe, r.Group))
		})},
		stratapb.Strata_ListGroups_FullMethodName: {Filter: func(resp any, allowed func(Access) bool) {
			r := resp.(*stratapb.ListGroupsResponse)
			r.Groups = slices.DeleteFunc(r.Groups, func(g string) bool { return !allowed(GroupAccess(Describe, g)) })
		}},
		stratapb.Strata_DescribeGroup_FullMethodName: {Needs: On(func(r *stratapb.DescribeGroupRequest) []Access {
			return list(GroupAccess(Describe, r.Group))
		})},
		stratapb.Strata_ResetOffsets_FullMethodName: {Needs: On(func(r *stratapb.ResetOffsetsRequest) []Access {
			return list(GroupAccess(Admin, r.Group), TopicAccess(Describe, r.Topic))
		})},
		stratapb.Strata_GetStats_FullMethodName: {Needs: On(func(*stratapb.GetStatsRequest) []Access {
			return list(ClusterAccess(Describe))
		})},
		// Metadata routes every client: the topics and groups it names
		// need describe, and an answer about every topic lists only those
		// the caller may describe.
		stratapb.Strata_Metadata_FullMethodName: {
			Needs: On(func(r *stratapb.MetadataRequest) []Access {
				var out []Access
				for _, t := range r.Topics {
					out = append(out, TopicAccess(Describe, t))
				}
				for _, g := range r.Groups {
					out = append(out, GroupAccess(Describe, g))
				}
				return out
			}),
			Filter: func(resp any, allowed func(Access) bool) {
				r := resp.(*stratapb.MetadataResponse)
				r.Topics = slices.DeleteFunc(r.Topics, func(t *stratapb.TopicMetadata) bool { return !allowed(TopicAccess(Describe, t.Name)) })
				r.Groups = slices.DeleteFunc(r.Groups, func(g *stratapb.GroupCoordinator) bool { return !allowed(GroupAccess(Describe, g.Group)) })
			},
		},
		// Creating a share group creates its dead-letter topic when it is
		// absent: admin on both.
		stratapb.Strata_CreateShareGroup_FullMethodName: {Needs: On(func(r *stratapb.CreateShareGroupRequest) []Access {
			c := r.GetConfig()
			return list(GroupAccess(Admin, c.GetGroup()), TopicAccess(Describe, c.GetTopic()), TopicAccess(Admin, deadLetterTopic(c)))
		})},
		stratapb.Strata_AlterShareGroup_FullMethodName: {Needs: On(func(r *stratapb.AlterShareGroupRequest) []Access {
			c := r.GetConfig()
			return list(GroupAccess(Admin, c.GetGroup()), TopicAccess(Describe, c.GetTopic()), TopicAccess(Admin, deadLetterTopic(c)))
		})},
		stratapb.Strata_DeleteShareGroup_FullMethodName: {Needs: On(func(r *stratapb.DeleteShareGroupRequest) []Access {
			return list(GroupAccess(Admin, r.Group))
		})},
		stratapb.Strata_ListShareGroups_FullMethodName: {
			Needs: On(func(r *stratapb.ListShareGroupsRequest) []Access {
				if r.Topic == "" {
					return nil
				}
				return list(TopicAccess(Describe, r.Topic))
			}),
			Filter: func(resp any, allowed func(Access) bool) {
				r := resp.(*stratapb.ListShareGroupsResponse)
				r.Groups = slices.DeleteFunc(r.Groups, func(g *stratapb.ShareGroupConfig) bool { return !allowed(GroupAccess(Describe, g.Group)) })
			},
		},
		stratapb.Strata_DescribeShareGroup_FullMethodName: {Needs: On(func(r *stratapb.DescribeShareGroupRequest) []Access {
			return list(GroupAccess(Describe, r.Group))
		})},
		stratapb.Strata_Receive_FullMethodName: {Quota: FetchQuota, Needs: On(func(r *stratapb.ReceiveRequest) []Access {
			return consumeGroupTopic(r.Group, r.Topic)
		})},
		stratapb.Strata_Ack_FullMethodName:     settle,
		stratapb.Strata_Nack_FullMethodName:    settle,
		stratapb.Strata_Release_FullMethodName: settle,
		stratapb.Strata_Reject_FullMethodName:  settle,
		stratapb.Strata_Extend_FullMethodName:  settle,
		stratapb.Strata_AddAcl_FullMethodName: {Needs: On(func(*stratapb.AddAclRequest) []Access {
			return list(ClusterAccess(Admin))
		})},
		stratapb.Strata_RemoveAcl_FullMethodName: {Needs: On(func(*stratapb.RemoveAclRequest) []Access {
			return list(ClusterAccess(Admin))
		})},
		stratapb.Strata_ListAcls_FullMethodName: {Needs: On(func(*stratapb.ListAclsRequest) []Access {
			return list(ClusterAccess(Describe))
		})},
	}
}

// deadLetterTopic is a share group's dead-letter topic (the core's
// default when the config names none).
func deadLetterTopic(c *stratapb.ShareGroupConfig) string {
	if c.GetDeadLetterTopic() != "" {
		return c.GetDeadLetterTopic()
	}
	return c.GetTopic() + ".dlq." + c.GetGroup()
}
