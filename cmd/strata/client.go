package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

var stdout io.Writer = os.Stdout
var stdin io.Reader = os.Stdin
var errOut io.Writer = os.Stderr

func dial(addr string) (stratapb.StrataClient, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, nil, fmt.Errorf("broker %s: %w", addr, err)
	}
	return stratapb.NewStrataClient(conn), func() { conn.Close() }, nil
}

// rpcErr turns a gRPC status into a plain error message.
func rpcErr(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", strings.ToLower(s.Code().String()), s.Message())
	}
	return err
}

// parseArgs parses flags that may come before or after positional args.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func topicCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: strata topic create|delete|list|describe [NAME] --broker HOST:PORT")
	}
	fs := flag.NewFlagSet("topic "+args[0], flag.ContinueOnError)
	brokerAddr := fs.String("broker", "127.0.0.1:7420", "broker address")
	partitions := fs.Int("partitions", 1, "partitions (create)")
	retention := fs.Duration("retention", 7*24*time.Hour, "retention by time; 0 keeps forever (create)")
	retentionBytes := sizeFlag(fs, "retention-bytes", 0, "retention by size per partition; 0 = no limit (create)")
	compression := fs.String("compression", "zstd", "segment compression: zstd, s2, none (create)")
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
	case "create":
		if len(pos) != 1 {
			return errors.New("usage: strata topic create NAME --partitions N [--retention DUR] [--retention-bytes N] --broker HOST:PORT")
		}
		resp, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{
			Name: pos[0], Partitions: int32(*partitions), RetentionMs: retention.Milliseconds(),
			RetentionBytes: int64(*retentionBytes), Compression: *compression,
		}})
		if err != nil {
			return rpcErr(err)
		}
		fmt.Fprintf(stdout, "created topic %s with %d partitions\n", resp.Config.Name, resp.Config.Partitions)
	case "delete":
		if len(pos) != 1 {
			return errors.New("usage: strata topic delete NAME --broker HOST:PORT")
		}
		resp, err := c.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: pos[0]})
		if err != nil {
			return rpcErr(err)
		}
		fmt.Fprintf(stdout, "deleted topic %s (%d objects)\n", pos[0], resp.ObjectsDeleted)
	case "list":
		resp, err := c.ListTopics(ctx, &stratapb.ListTopicsRequest{})
		if err != nil {
			return rpcErr(err)
		}
		for _, t := range resp.Topics {
			fmt.Fprintf(stdout, "%s\tpartitions=%d\tretention=%v\tcompression=%s\n", t.Name, t.Partitions, time.Duration(t.RetentionMs)*time.Millisecond, t.Compression)
		}
	case "describe":
		if len(pos) != 1 {
			return errors.New("usage: strata topic describe NAME --broker HOST:PORT")
		}
		resp, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: pos[0]})
		if err != nil {
			return rpcErr(err)
		}
		t := resp.Config
		fmt.Fprintf(stdout, "topic %s: %d partitions, retention %v / %d bytes, compression %s\n", t.Name, t.Partitions, time.Duration(t.RetentionMs)*time.Millisecond, t.RetentionBytes, t.Compression)
		fmt.Fprintf(stdout, "partition\tlog_start\thigh_watermark\tsealed_segments\tsealed_bytes\tlocal_bytes\n")
		for _, p := range resp.Partitions {
			fmt.Fprintf(stdout, "%d\t%d\t%d\t%d\t%d\t%d\n", p.Partition, p.LogStartOffset, p.HighWatermark, p.SealedSegments, p.SealedBytes, p.LocalBytes)
		}
	default:
		return fmt.Errorf("unknown topic command %q: use create, delete, list or describe", args[0])
	}
	return nil
}

func statsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	brokerAddr := fs.String("broker", "127.0.0.1:7420", "broker address")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return errors.New("usage: strata stats --broker HOST:PORT")
	}
	c, closeConn, err := dial(*brokerAddr)
	if err != nil {
		return err
	}
	defer closeConn()
	st, err := c.GetStats(ctx, &stratapb.GetStatsRequest{})
	if err != nil {
		return rpcErr(err)
	}
	hitRatio := 0.0
	if n := st.CacheHits + st.CacheMisses; n > 0 {
		hitRatio = float64(st.CacheHits) / float64(n)
	}
	fmt.Fprintf(stdout, "broker incarnation %s\n", st.Incarnation)
	fmt.Fprintf(stdout, "read cache: %d hits (%d from disk), %d misses, hit ratio %.3f; %d GETs, %d bytes fetched, %d read-ahead spans; %d bytes in memory, %d on disk\n",
		st.CacheHits, st.CacheDiskHits, st.CacheMisses, hitRatio, st.ObjectGets, st.ObjectGetBytes, st.Prefetches, st.CacheMemoryBytes, st.CacheDiskBytes)
	fmt.Fprintf(stdout, "WAL: %d objects, %d bytes stored; %d PUT attempts, %d failed; %d bytes waiting\n",
		st.WalObjects, st.WalBytes, st.WalPutAttempts, st.WalPutFailures, st.WalBufferedBytes)
	return nil
}

// parseAcks parses an --acks flag.
func parseAcks(s string) (stratapb.Acks, error) {
	switch s {
	case "none":
		return stratapb.Acks_ACKS_NONE, nil
	case "local":
		return stratapb.Acks_ACKS_LOCAL, nil
	case "durable", "":
		return stratapb.Acks_ACKS_DURABLE, nil
	}
	return 0, fmt.Errorf("unknown --acks %q: use none, local or durable", s)
}

func produceCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	brokerAddr := fs.String("broker", "127.0.0.1:7420", "broker address")
	sep := fs.String("key-separator", "", "split each line into key<SEP>value")
	partition := fs.Int("partition", -1, "partition; -1 partitions by key (round robin without a key)")
	batch := fs.Int("batch", 500, "lines per produce request")
	acksFlag := fs.String("acks", "durable", "when the broker acknowledges: none, local (after its fsync) or durable (in the object store)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	acks, err := parseAcks(*acksFlag)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: strata produce TOPIC --broker HOST:PORT [--key-separator SEP]   (one record per stdin line)")
	}
	c, closeConn, err := dial(*brokerAddr)
	if err != nil {
		return err
	}
	defer closeConn()
	acked := 0
	var recs []*stratapb.Record
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		resp, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: pos[0], Partition: int32(*partition), Records: recs, Acks: acks})
		if err != nil {
			return rpcErr(err)
		}
		acked += len(resp.Offsets)
		recs = nil
		return nil
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		r := &stratapb.Record{Value: []byte(line)}
		if *sep != "" {
			if k, v, ok := strings.Cut(line, *sep); ok {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
		recs = append(recs, r)
		if len(recs) >= *batch {
			if err := flush(); err != nil {
				fmt.Fprintln(stdout, acked)
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	err = flush()
	fmt.Fprintln(stdout, acked)
	return err
}

func consumeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	brokerAddr := fs.String("broker", "127.0.0.1:7420", "broker address")
	partition := fs.Int("partition", 0, "partition")
	fromOffset := fs.Int64("from-offset", -1, "start at this offset")
	fromTime := fs.String("from-time", "", "start at the first record at or after this RFC3339 time")
	from := fs.String("from", "earliest", "start at earliest or latest (when no --from-offset/--from-time)")
	maxN := fs.Int("max", 0, "exit after this many records; 0 follows the log until interrupted")
	format := fs.String("format", "text", "text (one value per line) or json (one object per line)")
	group := fs.String("group", "", "consume as a member of this consumer group (partitions assigned by the broker; offsets committed after printing)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: strata consume TOPIC --broker HOST:PORT [--partition P] [--from-offset N | --from-time RFC3339 | --from earliest|latest] [--max N] [--format text|json]")
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: use text or json", *format)
	}
	req := &stratapb.FetchRequest{Topic: pos[0], Partition: int32(*partition), Follow: true, MaxWaitMs: 1000}
	switch {
	case *fromOffset >= 0:
		req.Start = &stratapb.FetchRequest_Offset{Offset: *fromOffset}
	case *fromTime != "":
		ts, err := time.Parse(time.RFC3339, *fromTime)
		if err != nil {
			return fmt.Errorf("--from-time %q: %v (use RFC3339, like 2026-11-22T10:00:00Z)", *fromTime, err)
		}
		req.Start = &stratapb.FetchRequest_TimestampMs{TimestampMs: ts.UnixMilli()}
	case *from == "earliest":
		req.Start = &stratapb.FetchRequest_Earliest{Earliest: true}
	case *from == "latest":
		req.Start = &stratapb.FetchRequest_Latest{Latest: true}
	default:
		return fmt.Errorf("--from %q: use earliest or latest", *from)
	}
	c, closeConn, err := dial(*brokerAddr)
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	emit := func(r *stratapb.Record) {
		if *format == "json" {
			hs := map[string]string{}
			for _, h := range r.Headers {
				hs[h.Key] = string(h.Value)
			}
			var key any
			if r.Key != nil {
				key = string(r.Key)
			}
			line, _ := json.Marshal(map[string]any{
				"topic": pos[0], "partition": r.Partition, "offset": r.Offset,
				"timestamp": time.UnixMilli(r.TimestampMs).UTC().Format(time.RFC3339Nano),
				"key":       key, "value": string(r.Value), "headers": hs,
			})
			w.Write(line)
			w.WriteByte('\n')
		} else {
			w.Write(r.Value)
			w.WriteByte('\n')
		}
	}
	if *group != "" {
		if *fromOffset >= 0 || *fromTime != "" {
			return errors.New("--group resumes from the group's committed offsets; use `strata group reset` instead of --from-offset/--from-time")
		}
		defer w.Flush()
		return consumeGroup(ctx, c, pos[0], *group, *from == "earliest", *maxN, func(r *stratapb.Record) { emit(r); w.Flush() })
	}
	stream, err := c.Fetch(ctx, req)
	if err != nil {
		return rpcErr(err)
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return rpcErr(err)
		}
		for _, r := range resp.Records {
			emit(r)
			n++
			if *maxN > 0 && n >= *maxN {
				return nil
			}
		}
		w.Flush()
	}
}
