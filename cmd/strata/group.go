package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

func groupCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: strata group list|describe|reset [GROUP] --broker HOST:PORT")
	}
	fs := flag.NewFlagSet("group "+args[0], flag.ContinueOnError)
	brokerAddr := fs.String("broker", "127.0.0.1:7420", "broker address")
	topic := fs.String("topic", "", "topic (reset)")
	to := fs.String("to", "", "reset to: earliest, latest, an offset, or an RFC3339 time (reset)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	c, closeConn, err := dial(*brokerAddr)
	if err != nil {
		return err
	}
	defer closeConn()
	switch args[0] {
	case "list":
		resp, err := c.ListGroups(ctx, &stratapb.ListGroupsRequest{})
		if err != nil {
			return rpcErr(err)
		}
		for _, g := range resp.Groups {
			fmt.Fprintln(stdout, g)
		}
	case "describe":
		if len(pos) != 1 {
			return errors.New("usage: strata group describe GROUP --broker HOST:PORT")
		}
		d, err := c.DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: pos[0]})
		if err != nil {
			return rpcErr(err)
		}
		fmt.Fprintf(stdout, "group %s on topic %s, generation %d, %d members\n", d.Group, d.Topic, d.Generation, len(d.Members))
		for _, m := range d.Members {
			fmt.Fprintf(stdout, "member %s\tpartitions %v\n", m.MemberId, m.Partitions)
		}
		fmt.Fprintf(stdout, "partition\tcommitted\thigh_watermark\tlag_records\tlag_seconds\n")
		for _, l := range d.Lag {
			fmt.Fprintf(stdout, "%d\t%d\t%d\t%d\t%.1f\n", l.Partition, l.Committed, l.HighWatermark, l.LagRecords, l.LagSeconds)
		}
	case "reset":
		if len(pos) != 1 || *topic == "" || *to == "" {
			return errors.New("usage: strata group reset GROUP --topic TOPIC --to earliest|latest|OFFSET|RFC3339 --broker HOST:PORT")
		}
		req := &stratapb.ResetOffsetsRequest{Group: pos[0], Topic: *topic}
		var off int64
		switch {
		case *to == "earliest":
			req.To = &stratapb.ResetOffsetsRequest_Earliest{Earliest: true}
		case *to == "latest":
			req.To = &stratapb.ResetOffsetsRequest_Latest{Latest: true}
		case func() bool { _, err := fmt.Sscan(*to, &off); return err == nil }():
			req.To = &stratapb.ResetOffsetsRequest_Offset{Offset: off}
		default:
			ts, err := time.Parse(time.RFC3339, *to)
			if err != nil {
				return fmt.Errorf("--to %q: use earliest, latest, an offset, or an RFC3339 time", *to)
			}
			req.To = &stratapb.ResetOffsetsRequest_TimestampMs{TimestampMs: ts.UnixMilli()}
		}
		resp, err := c.ResetOffsets(ctx, req)
		if err != nil {
			return rpcErr(err)
		}
		var ps []int
		for p := range resp.Offsets {
			ps = append(ps, int(p))
		}
		sort.Ints(ps)
		for _, p := range ps {
			fmt.Fprintf(stdout, "partition %d -> %d\n", p, resp.Offsets[int32(p)])
		}
	default:
		return fmt.Errorf("unknown group command %q: use list, describe or reset", args[0])
	}
	return nil
}

// consumeGroup consumes as a member of a consumer group: the broker assigns
// partitions; records are printed and then committed (at-least-once: a
// crash between printing and committing prints them again).
func consumeGroup(ctx context.Context, c stratapb.StrataClient, topic, group string, startEarliest bool, maxN int, emit func(*stratapb.Record)) error {
	a, err := c.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: group, Topic: topic})
	if err != nil {
		return rpcErr(err)
	}
	defer c.LeaveGroup(context.WithoutCancel(ctx), &stratapb.LeaveGroupRequest{Group: group, MemberId: a.MemberId})
	positions := map[int32]int64{}
	loadPositions := func() error {
		committed, err := c.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: group})
		if err != nil {
			return rpcErr(err)
		}
		positions = map[int32]int64{}
		for _, p := range a.Partitions {
			if o, ok := committed.Offsets[p]; ok {
				positions[p] = o
			} else {
				positions[p] = -1 // start per --from
			}
		}
		return nil
	}
	if err := loadPositions(); err != nil {
		return err
	}
	n := 0
	for ctx.Err() == nil {
		for _, p := range a.Partitions {
			req := &stratapb.FetchRequest{Topic: topic, Partition: p, MaxWaitMs: 200, MaxBytes: 1 << 20,
				Group: group, MemberId: a.MemberId, Generation: a.Generation}
			switch {
			case positions[p] >= 0:
				req.Start = &stratapb.FetchRequest_Offset{Offset: positions[p]}
			case startEarliest:
				req.Start = &stratapb.FetchRequest_Earliest{Earliest: true}
			default:
				req.Start = &stratapb.FetchRequest_Latest{Latest: true}
			}
			s, err := c.Fetch(ctx, req)
			if err != nil {
				return rpcErr(err)
			}
			resp, err := s.Recv()
			if status.Code(err) == codes.FailedPrecondition {
				break // rebalanced: the heartbeat below brings the new assignment
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return rpcErr(err)
			}
			for _, r := range resp.Records {
				if maxN > 0 && n >= maxN {
					break
				}
				emit(r)
				n++
				positions[p] = r.Offset + 1
			}
			if len(resp.Records) == 0 && positions[p] < 0 {
				positions[p] = resp.NextOffset
			}
		}
		commit := map[int32]int64{}
		for p, o := range positions {
			if o >= 0 {
				commit[p] = o
			}
		}
		if _, err := c.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: group, MemberId: a.MemberId, Generation: a.Generation, Offsets: commit}); err != nil && ctx.Err() == nil {
			// A rebalance happened: the new assignment comes with the
			// heartbeat below; uncommitted records will be read again.
			fmt.Fprintln(errOut, "strata: commit rejected, rebalancing:", rpcErr(err))
		}
		if maxN > 0 && n >= maxN {
			return nil
		}
		next, err := c.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: group, MemberId: a.MemberId})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return rpcErr(err)
		}
		if next.Generation != a.Generation {
			a = next
			if err := loadPositions(); err != nil {
				return err
			}
		}
	}
	return nil
}
