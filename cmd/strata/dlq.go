package main

// strata dlq: a share group's dead letters, listed (a read of the
// dead-letter topic) and redriven (the Go client's Redrive).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
)

const dlqUsage = `usage: strata dlq list|redrive TOPIC --group G [flags] --broker HOST:PORT[,...]

A share group's dead letters: the records that reached the group's max
deliveries or were rejected, in its dead-letter topic (TOPIC.dlq.G unless
the group names another), with their origin and last reason in
strata-dlq-* headers (docs/queues.md).

  list    TOPIC --group G [--max N] [--format|-o text|json]   print them, from the start
  redrive TOPIC --group G [--to TOPIC] [--rate N/s] [--max N]   move them back as new records

Run 'strata dlq COMMAND -h' for a command's flags.
`

func dlqCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(errOut, dlqUsage)
		return errors.New("no dlq command given")
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, args[1:])
	case "redrive":
		return dlqRedrive(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(stdout, dlqUsage)
		return nil
	}
	fmt.Fprint(errOut, dlqUsage)
	return fmt.Errorf("unknown dlq command %q: use list or redrive", args[0])
}

func dlqFlags(name, usage, about string) (*flag.FlagSet, *string, *string, *string) {
	fs := flag.NewFlagSet("dlq "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata dlq %s\n\n%s\n", usage, about)
		fs.PrintDefaults()
	}
	return fs, brokerFlag(fs), fs.String("group", "", "the share group (required)"),
		fs.String("dead-letter", "", "the dead-letter topic to read (default: the group's, else TOPIC.dlq.GROUP: give it for a group deleted since)")
}

// deadLetterTopicOf is the dead-letter topic of group on topic: override,
// else the group's setting, else the default name (a deleted group's).
func deadLetterTopicOf(ctx context.Context, c *client.Client, topic, group, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	groups, err := c.ListShareGroups(ctx, topic)
	if err != nil && !notFound(err) {
		return "", fmt.Errorf("look up the dead-letter topic of share group %s on topic %s: %w", group, topic, rpcErr(err))
	}
	for _, g := range groups {
		if g.Group == group && g.DeadLetterTopic != "" {
			return g.DeadLetterTopic, nil
		}
	}
	return topic + ".dlq." + group, nil
}

// dlqIdlePolls ends a list after this many empty polls in a row (a
// partition whose records below its high watermark cannot be read).
const dlqIdlePolls = 20

func dlqList(ctx context.Context, args []string) error {
	fs, brokerAddr, group, dlqFlag := dlqFlags("list", "list TOPIC --group G [--max N] [--format text|json] [--dead-letter TOPIC] --broker HOST:PORT[,...]",
		`Prints the dead letters of share group G, read from the start of its
dead-letter topic to where it ended when the command started (or --max).
--format text prints a line per dead letter:
  ORIGIN_TOPIC/PARTITION@OFFSET<TAB>deliveries=N<TAB>reason="..."<TAB>VALUE
--format json prints an object a line: the dead-letter record's fields
(topic, partition, offset, timestamp, key, value, headers), then
origin_topic, origin_partition, origin_offset, origin_timestamp,
delivery_count, first_delivery, last_delivery and reason, from its
strata-dlq-* headers.`)
	maxN := fs.Int("max", 0, "print at most this many; 0: all")
	format := fs.String("format", "text", "text or json (an object a line)")
	fs.StringVar(format, "output", "text", "the same as --format (text or json), as every list command has it")
	fs.StringVar(format, "o", "text", "short for --output")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("dlq list", pos, *group)
	if err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: use text or json", *format)
	}
	if *maxN < 0 {
		return fmt.Errorf("--max %d is negative: give how many to print, or 0 for all", *maxN)
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	dlq, err := deadLetterTopicOf(ctx, c, topic, *group, *dlqFlag)
	if err != nil {
		return err
	}
	desc, err := c.API().DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: dlq})
	if err != nil {
		return fmt.Errorf("dead-letter topic %s of share group %s: %w", dlq, *group, rpcErr(err))
	}
	goal := map[int32]int64{}
	var parts []int32
	for _, p := range desc.Partitions {
		if p.HighWatermark > p.LogStartOffset {
			goal[p.Partition] = p.HighWatermark
			parts = append(parts, p.Partition)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	k, err := c.NewConsumer(ctx, dlq, client.WithPartitions(parts...))
	if err != nil {
		return rpcErr(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		k.Close(cctx)
	}()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	n := 0
	for idle := 0; len(goal) > 0 && (*maxN == 0 || n < *maxN); {
		recs, err := k.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read dead-letter topic %s: %w", dlq, rpcErr(err))
		}
		if len(recs) == 0 {
			if idle++; idle >= dlqIdlePolls {
				return fmt.Errorf("dead-letter topic %s: partitions %v did not reach their end offsets %v after %d empty reads; printed %d", dlq, keys(goal), goal, idle, n)
			}
			continue
		}
		idle = 0
		for _, r := range recs {
			g, ok := goal[r.Partition]
			if !ok || r.Offset >= g {
				delete(goal, r.Partition)
				continue
			}
			if r.Offset+1 >= g {
				delete(goal, r.Partition)
			}
			if *maxN > 0 && n >= *maxN {
				break
			}
			printDeadLetter(w, *format, dlq, r)
			n++
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func keys(m map[int32]int64) []int32 {
	var out []int32
	for k := range m {
		out = append(out, k)
	}
	return out
}

// printDeadLetter prints one record of dead-letter topic dlq.
func printDeadLetter(w *bufio.Writer, format, dlq string, r client.Record) {
	h := func(name string) string { return string(r.Headers[name]) }
	num := func(name string) any {
		v, err := strconv.ParseInt(h(name), 10, 64)
		if err != nil {
			return nil
		}
		return v
	}
	if format == "json" {
		obj := recordJSON(dlq, r)
		obj["origin_topic"], obj["origin_partition"], obj["origin_offset"] = h(core.HeaderDLQOriginTopic), num(core.HeaderDLQOriginPartition), num(core.HeaderDLQOriginOffset)
		obj["origin_timestamp"], obj["delivery_count"] = h(core.HeaderDLQOriginTime), num(core.HeaderDLQDeliveryCount)
		obj["first_delivery"], obj["last_delivery"] = h(core.HeaderDLQFirstDelivery), h(core.HeaderDLQLastDelivery)
		obj["reason"], obj["group"] = h(core.HeaderDLQReason), h(core.HeaderDLQGroup)
		line, _ := json.Marshal(obj)
		w.Write(line)
		w.WriteByte('\n')
		return
	}
	fmt.Fprintf(w, "%s/%s@%s\tdeliveries=%s\treason=%s\t", h(core.HeaderDLQOriginTopic), h(core.HeaderDLQOriginPartition), h(core.HeaderDLQOriginOffset),
		h(core.HeaderDLQDeliveryCount), strconv.Quote(h(core.HeaderDLQReason)))
	w.Write(r.Value)
	w.WriteByte('\n')
}

// parseRate parses --rate: N, N/s, N/m or N/h records; 0 is no bound.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := map[string]float64{"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || per == 0 || v < 0 || v != v {
		return 0, fmt.Errorf("--rate %q: give records per second as N or N/s (N/m and N/h work too), like 100/s; 0 for no bound", s)
	}
	return v / per, nil
}

func dlqRedrive(ctx context.Context, args []string) error {
	fs, brokerAddr, group, dlqFlag := dlqFlags("redrive", "redrive TOPIC --group G [--to TOPIC] [--rate N/s] [--max N] [--dead-letter TOPIC] --broker HOST:PORT[,...]",
		`Moves the dead letters of share group G back to their origin topic (or
--to), as new records: key, value and headers without the strata-dlq-*
ones, so a share group delivers them again from delivery 1. It reads the
dead-letter topic as the log consumer group DLQ.redrive and commits after
each produced batch, so a second run goes on where the first stopped; it
stops at the dead-letter topic's end as of its start (later dead letters
wait for the next run), or after --max. A crash between a produce and its
commit moves those records again on the next run (at-least-once).
With stderr a terminal it shows progress (done/total, rate, ETA); it
always ends with a summary line on stderr.`)
	to := fs.String("to", "", "topic to move every dead letter to (default: each one's origin topic, its strata-dlq-origin-topic header)")
	rateFlag := fs.String("rate", "0", "most records per second: N or N/s (N/m, N/h); 0: no bound")
	maxN := fs.Int64("max", 0, "move at most this many; 0: all")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("dlq redrive", pos, *group)
	if err != nil {
		return err
	}
	rate, err := parseRate(*rateFlag)
	if err != nil {
		return err
	}
	if *maxN < 0 {
		return fmt.Errorf("--max %d is negative: give how many to move, or 0 for all", *maxN)
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	dlq, err := deadLetterTopicOf(ctx, c, topic, *group, *dlqFlag)
	if err != nil {
		return err
	}
	dest := "their origin topics"
	if *to != "" {
		dest = *to
	}
	begin := time.Now()
	var report func(done, total int64)
	bar := newProgress(0, false) // nil unless stderr is a terminal
	if bar != nil {
		report = bar.Set
	}
	done, err := c.Redrive(ctx, client.RedriveOptions{Topic: topic, Group: *group, DeadLetterTopic: dlq, To: *to,
		Rate: rate, Max: *maxN, Progress: report})
	bar.Done()
	took := time.Since(begin)
	fmt.Fprintf(errOut, "strata: redrove %d records from %s to %s in %v (%.1f/s)\n", done, dlq, dest, took.Round(time.Millisecond), float64(done)/max(took.Seconds(), 1e-3))
	fmt.Fprintln(stdout, done)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d records (each moved once and committed; the next run goes on from there)", done)
		}
		return fmt.Errorf("redrive %s: %w; %d records were moved (and committed; a rerun goes on after them)", dlq, rpcErr(err), done)
	}
	return nil
}
