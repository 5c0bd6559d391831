package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/stratalog/strata/api/stratapb"
)

func groupCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: strata group list|describe|reset [GROUP] --broker HOST:PORT[,...]")
	}
	fs := flag.NewFlagSet("group "+args[0], flag.ContinueOnError)
	brokerAddr := brokerFlag(fs)
	topic := fs.String("topic", "", "topic (reset)")
	to := fs.String("to", "", "reset to: earliest, latest, an offset, or an RFC3339 time (reset)")
	output := outputFlag(fs)
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	cl, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer cl.Close()
	c := cl.API()
	switch args[0] {
	case "list":
		resp, err := c.ListGroups(ctx, &stratapb.ListGroupsRequest{})
		if err != nil {
			return rpcErr(err)
		}
		if *output == "json" {
			out := make([]map[string]string, 0, len(resp.Groups))
			for _, g := range resp.Groups {
				out = append(out, map[string]string{"group": g})
			}
			return printJSON(out)
		}
		tb := newTable(stdout, "GROUP")
		for _, g := range resp.Groups {
			tb.row(g)
		}
		return tb.flush()
	case "describe":
		if len(pos) != 1 {
			return errors.New("usage: strata group describe GROUP --broker HOST:PORT[,...]")
		}
		d, err := c.DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: pos[0]})
		if err != nil {
			return rpcErr(err)
		}
		if *output == "json" {
			return printJSON(protoMap(d))
		}
		fmt.Fprintf(stdout, "group %s on topic %s, generation %d, %d members\n", d.Group, d.Topic, d.Generation, len(d.Members))
		if len(d.Members) > 0 {
			fmt.Fprintln(stdout)
			tb := newTable(stdout, "MEMBER", "PARTITIONS")
			for _, m := range d.Members {
				tb.row(m.MemberId, orDash(joinInts(m.Partitions)))
			}
			if err := tb.flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout)
		tb := newTable(stdout, "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG_RECORDS", "LAG_SECONDS")
		for _, l := range d.Lag {
			committed := any(l.Committed)
			if l.Committed < 0 {
				committed = "-"
			}
			tb.row(l.Partition, committed, l.HighWatermark, l.LagRecords, fmt.Sprintf("%.1f", l.LagSeconds))
		}
		return tb.flush()
	case "reset":
		if len(pos) != 1 || *topic == "" || *to == "" {
			return errors.New("usage: strata group reset GROUP --topic TOPIC --to earliest|latest|OFFSET|RFC3339 --broker HOST:PORT[,...]")
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
