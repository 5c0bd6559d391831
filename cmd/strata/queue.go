package main

// strata queue: share groups (docs/queues.md) from the command line, on
// the Go client's admin calls, ShareConsumer and Run.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/queue"
)

const queueUsage = `usage: strata queue COMMAND TOPIC --group G [flags] --broker HOST:PORT[,...]

Share groups read a topic as a queue (docs/queues.md): any member receives
any available record under a lease, and settles each record on its own.

  create   TOPIC --group G [settings]        create a share group (and its dead-letter topic)
  alter    TOPIC --group G [settings]        change the settings given; the others stay
  delete   TOPIC --group G                   delete a share group (its dead-letter topic stays)
  list     [TOPIC] [--output json]           the share groups of TOPIC, or of every topic
  describe TOPIC --group G [--output json]   records by state, per partition
  receive  TOPIC --group G [--max N] [--wait DUR] [--visibility DUR] [--format text|json]
  ack|nack|release|reject TOPIC --group G [RECEIPT...|-] [--delay DUR] [--reason TEXT]
  extend   TOPIC --group G --by DUR [RECEIPT...|-]
  run      TOPIC --group G [--concurrency N] [--prefetch N] [--visibility DUR] [--max N] -- CMD [ARGS...]

The settle commands read receipts from stdin, one a line, when none is
given (or "-"); a line may also be a line of receive's output, text or
json. Run 'strata queue COMMAND -h' for a command's flags.
`

func queueCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(errOut, queueUsage)
		return errors.New("no queue command given")
	}
	switch args[0] {
	case "create", "alter":
		return queueConfigure(ctx, args[0], args[1:])
	case "delete":
		return queueDelete(ctx, args[1:])
	case "list":
		return queueList(ctx, args[1:])
	case "describe":
		return queueDescribe(ctx, args[1:])
	case "receive":
		return queueReceive(ctx, args[1:])
	case "ack", "nack", "release", "reject", "extend":
		return queueSettle(ctx, args[0], args[1:])
	case "run":
		return queueRun(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(stdout, queueUsage)
		return nil
	}
	fmt.Fprint(errOut, queueUsage)
	return fmt.Errorf("unknown queue command %q: use create, alter, delete, list, describe, receive, ack, nack, release, reject, extend or run", args[0])
}

// queueFlags is a queue command's flag set with --broker and --group.
func queueFlags(name, usage, about string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet("queue "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata queue %s\n\n%s\n", usage, about)
		fs.PrintDefaults()
	}
	return fs, brokerFlag(fs), fs.String("group", "", "the share group (required)")
}

// topicAndGroup checks that a command got one TOPIC and --group.
// cmd is the command's name, like "queue receive".
func topicAndGroup(cmd string, pos []string, group string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("usage: strata %s TOPIC --group G ...: give one topic (got %d arguments; see strata %s -h)", cmd, len(pos), cmd)
	}
	if group == "" {
		return "", fmt.Errorf("strata %s %s: name the share group with --group G", cmd, pos[0])
	}
	return pos[0], nil
}

// shareSettings are the flags of a share group's settings (create, alter).
type shareSettings struct {
	visibility    *time.Duration
	maxDeliveries *int
	backoff       *string
	multiplier    *float64
	deadLetter    *string
	ordered       *bool
	aging         *time.Duration
	from          *string
}

func addShareSettings(fs *flag.FlagSet) *shareSettings {
	return &shareSettings{
		visibility:    fs.Duration("visibility", 0, "lease of a received record when the receive names none (visibility timeout), 1s to 12h (default 30s)"),
		maxDeliveries: fs.Int("max-deliveries", 0, "deliveries before a record goes to the dead-letter topic, 1 to 1000 (default 5)"),
		backoff:       fs.String("backoff", "", "MIN,MAX: wait after a failed delivery, growing from MIN to at most MAX, with jitter (default 1s,10m)"),
		multiplier:    fs.Float64("backoff-multiplier", 0, "growth of the backoff per failed delivery, 1 to 100 (default 2)"),
		deadLetter:    fs.String("dead-letter", "", "dead-letter topic, not the topic itself (default TOPIC.dlq.GROUP, created with the group)"),
		ordered:       fs.Bool("ordered-by-key", false, "at most one record per key in flight: a key's next record waits until the one before is acked or dead-lettered (alter: --ordered-by-key=false turns it off)"),
		aging:         fs.Duration("priority-aging", 0, "waiting time that adds one priority level to an available record, up to 1h (default 5s)"),
		from:          fs.String("from", "latest", "where a new group starts on each partition: latest (records produced from now on) or earliest (every record kept); create only, fixed for good"),
	}
}

// apply writes the settings given on the command line into cfg (every one
// on create; on alter only those set, so the others stay).
func (s *shareSettings) apply(fs *flag.FlagSet, cfg *client.ShareGroupConfig, create bool) error {
	set := func(name string) bool { return create || flagSet(fs, name) }
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"visibility", *s.visibility}, {"priority-aging", *s.aging}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %v is negative: give a duration like 30s or 5m; nothing was changed", d.name, d.v)
		}
	}
	if set("visibility") {
		cfg.Visibility = *s.visibility
	}
	if set("max-deliveries") {
		if *s.maxDeliveries < 0 || *s.maxDeliveries > math.MaxInt32 {
			return fmt.Errorf("--max-deliveries %d is out of range: use 1 to 1000 (0 for the default, 5); nothing was changed", *s.maxDeliveries)
		}
		cfg.MaxDeliveries = int32(*s.maxDeliveries)
	}
	if set("backoff") {
		cfg.BackoffMin, cfg.BackoffMax = 0, 0
		if *s.backoff != "" {
			lo, hi, ok := strings.Cut(*s.backoff, ",")
			min, err1 := time.ParseDuration(strings.TrimSpace(lo))
			max, err2 := time.ParseDuration(strings.TrimSpace(hi))
			if !ok || err1 != nil || err2 != nil || min < 0 || max < 0 {
				return fmt.Errorf("--backoff %q: give MIN,MAX as two durations, like 200ms,1m (the wait after a failed delivery grows from MIN up to MAX); nothing was changed", *s.backoff)
			}
			cfg.BackoffMin, cfg.BackoffMax = min, max
		}
	}
	if set("backoff-multiplier") {
		cfg.BackoffMultiplier = *s.multiplier
	}
	if set("dead-letter") {
		cfg.DeadLetterTopic = *s.deadLetter
	}
	if set("ordered-by-key") {
		cfg.OrderedByKey = *s.ordered
	}
	if set("priority-aging") {
		cfg.PriorityAging = *s.aging
	}
	switch {
	case !create && flagSet(fs, "from"):
		return errors.New("--from is where the group started, fixed at its creation: to start again, delete the group and create it anew (records it settled would be delivered again); nothing was changed")
	case !create:
	case *s.from == "earliest":
		cfg.StartFromEarliest = true
	case *s.from == "latest":
	default:
		return fmt.Errorf("--from %q: use earliest (every record kept) or latest (records produced from now on)", *s.from)
	}
	return nil
}

// effective is cfg with the broker's defaults in its zero fields.
func effective(cfg client.ShareGroupConfig) client.ShareGroupConfig {
	q := queue.Config{Visibility: cfg.Visibility, MaxDeliveries: cfg.MaxDeliveries, BackoffMin: cfg.BackoffMin,
		BackoffMax: cfg.BackoffMax, BackoffMultiplier: cfg.BackoffMultiplier, PriorityAging: cfg.PriorityAging}.Defaults()
	cfg.Visibility, cfg.MaxDeliveries, cfg.BackoffMin, cfg.BackoffMax = q.Visibility, q.MaxDeliveries, q.BackoffMin, q.BackoffMax
	cfg.BackoffMultiplier, cfg.PriorityAging = q.BackoffMultiplier, q.PriorityAging
	if cfg.DeadLetterTopic == "" {
		cfg.DeadLetterTopic = cfg.Topic + ".dlq." + cfg.Group
	}
	return cfg
}

// configText describes a group's settings (defaults filled in) on one line.
func configText(cfg client.ShareGroupConfig) string {
	e := effective(cfg)
	from := "latest"
	if e.StartFromEarliest {
		from = "earliest"
	}
	ordered := ""
	if e.OrderedByKey {
		ordered = ", ordered by key"
	}
	return fmt.Sprintf("visibility %v, max deliveries %d, backoff %v to %v ×%g, dead-letter topic %s, priority aging %v%s, started at %s",
		e.Visibility, e.MaxDeliveries, e.BackoffMin, e.BackoffMax, e.BackoffMultiplier, e.DeadLetterTopic, e.PriorityAging, ordered, from)
}

// configJSON is a group's settings (defaults filled in) as --output json
// prints them; the names are those of the API's ShareGroupConfig.
type configJSON struct {
	Topic             string  `json:"topic"`
	Group             string  `json:"group"`
	VisibilityMs      int64   `json:"visibility_ms"`
	MaxDeliveries     int32   `json:"max_deliveries"`
	BackoffMinMs      int64   `json:"backoff_min_ms"`
	BackoffMaxMs      int64   `json:"backoff_max_ms"`
	BackoffMultiplier float64 `json:"backoff_multiplier"`
	DeadLetterTopic   string  `json:"dead_letter_topic"`
	OrderedByKey      bool    `json:"ordered_by_key"`
	PriorityAgingMs   int64   `json:"priority_aging_ms"`
	StartFromEarliest bool    `json:"start_from_earliest"`
	StartOffsets      []int64 `json:"start_offsets"`
}

func toConfigJSON(cfg client.ShareGroupConfig) configJSON {
	e := effective(cfg)
	return configJSON{Topic: e.Topic, Group: e.Group, VisibilityMs: e.Visibility.Milliseconds(), MaxDeliveries: e.MaxDeliveries,
		BackoffMinMs: e.BackoffMin.Milliseconds(), BackoffMaxMs: e.BackoffMax.Milliseconds(), BackoffMultiplier: e.BackoffMultiplier,
		DeadLetterTopic: e.DeadLetterTopic, OrderedByKey: e.OrderedByKey, PriorityAgingMs: e.PriorityAging.Milliseconds(),
		StartFromEarliest: e.StartFromEarliest, StartOffsets: e.StartOffsets}
}

func queueConfigure(ctx context.Context, cmd string, args []string) error {
	about := `Creates a share group on TOPIC, and its dead-letter topic when it does not
exist. Settings left out take the broker's defaults.`
	if cmd == "alter" {
		about = `Changes the settings given of share group G; the others stay as they are.
A change applies to deliveries from then on (a running lease keeps its end).`
	}
	fs, brokerAddr, group := queueFlags(cmd, cmd+" TOPIC --group G [--visibility DUR] [--max-deliveries N] [--backoff MIN,MAX] [--backoff-multiplier X] [--dead-letter TOPIC] [--ordered-by-key] [--priority-aging DUR] [--from earliest|latest] --broker HOST:PORT[,...]", about)
	settings := addShareSettings(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("queue "+cmd, pos, *group)
	if err != nil {
		return err
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	cfg := client.ShareGroupConfig{Topic: topic, Group: *group}
	if cmd == "alter" {
		cur, err := findShareGroup(ctx, c, topic, *group)
		if err != nil {
			return err
		}
		cfg = *cur
	}
	if err := settings.apply(fs, &cfg, cmd == "create"); err != nil {
		return err
	}
	var out *client.ShareGroupConfig
	if cmd == "create" {
		out, err = c.CreateShareGroup(ctx, cfg)
	} else {
		out, err = c.AlterShareGroup(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("%s share group %s on topic %s: %w", cmd, *group, topic, rpcErr(err))
	}
	verb := map[string]string{"create": "created", "alter": "altered"}[cmd]
	fmt.Fprintf(stdout, "%s share group %s on topic %s: %s\n", verb, out.Group, out.Topic, configText(*out))
	return nil
}

// findShareGroup returns group's settings on topic, or an error that says
// how to create it.
func findShareGroup(ctx context.Context, c *client.Client, topic, group string) (*client.ShareGroupConfig, error) {
	groups, err := c.ListShareGroups(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("look up share group %s on topic %s: %w", group, topic, rpcErr(err))
	}
	for i := range groups {
		if groups[i].Group == group {
			return &groups[i], nil
		}
	}
	return nil, fmt.Errorf("not found: topic %s has no share group %s: create it with strata queue create %s --group %s", topic, group, topic, group)
}

func queueDelete(ctx context.Context, args []string) error {
	fs, brokerAddr, group := queueFlags("delete", "delete TOPIC --group G --broker HOST:PORT[,...]",
		`Deletes share group G of TOPIC: its state and settings. The topic's records
stay, and so does the dead-letter topic (delete it as any topic).`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("queue delete", pos, *group)
	if err != nil {
		return err
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.DeleteShareGroup(ctx, topic, *group); err != nil {
		return fmt.Errorf("delete share group %s on topic %s: %w", *group, topic, rpcErr(err))
	}
	fmt.Fprintf(stdout, "deleted share group %s on topic %s\n", *group, topic)
	return nil
}

func queueList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("queue list", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: strata queue list [TOPIC] [--output json] --broker HOST:PORT[,...]

Lists the share groups of TOPIC, or of every topic, with their settings
(defaults filled in): text, one group a line, or a JSON array.

`)
		fs.PrintDefaults()
	}
	brokerAddr := brokerFlag(fs)
	output := outputFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("usage: strata queue list [TOPIC] [--output json]: give at most one topic")
	}
	topic := ""
	if len(pos) == 1 {
		topic = pos[0]
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	groups, err := c.ListShareGroups(ctx, topic)
	if err != nil {
		return rpcErr(err)
	}
	if *output == "json" {
		out := make([]configJSON, 0, len(groups))
		for _, g := range groups {
			out = append(out, toConfigJSON(g))
		}
		return printJSON(out)
	}
	tb := newTable(stdout, "TOPIC", "GROUP", "VISIBILITY", "MAX_DELIVERIES", "BACKOFF", "DEAD_LETTER_TOPIC", "ORDERED_BY_KEY", "PRIORITY_AGING", "START")
	for _, g := range groups {
		e := effective(g)
		from := "latest"
		if e.StartFromEarliest {
			from = "earliest"
		}
		tb.row(e.Topic, e.Group, e.Visibility, e.MaxDeliveries, fmt.Sprintf("%v-%v x%g", e.BackoffMin, e.BackoffMax, e.BackoffMultiplier),
			e.DeadLetterTopic, e.OrderedByKey, e.PriorityAging, from)
	}
	return tb.flush()
}

// countsJSON is a group's record counts as describe --output json prints
// them.
type countsJSON struct {
	Available         int64 `json:"available"`
	InFlight          int64 `json:"in_flight"`
	Backoff           int64 `json:"backoff"`
	Delayed           int64 `json:"delayed"`
	KeyBlocked        int64 `json:"key_blocked"`
	DeadLetterPending int64 `json:"dead_letter_pending"`
	Acked             int64 `json:"acked"`
	DeadLettered      int64 `json:"dead_lettered"`
}

func toCountsJSON(c client.ShareCounts) countsJSON {
	return countsJSON{c.Available, c.InFlight, c.Backoff, c.Delayed, c.KeyBlocked, c.DeadLetterPending, c.Acked, c.DeadLettered}
}

type partitionJSON struct {
	Partition int32 `json:"partition"`
	Cursor    int64 `json:"cursor"`
	Floor     int64 `json:"floor"`
	countsJSON
	OldestUnacked *string `json:"oldest_unacked"` // RFC 3339; null: nothing unsettled
	Owner         string  `json:"owner"`
	Live          bool    `json:"live"` // the answering broker holds the state; else as of its latest snapshot
}

type describeJSON struct {
	Config             configJSON      `json:"config"`
	Totals             countsJSON      `json:"totals"`
	OldestUnackedAgeMs int64           `json:"oldest_unacked_age_ms"`
	Partitions         []partitionJSON `json:"partitions"`
}

func queueDescribe(ctx context.Context, args []string) error {
	fs, brokerAddr, group := queueFlags("describe", "describe TOPIC --group G [--output json] --broker HOST:PORT[,...]",
		`Describes share group G: its settings, and its records by state, in all and
per partition: available (may be received now), in flight (leased),
backoff (after a failed delivery), delayed (before their deliver-at time),
key-blocked (behind their key's record in flight, --ordered-by-key),
dead-letter pending (on their way to the dead-letter topic), acked and
dead-lettered (since the group was created), and the age of the oldest
record not settled. cursor is the next offset the group reads; every
record below floor is settled.`)
	output := outputFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	topic, err := topicAndGroup("queue describe", pos, *group)
	if err != nil {
		return err
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	d, err := c.DescribeShareGroup(ctx, topic, *group)
	if err != nil {
		return fmt.Errorf("describe share group %s on topic %s: %w", *group, topic, rpcErr(err))
	}
	if *output == "json" {
		out := describeJSON{Config: toConfigJSON(d.Config), Totals: toCountsJSON(d.ShareCounts),
			OldestUnackedAgeMs: d.OldestUnackedAge.Milliseconds(), Partitions: []partitionJSON{}}
		for _, p := range d.Partitions {
			pj := partitionJSON{Partition: p.Partition, Cursor: p.Cursor, Floor: p.Floor, countsJSON: toCountsJSON(p.ShareCounts), Owner: p.Owner, Live: p.Live}
			if !p.OldestUnacked.IsZero() {
				s := rfc3339ms(p.OldestUnacked)
				pj.OldestUnacked = &s
			}
			out.Partitions = append(out.Partitions, pj)
		}
		return printJSON(out)
	}
	t := d.ShareCounts
	fmt.Fprintf(stdout, "share group %s on topic %s: %s\n", d.Config.Group, d.Config.Topic, configText(d.Config))
	oldest := "none"
	if d.OldestUnackedAge > 0 {
		oldest = d.OldestUnackedAge.Round(time.Millisecond).String()
	}
	fmt.Fprintf(stdout, "available %d, in flight %d, backoff %d, delayed %d, key-blocked %d, dead-letter pending %d, acked %d, dead-lettered %d; oldest unacked age %s\n",
		t.Available, t.InFlight, t.Backoff, t.Delayed, t.KeyBlocked, t.DeadLetterPending, t.Acked, t.DeadLettered, oldest)
	fmt.Fprintln(stdout)
	tb := newTable(stdout, "PARTITION", "CURSOR", "FLOOR", "AVAILABLE", "IN_FLIGHT", "BACKOFF", "DELAYED", "KEY_BLOCKED", "DEAD_LETTER_PENDING", "ACKED", "DEAD_LETTERED", "OLDEST_UNACKED", "OWNER")
	for _, p := range d.Partitions {
		o := "-"
		if !p.OldestUnacked.IsZero() {
			o = rfc3339ms(p.OldestUnacked)
		}
		owner := p.Owner
		switch {
		case !p.Live:
			owner = "- (as of its last snapshot)"
		case owner == "":
			owner = "this broker"
		}
		tb.row(p.Partition, p.Cursor, p.Floor, p.Available, p.InFlight, p.Backoff, p.Delayed, p.KeyBlocked, p.DeadLetterPending, p.Acked, p.DeadLettered, o, owner)
	}
	return tb.flush()
}

// checkVisibility checks a --visibility flag of receive and run: 0 (the
// group's) or 1s to 12h.
func checkVisibility(v time.Duration) error {
	if v != 0 && (v < queue.MinVisibility || v > queue.MaxVisibility) {
		return fmt.Errorf("--visibility %v is out of range: lease records for %v to %v (or 0 for the group's visibility timeout); nothing was received", v, queue.MinVisibility, queue.MaxVisibility)
	}
	return nil
}

func queueReceive(ctx context.Context, args []string) error {
	fs, brokerAddr, group := queueFlags("receive", "receive TOPIC --group G [--max N] [--wait DUR] [--visibility DUR] [--format text|json] --broker HOST:PORT[,...]",
		`Receives up to --max available records of share group G, each leased to
the caller until its lease ends: settle each with its receipt before then
(strata queue ack|nack|release|reject), or extend its lease (strata queue
extend); a record not settled in time is delivered again. It waits up to
--wait when none is available, and prints nothing (exit 0) when none came.

--format text prints value<TAB>receipt a line (a value with a newline or
tab in it reads ambiguously: use json); --format json prints an object a
line: topic, partition, offset, timestamp, key, value, headers, receipt,
delivery_count (1 on the first delivery) and lease_until (RFC 3339, the
broker's clock). Either output piped into a settle command settles every
record: strata queue receive T --group G | strata queue ack T --group G.`)
	maxN := fs.Int("max", 1, "most records to receive, 1 to 1000")
	wait := fs.Duration("wait", 5*time.Second, "how long to wait for records when none is available (long poll), 0 to 20s")
	visibility := fs.Duration("visibility", 0, "lease of the records received, 1s to 12h (default: the group's visibility timeout)")
	format := fs.String("format", "text", "text (value<TAB>receipt a line) or json (an object a line)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("queue receive", pos, *group)
	if err != nil {
		return err
	}
	switch {
	case *maxN < 1 || *maxN > 1000:
		return fmt.Errorf("--max %d is out of range: receive 1 to 1000 records at once", *maxN)
	case *wait < 0 || *wait > 20*time.Second:
		return fmt.Errorf("--wait %v is out of range: wait 0 (answer at once) to 20s", *wait)
	case *format != "text" && *format != "json":
		return fmt.Errorf("--format %q: use text or json", *format)
	}
	if err := checkVisibility(*visibility); err != nil {
		return err
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	k := c.NewShareConsumer(topic, *group, client.WithVisibility(*visibility), client.WithWait(*wait))
	msgs, err := k.Receive(ctx, *maxN)
	if err != nil {
		return fmt.Errorf("%w; nothing was received", rpcErr(err)) // the client's error names the group and topic
	}
	w := bufio.NewWriter(stdout)
	for _, m := range msgs {
		if *format == "json" {
			obj := recordJSON(topic, m.Record)
			obj["receipt"], obj["delivery_count"] = m.Receipt, m.DeliveryCount
			obj["lease_until"] = rfc3339ms(m.LeaseUntil)
			line, _ := json.Marshal(obj)
			w.Write(line)
		} else {
			w.Write(m.Value)
			w.WriteByte('\t')
			w.WriteString(m.Receipt)
		}
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		// Leased, not printed: give them back rather than let the leases run out.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var rs []string
		for _, m := range msgs {
			rs = append(rs, m.Receipt)
		}
		k.Release(rctx, rs...)
		return fmt.Errorf("print the received records: %v; they were released (available again)", err)
	}
	return nil
}

// readReceipts is the receipts of a settle command: its arguments, or
// with none (or "-") stdin's lines. A line is a receipt, a line of
// receive's text output (the receipt after the last tab) or of its json
// output (the object's "receipt").
func readReceipts(pos []string, in io.Reader) ([]string, error) {
	if len(pos) > 0 && !(len(pos) == 1 && pos[0] == "-") {
		if slices.Contains(pos, "-") {
			return nil, errors.New(`give receipts as arguments, or "-" alone to read them from stdin, not both`)
		}
		return pos, nil
	}
	var out []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "{"):
			var obj struct {
				Receipt string `json:"receipt"`
			}
			if err := json.Unmarshal([]byte(line), &obj); err != nil || obj.Receipt == "" {
				return nil, fmt.Errorf("stdin line %d is a JSON object without a \"receipt\" (as receive --format json prints): nothing was settled", n)
			}
			line = obj.Receipt
		case strings.Contains(line, "\t"):
			line = line[strings.LastIndexByte(line, '\t')+1:]
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read receipts from stdin: %v; nothing was settled", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no receipt given: name receipts as arguments, or give one a line on stdin; nothing was settled")
	}
	return out, nil
}

// settleAbout says what each settle command does.
var settleAbout = map[string]string{
	"ack":     "Settles records as done, for good.",
	"nack":    "Settles records as failed: each is available again after the group's backoff\n(or --delay), the delivery counted; after the group's max deliveries it goes\nto the dead-letter topic, with --reason in its strata-dlq-reason header.",
	"release": "Gives records back: each is available again at once, the delivery not\ncounted (a worker that stops releases what it holds).",
	"reject":  "Sends records to the group's dead-letter topic now, with --reason in their\nstrata-dlq-reason header.",
	"extend":  "Makes the leases of records end --by from now (1s to 12h), for a worker that\nneeds longer; prints the earliest new lease end.",
}

func queueSettle(ctx context.Context, cmd string, args []string) error {
	usage := cmd + " TOPIC --group G [RECEIPT...|-]"
	switch cmd {
	case "nack":
		usage += " [--delay DUR] [--reason TEXT]"
	case "reject":
		usage += " [--reason TEXT]"
	case "extend":
		usage += " --by DUR"
	}
	fs, brokerAddr, group := queueFlags(cmd, usage+" --broker HOST:PORT[,...]", settleAbout[cmd]+`

Receipts come from the arguments, or, when none is given (or "-"), from
stdin, one a line (receive's output lines work too). It prints how many
receipts settled; one that did not is named with why, and the command
exits non-zero (the others did settle).`)
	var delay, by *time.Duration
	var reason *string
	switch cmd {
	case "nack":
		delay = fs.Duration("delay", 0, "available again after this long instead of the group's backoff, 0 to 366 days (0: the backoff)")
		fallthrough
	case "reject":
		reason = fs.String("reason", "", "why, kept as the record's last error (its strata-dlq-reason header once dead-lettered); at most 1024 bytes")
	case "extend":
		by = fs.Duration("by", 0, "the new lease length from now, 1s to 12h (required)")
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("usage: strata queue %s TOPIC --group G [RECEIPT...]: give the topic", cmd)
	}
	topic, err := topicAndGroup("queue "+cmd, pos[:1], *group)
	if err != nil {
		return err
	}
	var d time.Duration
	var why string
	switch {
	case delay != nil:
		if *delay < 0 || *delay > queue.MaxDelay {
			return fmt.Errorf("--delay %v is out of range: nack with a delay of 0 (the group's backoff) to %v (366 days); nothing was settled", *delay, queue.MaxDelay)
		}
		d = *delay
	case by != nil:
		if *by < queue.MinVisibility || *by > queue.MaxVisibility {
			return fmt.Errorf("--by %v is out of range: extend a lease to %v to %v from now; nothing was settled", *by, queue.MinVisibility, queue.MaxVisibility)
		}
		d = *by
	}
	if reason != nil {
		if len(*reason) > client.MaxReasonBytes {
			return fmt.Errorf("--reason is %d bytes, over the limit of %d; nothing was settled: give a shorter reason", len(*reason), client.MaxReasonBytes)
		}
		why = *reason
	}
	receipts, err := readReceipts(pos[1:], stdin)
	if err != nil {
		return err
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	k := c.NewShareConsumer(topic, *group)
	var until time.Time
	switch cmd {
	case "ack":
		err = k.Ack(ctx, receipts...)
	case "nack":
		err = k.Nack(ctx, d, why, receipts...)
	case "release":
		err = k.Release(ctx, receipts...)
	case "reject":
		err = k.Reject(ctx, why, receipts...)
	case "extend":
		until, err = k.Extend(ctx, d, receipts...)
	}
	failed := 0
	var se *client.SettleError
	if errors.As(err, &se) {
		failed = len(se.Failed)
	} else if err != nil {
		failed = len(receipts)
	}
	fmt.Fprintln(stdout, len(receipts)-failed)
	if cmd == "extend" && !until.IsZero() {
		fmt.Fprintf(errOut, "strata: the earliest new lease end is %s (the broker's clock)\n", rfc3339ms(until))
	}
	if err == nil {
		return nil
	}
	if se == nil {
		return fmt.Errorf("%s in share group %s on topic %s: %w; the outcome of the %d receipts is unknown (settling one again says whether it settled)", cmd, *group, topic, rpcErr(err), len(receipts))
	}
	var b strings.Builder
	if failed == len(receipts) {
		fmt.Fprintf(&b, "%s in share group %s on topic %s: no receipt settled (of %d):", cmd, *group, topic, len(receipts))
	} else {
		fmt.Fprintf(&b, "%s in share group %s on topic %s: %d of %d receipts did not settle (the other %d did):", cmd, *group, topic, failed, len(receipts), len(receipts)-failed)
	}
	for _, f := range se.Failed {
		fmt.Fprintf(&b, "\n  receipt %s: %s: %s", strconv.Quote(f.Receipt), codeWords(f.Code), f.Message)
		if hint := receiptHint(f.Code); hint != "" {
			b.WriteString(" (" + hint + ")")
		}
	}
	return errors.New(b.String())
}

// receiptHint says what to do about a receipt that failed with code.
func receiptHint(code codes.Code) string {
	switch code {
	case codes.FailedPrecondition:
		return "that lease is gone: the record was settled, or is delivered again under a new receipt"
	case codes.InvalidArgument:
		return "use a receipt that strata queue receive printed for this topic and group"
	case codes.Unavailable, codes.DeadlineExceeded:
		return "its broker did not answer: the outcome is unknown; settle it again"
	}
	return ""
}

// notFound reports whether err is a NOT_FOUND status.
func notFound(err error) bool { return status.Code(err) == codes.NotFound }
