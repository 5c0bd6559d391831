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
	"regexp"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

var stdout io.Writer = os.Stdout
var stdin io.Reader = os.Stdin
var errOut io.Writer = os.Stderr

// brokerFlag is every command's --broker flag: one broker, or a cluster's
// brokers as a comma-separated list.
func brokerFlag(fs *flag.FlagSet) *string {
	return withConnFlags(fs, fs.String("broker", "127.0.0.1:7420", "broker address HOST:PORT, or a comma-separated list of a cluster's brokers HOST:PORT,HOST:PORT,... (any one that answers is enough: the client learns the others and sends each request to the broker that owns what it names)"))
}

// withConnFlags adds the TLS and token flags (conn.go) that go with the
// --broker flag broker.
func withConnFlags(fs *flag.FlagSet, broker *string) *string {
	addConnFlags(fs, broker)
	return broker
}

// dial connects to the brokers at *broker (HOST:PORT[,HOST:PORT...]) with
// the Go client, over TLS and with a token per the command's connection
// flags (conn.go); every command talks to the cluster through it (admin
// calls through its API, which routes each call).
func dial(broker *string) (*client.Client, error) {
	addrs := *broker
	opts, err := connOptions(broker)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(addrs, append(opts, client.WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20))))...)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", addrs, err)
	}
	return c, nil
}

// rpcErr turns a gRPC status into a plain error message: "out of range:
// ...", "not found: ...".
func rpcErr(err error) error {
	if s, ok := status.FromError(err); ok {
		// A status wrapped by the client has the wrapping text as its
		// message, with the status's own "rpc error: code = ..." in it.
		return fmt.Errorf("%s: %s%s", codeWords(s.Code()), rpcPrefix.ReplaceAllString(s.Message(), ""), tlsHint(s.Message()))
	}
	return err
}

var rpcPrefix = regexp.MustCompile(`rpc error: code = \w+ desc = `)

// codeWords spells a status code as lower-case words: OutOfRange is
// "out of range".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// parseArgs parses flags that may come before or after positional args,
// then defaults the flags not given from the environment and the config
// file (flagDefaults).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, flagDefaults(fs)
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func topicCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: strata topic create|delete|list|describe [NAME] --broker HOST:PORT[,...]")
	}
	fs := flag.NewFlagSet("topic "+args[0], flag.ContinueOnError)
	brokerAddr := brokerFlag(fs)
	partitions := fs.Int("partitions", 1, "partitions (create)")
	retention := fs.Duration("retention", 7*24*time.Hour, "retention by time; 0 keeps forever (create)")
	retentionBytes := sizeFlag(fs, "retention-bytes", 0, "retention by size per partition; 0 = no limit (create)")
	compression := fs.String("compression", "zstd", "segment compression: zstd, s2, none (create)")
	valueFormat := fs.String("value-format", "", `what the values are: "json" (JSON objects, read as typed columns over Flight and in the Parquet export) or empty (opaque bytes) (create; docs/value-schemas.md)`)
	valueSchema := fs.String("value-schema", "", `the values' schema, as JSON {"fields": [{"name": ..., "type": ...}, ...]} or @FILE; implies --value-format json; without it a json topic's schema is inferred from its first records, then fixed (create)`)
	export := fs.String("export", "", `"parquet": the broker exports each newly sealed range as Parquet (create)`)
	consumedBy := fs.String("consumed-by", "", "retention by consumption: comma-separated share groups G1,G2 (at most 16); once every one of them has acked or dead-lettered a record, retention may drop it, whole segments at a time, on top of --retention and --retention-bytes (create; docs/queues.md)")
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
	case "create":
		if len(pos) != 1 {
			return errors.New("usage: strata topic create NAME --partitions N [--retention DUR] [--retention-bytes N] [--consumed-by G1,G2] [--value-format json [--value-schema JSON|@FILE]] [--export parquet] --broker HOST:PORT[,...]")
		}
		groups, err := splitList(*consumedBy)
		if err != nil {
			return fmt.Errorf("--consumed-by %q: %v", *consumedBy, err)
		}
		schema, err := readSchemaFlag(*valueSchema)
		if err != nil {
			return err
		}
		if schema != "" && *valueFormat == "" {
			*valueFormat = "json"
		}
		resp, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{
			Name: pos[0], Partitions: int32(*partitions), RetentionMs: retention.Milliseconds(),
			RetentionBytes: int64(*retentionBytes), Compression: *compression, ConsumedBy: groups,
			ValueFormat: *valueFormat, ValueSchema: schema, Export: *export,
		}})
		if err != nil {
			return rpcErr(err)
		}
		fmt.Fprintf(stdout, "created topic %s with %d partitions", resp.Config.Name, resp.Config.Partitions)
		if len(resp.Config.ConsumedBy) > 0 {
			fmt.Fprintf(stdout, ", retained until consumed by %s", strings.Join(resp.Config.ConsumedBy, ","))
		}
		switch {
		case resp.Config.ValueSchema != "":
			fmt.Fprintf(stdout, ", json values with schema %s", resp.Config.ValueSchema)
		case resp.Config.ValueFormat != "":
			fmt.Fprintf(stdout, ", %s values (schema inferred from the first records when first read, then fixed)", resp.Config.ValueFormat)
		}
		if resp.Config.Export != "" {
			fmt.Fprintf(stdout, ", exported to %s as segments seal", resp.Config.Export)
		}
		fmt.Fprintln(stdout)
	case "delete":
		if len(pos) != 1 {
			return errors.New("usage: strata topic delete NAME --broker HOST:PORT[,...]")
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
		if *output == "json" {
			out := make([]any, 0, len(resp.Topics))
			for _, t := range resp.Topics {
				out = append(out, protoMap(t))
			}
			return printJSON(out)
		}
		tb := newTable(stdout, "NAME", "PARTITIONS", "RETENTION", "RETENTION_BYTES", "COMPRESSION", "CONSUMED_BY", "VALUE_FORMAT", "EXPORT")
		for _, t := range resp.Topics {
			tb.row(t.Name, t.Partitions, retentionText(t.RetentionMs), orDash(t.RetentionBytes), t.Compression, orDash(strings.Join(t.ConsumedBy, ",")),
				orDash(t.ValueFormat), orDash(t.Export))
		}
		return tb.flush()
	case "describe":
		if len(pos) != 1 {
			return errors.New("usage: strata topic describe NAME --broker HOST:PORT[,...]")
		}
		resp, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: pos[0]})
		if err != nil {
			return rpcErr(err)
		}
		if *output == "json" {
			return printJSON(protoMap(resp))
		}
		t := resp.Config
		retBytes := "no size limit"
		if t.RetentionBytes > 0 {
			retBytes = fmt.Sprintf("%d bytes per partition", t.RetentionBytes)
		}
		fmt.Fprintf(stdout, "topic %s: %d partitions, retention %s, %s, compression %s", t.Name, t.Partitions, retentionText(t.RetentionMs), retBytes, t.Compression)
		if len(t.ConsumedBy) > 0 {
			fmt.Fprintf(stdout, ", consumed_by %s", strings.Join(t.ConsumedBy, ","))
		}
		if t.Export != "" {
			fmt.Fprintf(stdout, ", export %s", t.Export)
		}
		fmt.Fprintln(stdout)
		switch {
		case t.ValueSchema != "":
			fmt.Fprintf(stdout, "value_format %s, value_schema %s\n", t.ValueFormat, t.ValueSchema)
		case t.ValueFormat != "":
			fmt.Fprintf(stdout, "value_format %s, value_schema not fixed yet (inferred from the first records when first read)\n", t.ValueFormat)
		}
		tb := newTable(stdout, "PARTITION", "LOG_START", "HIGH_WATERMARK", "SEALED_SEGMENTS", "SEALED_BYTES", "LOCAL_BYTES")
		for _, p := range resp.Partitions {
			tb.row(p.Partition, p.LogStartOffset, p.HighWatermark, p.SealedSegments, p.SealedBytes, p.LocalBytes)
		}
		return tb.flush()
	default:
		return fmt.Errorf("unknown topic command %q: use create, delete, list or describe", args[0])
	}
	return nil
}

// readSchemaFlag is --value-schema's JSON: as given, or read from the
// file named after an @.
func readSchemaFlag(v string) (string, error) {
	name, ok := strings.CutPrefix(v, "@")
	if !ok {
		return v, nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("--value-schema @%s: %v; give the schema's JSON inline or name a readable file", name, err)
	}
	return string(data), nil
}

func statsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	brokerAddr := brokerFlag(fs)
	output := outputFlag(fs)
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return errors.New("usage: strata stats [--output json] --broker HOST:PORT[,...]")
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
	st, err := c.GetStats(ctx, &stratapb.GetStatsRequest{})
	if err != nil {
		return rpcErr(err)
	}
	hitRatio := 0.0
	if n := st.CacheHits + st.CacheMisses; n > 0 {
		hitRatio = float64(st.CacheHits) / float64(n)
	}
	if *output == "json" {
		out := protoMap(st)
		out["cache_hit_ratio"] = hitRatio
		return printJSON(out)
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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: strata produce TOPIC --broker HOST:PORT[,...] [--key-separator SEP | --format json] [--partition P] [--acks none|local|durable]
         [--header NAME=VALUE]... [--delay DUR | --deliver-at RFC3339] [--priority 0-9] [--dedup-id-header NAME]

Sends one record per stdin line and prints how many were acknowledged.
With --format json each line is a record {"key": "k", "value": "v",
"headers": {"name": "value"}} (key and headers optional; key null or absent:
no key). --header, --delay, --deliver-at and --priority set headers on
every record (over a line's own header of the same name): the share-group
headers of docs/queues.md, strata-delay-ms (the broker adds the delay to
its own clock), strata-deliver-at (ms since the epoch) and strata-priority.
--dedup-id-header NAME copies each record's header NAME into the
message-id header strata-msg-id: the broker stores a record whose id the
partition stored within the topic's dedup window once (docs/dedup.md); a
record without header NAME stops the produce. It is the Go client's idempotent producer: a request whose answer is lost
is the Go client's idempotent producer: a request whose answer is lost
(a dropped connection, a broker restart) is retried, up to 5 times with
backoff, and the broker stores it once and answers the retry with the
first attempt's offsets. In a cluster each partition's records go to its
owner; when a partition moves or its broker dies, the producer follows it
and resends there, still stored once. On a failure it stops reading
stdin, prints the count, and says which records may or may not be stored.

`)
		fs.PrintDefaults()
	}
	brokerAddr := brokerFlag(fs)
	sep := fs.String("key-separator", "", "split each line into key<SEP>value")
	partition := fs.Int("partition", -1, "partition; -1 partitions by key (FNV-1a of the key, as the broker does); keyless records fill one partition's batch, then the next partition's")
	batch := fs.Int("batch", 500, "most records per produce request (a request holds one partition's records)")
	acksFlag := fs.String("acks", "durable", "when the broker acknowledges: none, local (after its fsync) or durable (in the object store)")
	format := fs.String("format", "text", `input: text (a line is a value, or key<SEP>value with --key-separator) or json (a line is {"key":..,"value":..,"headers":{..}})`)
	var headers headerFlags
	fs.Var(&headers, "header", "NAME=VALUE: a header on every record (repeat the flag for more)")
	delay := fs.Duration("delay", 0, "share groups deliver each record no earlier than this long after the broker stores it (header strata-delay-ms; 0 to 366 days)")
	deliverAt := fs.String("deliver-at", "", "share groups deliver each record no earlier than this RFC3339 time (header strata-deliver-at); not with --delay")
	priority := fs.Int("priority", 0, "share-group priority of every record, 0 (lowest, the default) to 9 (header strata-priority)")
	dedupHeader := fs.String("dedup-id-header", "", "copy each record's header NAME into its message id (header strata-msg-id), for the broker's deduplication; needs --format json (per-record headers)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	acks, err := parseAcks(*acksFlag)
	if err != nil {
		return err
	}
	extra, err := produceHeaders(fs, headers, *delay, *deliverAt, *priority)
	if err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: use text (one value per line) or json (one record object per line)", *format)
	}
	if *format == "json" && *sep != "" {
		return errors.New("--key-separator splits text lines; with --format json each line names its key: drop one of them")
	}
	if *dedupHeader != "" && *format != "json" {
		return fmt.Errorf("--dedup-id-header %s copies a header of each record, and text lines have none of their own: give the records as JSON lines (--format json) with a headers object", *dedupHeader)
	}
	if len(pos) != 1 {
		return errors.New("usage: strata produce TOPIC --broker HOST:PORT[,...] [--key-separator SEP]   (one record per stdin line)")
	}
	if *partition < -1 {
		return fmt.Errorf("--partition %d: use a partition number, or -1 to partition by key", *partition)
	}
	topic := pos[0]
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	p := c.NewProducer(topic, client.WithPartition(int32(*partition)), client.WithBatchSize(*batch), client.WithAcks(acks))

	// The outcomes are counted in send order by one goroutine; the first
	// failure stops the sending.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	results := make(chan *client.Result, 4*max(*batch, 1))
	var (
		acked, unacked int
		firstErr       error // of the first record that failed
	)
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		for r := range results {
			if err := r.Wait(ctx); err != nil {
				unacked++
				if firstErr == nil {
					firstErr = err
					stopSending()
				}
				continue
			}
			acked++
		}
	}()
	sent := 0
	var sendErr error  // a record Send refused: it and what follows were not sent
	var inputErr error // a line that is not a record: it and what follows were not sent
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for line := 1; sendCtx.Err() == nil && sc.Scan(); line++ {
		if *format == "json" && strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		r, err := parseProduceLine(sc.Text(), *format, *sep, extra, *dedupHeader)
		if err != nil {
			inputErr = fmt.Errorf("line %d: %v", line, err)
			break
		}
		res, err := p.Send(sendCtx, r)
		if res != nil {
			// Queued (even when err says the wait for a free request
			// slot was cut short): Close sends it.
			results <- res
			sent++
		}
		if err != nil {
			if res == nil && sendCtx.Err() == nil {
				sendErr = err
			}
			break
		}
	}
	readErr := sc.Err()
	closeErr := p.Close(ctx) // sends what is queued, waits for every answer
	close(results)
	<-counted
	fmt.Fprintln(stdout, acked)

	var what error
	switch {
	case ctx.Err() != nil:
		what = errors.New("interrupted")
	case firstErr != nil:
		what = rpcErr(firstErr)
	case sendErr != nil:
		what = rpcErr(sendErr)
	case inputErr != nil:
		what = inputErr
	case readErr != nil:
		what = fmt.Errorf("reading stdin: %w", readErr)
	case closeErr != nil:
		what = rpcErr(closeErr)
	default:
		return nil
	}
	if sent == 0 {
		return fmt.Errorf("produce to %s: %w; no record was sent", topic, what)
	}
	stored := fmt.Sprintf("%d of the first %d lines acknowledged (stored)", acked, sent)
	if unacked > 0 {
		stored += fmt.Sprintf(", %d not acknowledged (each may or may not be stored)", unacked)
	}
	if sendErr != nil || inputErr != nil || readErr != nil || firstErr != nil || ctx.Err() != nil {
		stored += fmt.Sprintf("; lines after line %d were not sent", sent)
	}
	return fmt.Errorf("produce to %s: %w; %s", topic, what, stored)
}

func consumeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: strata consume TOPIC --broker HOST:PORT[,...] [--partition P] [--from-offset N | --from-time RFC3339 | --from earliest|latest] [--max N] [--until RFC3339] [--format text|json]
       strata consume TOPIC --group G --broker HOST:PORT[,...] [--from earliest|latest] [--max N] [--format text|json]

Prints records, one per line. Without --partition it reads every partition
of the topic: the records of one partition in order, partitions
interleaved (as kcat and kafka-console-consumer do); --partition P reads
only P. --max N stops after N records in total. With --group G it is a
member of consumer group G: the broker assigns the partitions, and what
was printed is committed (at-least-once: a crash between printing and
committing prints those records again; with --max, nothing past the
last printed record is committed). --until T stops each partition at its
first record at or after T and exits when every partition has (not with
--group). With --max or --until, and stderr a terminal, a progress bar
shows records, bytes, rate and ETA on stderr. Sealed history comes as the
stored, compressed blocks and is verified and decoded here, on every core
(--stored-blocks=false has the broker decode it; docs/fetch.md).

`)
		fs.PrintDefaults()
	}
	brokerAddr := brokerFlag(fs)
	partition := fs.Int("partition", -1, "read only this partition; -1 reads every partition")
	fromOffset := fs.Int64("from-offset", -1, "start at this offset (of the partition --partition names)")
	fromTime := fs.String("from-time", "", "start each partition at its first record at or after this RFC3339 time")
	from := fs.String("from", "earliest", "start at earliest or latest (when no --from-offset/--from-time); with --group, where partitions without a committed offset start")
	maxN := fs.Int("max", 0, "exit after this many records in total; 0 follows the log until interrupted")
	untilFlag := fs.String("until", "", "stop each partition at its first record at or after this RFC3339 time (not printed), and exit when every partition has; a partition with none yet ends at its high watermark once the clock passes the time")
	format := fs.String("format", "text", "text (one value per line) or json (one object per line)")
	group := fs.String("group", "", "consume as a member of this consumer group (partitions assigned by the broker; offsets committed after printing)")
	storedBlocks := fs.Bool("stored-blocks", true, "read sealed history as the stored, compressed blocks and decode them here, on every core (docs/fetch.md); false has the broker decode and send records")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: strata consume TOPIC --broker HOST:PORT[,...] [--partition P] [--from-offset N | --from-time RFC3339 | --from earliest|latest] [--max N] [--format text|json]")
	}
	topic := pos[0]
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: use text or json", *format)
	}
	if *partition < -1 {
		return fmt.Errorf("--partition %d: use a partition number, or -1 for every partition", *partition)
	}
	var startTime time.Time
	latest := false
	switch {
	case *fromOffset >= 0:
		if *partition < 0 && *group == "" {
			return fmt.Errorf("--from-offset %d is an offset in one partition: add --partition P (without it, consume reads every partition; start them all with --from earliest|latest or --from-time)", *fromOffset)
		}
	case *fromTime != "":
		if startTime, err = time.Parse(time.RFC3339, *fromTime); err != nil {
			return fmt.Errorf("--from-time %q: %v (use RFC3339, like 2026-11-22T10:00:00Z)", *fromTime, err)
		}
	case *from == "earliest":
	case *from == "latest":
		latest = true
	default:
		return fmt.Errorf("--from %q: use earliest or latest", *from)
	}
	var until time.Time
	if *untilFlag != "" {
		if until, err = time.Parse(time.RFC3339, *untilFlag); err != nil {
			return fmt.Errorf("--until %q: %v (use RFC3339, like 2026-11-22T10:00:00Z)", *untilFlag, err)
		}
		if *group != "" {
			return errors.New("--until reads a fixed set of partitions to a time, and a group member's partitions change with the group: drop --group (and read from --from-time or --from-offset), or drop --until")
		}
	}
	if *group != "" {
		if *fromOffset >= 0 || *fromTime != "" {
			return errors.New("--group resumes from the group's committed offsets; use `strata group reset` instead of --from-offset/--from-time")
		}
		if *partition >= 0 {
			return errors.New("--group: the broker assigns the group's partitions; drop --partition")
		}
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	opts := []client.ConsumerOption{client.WithStoredBlocks(*storedBlocks)}
	if latest {
		opts = append(opts, client.WithStartLatest())
	}
	var parts []int32
	switch {
	case *group != "":
		opts = append(opts, client.WithGroup(*group, client.AtLeastOnce))
	case *partition >= 0:
		parts = []int32{int32(*partition)}
	default:
		d, err := c.API().DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: topic})
		if err != nil {
			return rpcErr(err)
		}
		for p := int32(0); p < d.Config.Partitions; p++ {
			parts = append(parts, p)
		}
	}
	if parts != nil {
		opts = append(opts, client.WithPartitions(parts...))
	}
	k, err := c.NewConsumer(ctx, topic, opts...)
	if err != nil {
		return rpcErr(err)
	}
	closed := false
	closeConsumer := func() error {
		if closed {
			return nil
		}
		closed = true
		// Commits what was printed, also after an interrupt.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return k.Close(cctx)
	}
	defer closeConsumer()
	starts := map[int32]int64{} // each partition's start, when known
	for _, p := range parts {
		off := *fromOffset
		if !startTime.IsZero() {
			resp, err := c.API().ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: topic, Partition: p,
				Spec: &stratapb.ListOffsetsRequest_TimestampMs{TimestampMs: startTime.UnixMilli()}})
			if err != nil {
				return fmt.Errorf("partition %d: first offset at or after %s: %w", p, *fromTime, rpcErr(err))
			}
			off = resp.Offset
		}
		if off < 0 && !until.IsZero() {
			// --until needs to know where each partition starts.
			spec := &stratapb.ListOffsetsRequest{Topic: topic, Partition: p, Spec: &stratapb.ListOffsetsRequest_Earliest{Earliest: true}}
			if latest {
				spec.Spec = &stratapb.ListOffsetsRequest_Latest{Latest: true}
			}
			resp, err := c.API().ListOffsets(ctx, spec)
			if err != nil {
				return fmt.Errorf("partition %d: start offset: %w", p, rpcErr(err))
			}
			off = resp.Offset
		}
		if off >= 0 {
			if err := k.Seek(p, off); err != nil {
				return err
			}
			starts[p] = off
		}
	}
	var stop *untilStop
	if !until.IsZero() {
		stop = newUntilStop(c.API(), topic, until, starts)
	}
	var bar *progress // records, bytes, rate and ETA on a terminal, for work with an end
	if *maxN > 0 || stop != nil {
		bar = newProgress(int64(*maxN), true)
	}

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	emit := func(r client.Record) {
		if *format == "json" {
			line, _ := json.Marshal(recordJSON(topic, r))
			w.Write(line)
			w.WriteByte('\n')
		} else {
			w.Write(r.Value)
			w.WriteByte('\n')
		}
	}
	finish := func() error {
		bar.Done()
		// Printed before committed: at-least-once.
		if err := w.Flush(); err != nil {
			return err
		}
		if err := closeConsumer(); err != nil && *group != "" {
			return fmt.Errorf("group %s: %v; the records printed since the last commit may be printed again by the group's next member", *group, rpcErr(err))
		}
		return nil
	}
	n := 0
	for {
		if stop != nil {
			done, err := stop.reached(ctx)
			if err != nil {
				return err
			}
			if done {
				return finish()
			}
		}
		recs, err := k.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return finish()
			}
			return rpcErr(err)
		}
		for i, r := range recs {
			if *maxN > 0 && n >= *maxN {
				handBack(k, recs[i:])
				return finish()
			}
			if !stop.take(r) {
				continue
			}
			emit(r)
			n++
			bar.Add(1, int64(len(r.Key)+len(r.Value)))
		}
		if stop != nil && bar != nil && *maxN == 0 {
			bar.SetFraction(stop.fraction())
		}
		// Flushed before the next Poll commits these records.
		if err := w.Flush(); err != nil {
			return err
		}
		if *maxN > 0 && n >= *maxN {
			return finish()
		}
	}
}

// untilCheckEvery is how often consume --until asks for the partitions'
// end offsets once the clock has passed the --until time.
const untilCheckEvery = time.Second

// untilStop ends consume --until: a partition is done at its first record
// at or after the time, or, once the clock has passed the time, at the
// first offset at or after it (its high watermark when there is none: a
// record produced later has a later time).
type untilStop struct {
	api     stratapb.StrataClient
	topic   string
	until   time.Time
	next    map[int32]int64 // the next offset of each partition read
	end     map[int32]int64 // the first offset at or after until, once asked
	done    map[int32]bool
	checked time.Time
	// first and last record times seen, for the progress fraction.
	firstMs, lastMs int64
}

func newUntilStop(api stratapb.StrataClient, topic string, until time.Time, starts map[int32]int64) *untilStop {
	u := &untilStop{api: api, topic: topic, until: until, next: map[int32]int64{}, end: map[int32]int64{}, done: map[int32]bool{}}
	for p, off := range starts {
		u.next[p] = off
	}
	return u
}

// take reports whether r is before the stop, and records where its
// partition is; a nil untilStop takes everything.
func (u *untilStop) take(r client.Record) bool {
	if u == nil {
		return true
	}
	p := r.Partition
	if u.done[p] {
		return false
	}
	if e, ok := u.end[p]; r.Timestamp >= u.until.UnixMilli() || ok && r.Offset >= e {
		u.done[p] = true
		return false
	}
	u.next[p] = r.Offset + 1
	if e, ok := u.end[p]; ok && u.next[p] >= e {
		u.done[p] = true
	}
	if u.firstMs == 0 {
		u.firstMs = r.Timestamp
	}
	u.lastMs = max(u.lastMs, r.Timestamp)
	return true
}

// reached reports whether every partition is done, asking for the end
// offsets of those not yet done once the clock is past until (at most
// every untilCheckEvery).
func (u *untilStop) reached(ctx context.Context) (bool, error) {
	if len(u.done) == len(u.next) {
		return true, nil
	}
	now := time.Now()
	if now.Before(u.until) || now.Sub(u.checked) < untilCheckEvery {
		return false, nil
	}
	u.checked = now
	for p, next := range u.next {
		if u.done[p] {
			continue
		}
		resp, err := u.api.ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: u.topic, Partition: p,
			Spec: &stratapb.ListOffsetsRequest_TimestampMs{TimestampMs: u.until.UnixMilli()}})
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return false, fmt.Errorf("partition %d: first offset at or after --until %s: %w", p, u.until.Format(time.RFC3339), rpcErr(err))
		}
		u.end[p] = resp.Offset
		if next >= resp.Offset {
			u.done[p] = true
		}
	}
	return len(u.done) == len(u.next), nil
}

// fraction is how far the records read are from their first time to
// until, 0 to 1.
func (u *untilStop) fraction() float64 {
	span := u.until.UnixMilli() - u.firstMs
	if u.firstMs == 0 || span <= 0 {
		return 0
	}
	return float64(u.lastMs-u.firstMs) / float64(span)
}

// handBack seeks each partition of the Polled but unprinted records recs
// back to its first one, so the group's commit stops there. A partition
// that moved to another member meanwhile refuses the seek: its new owner
// reads from the last commit, so the records are not lost either way.
func handBack(k *client.Consumer, recs []client.Record) {
	seen := map[int32]bool{}
	for _, r := range recs {
		if !seen[r.Partition] {
			seen[r.Partition] = true
			k.Seek(r.Partition, r.Offset)
		}
	}
}
