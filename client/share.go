package client

// Share groups (queue semantics): admin wrappers, the ShareConsumer's
// receive and settle, and their routing in a cluster.
//
// Routing:
//   - Receive asks every broker that owns a partition of the topic (the
//     distinct owners in the metadata), each for the partitions it owns
//     (the request names none, so an owner serves whatever it owns now and
//     never answers NOT_OWNER). It first asks the owners one after another
//     without waiting, starting at the next owner each call (round robin),
//     until it has max records; when none had any, it long-polls every
//     owner in parallel and returns with the first answer that has records:
//     the other polls are canceled (the broker releases, without penalty,
//     what it leased for a caller that is gone), and records that arrive
//     from them anyway beyond max are released by the client. A receive
//     that finds nothing refreshes the metadata in the background (at most
//     once a second), so an owner that took over partitions is asked from
//     the next receive on.
//   - A settle goes to the owner of each receipt's partition
//     (ReceiptPartition), one request per owner, in parallel; receipts
//     answered NOT_OWNER are sent again to the owner named (at most 10
//     redirects), and a request whose broker cannot be reached, or
//     receipts the owner could not store (UNAVAILABLE: it is taking the
//     partition over), are sent again with backoff, after a metadata
//     refresh, for at most the failover timeout. A settle resent after its answer
//     was lost may report FAILED_PRECONDITION (already settled) for a
//     receipt the first attempt settled.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// ShareGroupConfig is a share group's settings. Zero fields take the
// broker's defaults (visibility 30s, 5 deliveries, backoff 1s to 10m
// doubling, dead-letter topic <topic>.dlq.<group>, priority aging 5s).
type ShareGroupConfig struct {
	Topic, Group      string
	Visibility        time.Duration // lease when a receive names none; 1s to 12h
	MaxDeliveries     int32         // deliveries before the dead-letter topic; 1 to 1000
	BackoffMin        time.Duration // wait after the first failed delivery
	BackoffMax        time.Duration // cap of the growing wait
	BackoffMultiplier float64       // growth per failed delivery; 1 to 100
	DeadLetterTopic   string
	OrderedByKey      bool          // at most one record per key in flight
	PriorityAging     time.Duration // waiting time that adds one priority level
	StartFromEarliest bool          // a new group starts at the log start (default: at the end); fixed at creation
	// Set by the broker (ignored by create and alter):
	Seed         uint64  // backoff jitter seed, chosen at creation
	StartOffsets []int64 // where the group started on each partition
}

func (c *ShareGroupConfig) toProto() *stratapb.ShareGroupConfig {
	return &stratapb.ShareGroupConfig{
		Topic: c.Topic, Group: c.Group, VisibilityMs: c.Visibility.Milliseconds(), MaxDeliveries: c.MaxDeliveries,
		BackoffMinMs: c.BackoffMin.Milliseconds(), BackoffMaxMs: c.BackoffMax.Milliseconds(), BackoffMultiplier: c.BackoffMultiplier,
		DeadLetterTopic: c.DeadLetterTopic, OrderedByKey: c.OrderedByKey, PriorityAgingMs: c.PriorityAging.Milliseconds(),
		StartFromEarliest: c.StartFromEarliest,
	}
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

func shareConfigFromProto(c *stratapb.ShareGroupConfig) ShareGroupConfig {
	return ShareGroupConfig{
		Topic: c.GetTopic(), Group: c.GetGroup(), Visibility: ms(c.GetVisibilityMs()), MaxDeliveries: c.GetMaxDeliveries(),
		BackoffMin: ms(c.GetBackoffMinMs()), BackoffMax: ms(c.GetBackoffMaxMs()), BackoffMultiplier: c.GetBackoffMultiplier(),
		DeadLetterTopic: c.GetDeadLetterTopic(), OrderedByKey: c.GetOrderedByKey(), PriorityAging: ms(c.GetPriorityAgingMs()),
		Seed: c.GetSeed(), StartFromEarliest: c.GetStartFromEarliest(), StartOffsets: c.GetStartOffsets(),
	}
}

// ShareCounts counts a share group's records by state.
type ShareCounts struct {
	Available         int64 // may be received now
	InFlight          int64 // leased
	Backoff           int64 // waiting after a failed delivery
	Delayed           int64 // waiting for their deliver-at time
	KeyBlocked        int64 // behind their key's record in flight (OrderedByKey)
	DeadLetterPending int64 // on their way to the dead-letter topic
	Acked             int64 // since the group was created
	DeadLettered      int64 // since the group was created
}

func countsFromProto(c *stratapb.ShareCounts) ShareCounts {
	return ShareCounts{Available: c.GetAvailable(), InFlight: c.GetInFlight(), Backoff: c.GetBackoff(), Delayed: c.GetDelayed(),
		KeyBlocked: c.GetKeyBlocked(), DeadLetterPending: c.GetDeadLetterPending(), Acked: c.GetAcked(), DeadLettered: c.GetDeadLettered()}
}

// SharePartition is a share group's state on one partition.
type SharePartition struct {
	Partition int32
	Cursor    int64 // next offset the group reads
	Floor     int64 // every record below is settled
	ShareCounts
	OldestUnacked time.Time // zero: nothing unsettled
	Owner         string    // the broker holding it (its node id; "" for a broker without one)
	Live          bool      // the answering broker holds the state; else as of its latest snapshot
}

// ShareGroupDescription describes a share group: its settings, its
// totals and each partition.
type ShareGroupDescription struct {
	Config ShareGroupConfig
	ShareCounts
	OldestUnackedAge time.Duration
	Partitions       []SharePartition
}

// CreateShareGroup creates a share group (and its dead-letter topic when
// absent) and returns its settings as stored. A group that exists
// answers ALREADY_EXISTS.
func (c *Client) CreateShareGroup(ctx context.Context, cfg ShareGroupConfig) (*ShareGroupConfig, error) {
	resp, err := c.api.CreateShareGroup(ctx, &stratapb.CreateShareGroupRequest{Config: cfg.toProto()})
	if err != nil {
		return nil, err
	}
	out := shareConfigFromProto(resp.Config)
	return &out, nil
}

// AlterShareGroup replaces a share group's settings with cfg's (its seed,
// start offsets and StartFromEarliest stay); a zero field takes its
// default.
func (c *Client) AlterShareGroup(ctx context.Context, cfg ShareGroupConfig) (*ShareGroupConfig, error) {
	resp, err := c.api.AlterShareGroup(ctx, &stratapb.AlterShareGroupRequest{Config: cfg.toProto()})
	if err != nil {
		return nil, err
	}
	out := shareConfigFromProto(resp.Config)
	return &out, nil
}

// DeleteShareGroup deletes a share group.
func (c *Client) DeleteShareGroup(ctx context.Context, topic, group string) error {
	_, err := c.api.DeleteShareGroup(ctx, &stratapb.DeleteShareGroupRequest{Topic: topic, Group: group})
	return err
}

// ListShareGroups lists the share groups of topic ("": of every topic).
func (c *Client) ListShareGroups(ctx context.Context, topic string) ([]ShareGroupConfig, error) {
	resp, err := c.api.ListShareGroups(ctx, &stratapb.ListShareGroupsRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	out := make([]ShareGroupConfig, 0, len(resp.Groups))
	for _, g := range resp.Groups {
		out = append(out, shareConfigFromProto(g))
	}
	return out, nil
}

// DescribeShareGroup describes a share group.
func (c *Client) DescribeShareGroup(ctx context.Context, topic, group string) (*ShareGroupDescription, error) {
	resp, err := c.api.DescribeShareGroup(ctx, &stratapb.DescribeShareGroupRequest{Topic: topic, Group: group})
	if err != nil {
		return nil, err
	}
	out := &ShareGroupDescription{Config: shareConfigFromProto(resp.Config), ShareCounts: countsFromProto(resp.Totals),
		OldestUnackedAge: ms(resp.OldestUnackedAgeMs)}
	for _, p := range resp.Partitions {
		sp := SharePartition{Partition: p.Partition, Cursor: p.Cursor, Floor: p.Floor, ShareCounts: countsFromProto(p.Counts), Owner: p.Owner, Live: p.GetLive()}
		if p.OldestUnackedMs != 0 {
			sp.OldestUnacked = time.UnixMilli(p.OldestUnackedMs)
		}
		out.Partitions = append(out.Partitions, sp)
	}
	return out, nil
}

// ReceiptPartition returns the partition a receipt belongs to. A receipt
// is "<partition>-<opaque>": the decimal partition number, a dash, then
// opaque base64url text. That form is stable (a client may route by it);
// the opaque part is the broker's and means nothing to a client.
func ReceiptPartition(receipt string) (int32, error) {
	num, rest, ok := strings.Cut(receipt, "-")
	if !ok || num == "" || rest == "" || (len(num) > 1 && num[0] == '0') {
		return 0, fmt.Errorf("client: %q is not a receipt: a receipt is <partition>-<opaque>, as Receive returned it", receipt)
	}
	for _, ch := range num {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("client: %q is not a receipt: a receipt is <partition>-<opaque>, as Receive returned it", receipt)
		}
	}
	p, err := strconv.ParseInt(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("client: %q is not a receipt: its partition is out of range", receipt)
	}
	return int32(p), nil
}

// Message is a record received from a share group, under a lease.
type Message struct {
	Record                  // Topic, Partition, Offset, Timestamp, Key, Value, Headers
	Receipt       string    // settles this delivery (Ack, Nack, Release, Reject, Extend)
	DeliveryCount int32     // 1 on the first delivery
	LeaseUntil    time.Time // the lease ends then, by the broker's clock
	received      time.Time // this client's clock when the receive was sent: the lease began after
	arrived       time.Time // this client's clock when the answer came: the lease began shortly before (after any long-poll wait)
}

// ShareOption configures a ShareConsumer.
type ShareOption func(*shareConfig)

type shareConfig struct {
	visibility time.Duration
	maxRecords int
	wait       time.Duration
	maxBytes   int32
}

// WithVisibility sets the lease of the records a receive hands out, 1s
// to 12h. Default: the group's visibility timeout.
func WithVisibility(d time.Duration) ShareOption {
	return func(c *shareConfig) { c.visibility = max(d, 0) }
}

// WithMaxRecords sets the most records one receive returns when its
// caller names no number (Receive's max 0), and the most Run asks for at
// once. Default 100; at most 1000.
func WithMaxRecords(n int) ShareOption {
	return func(c *shareConfig) { c.maxRecords = min(max(n, 1), maxReceiveRecords) }
}

// WithWait sets how long a receive waits for records when none is
// available (long poll). Default 5s; at most 20s; 0: answer at once.
func WithWait(d time.Duration) ShareOption {
	return func(c *shareConfig) { c.wait = min(max(d, 0), maxReceiveWait) }
}

// WithReceiveMaxBytes bounds the record bytes one broker answers a
// receive with (one record is always answered). Default 1 MiB; keep it
// under the client's largest message (the Go client accepts 64 MiB by
// default; gRPC's own default is 4 MiB).
func WithReceiveMaxBytes(n int32) ShareOption {
	return func(c *shareConfig) { c.maxBytes = max(n, 0) }
}

// Bounds of the API (the broker refuses more).
const (
	maxReceiveRecords = 1000
	maxReceiveWait    = 20 * time.Second
	maxSettleReceipts = 1000
	// MaxReasonBytes bounds a nack's or reject's reason; the client cuts
	// longer ones (at a UTF-8 boundary, ending in "…").
	MaxReasonBytes = 1024
	// receiveSlack is added to a receive's wait for its call's timeout.
	receiveSlack = 10 * time.Second
	// releaseTimeout bounds releasing records received beyond max.
	releaseTimeout = 5 * time.Second
	// emptyRefresh is the least time between two metadata refreshes
	// after receives that found nothing.
	emptyRefresh = time.Second
)

// ShareConsumer receives records of one share group on a topic and
// settles them. It is safe for concurrent use and owns no goroutine
// between calls (Run's end when it returns).
type ShareConsumer struct {
	c     *Client
	topic string
	group string
	cfg   shareConfig

	mu          sync.Mutex // guards the fields below
	next        int        // round-robin start among the owners
	lastRefresh time.Time  // of the metadata after an empty receive
}

// NewShareConsumer returns a consumer of share group group on topic. The
// group must exist (CreateShareGroup).
func (c *Client) NewShareConsumer(topic, group string, opts ...ShareOption) *ShareConsumer {
	cfg := shareConfig{maxRecords: 100, wait: 5 * time.Second, maxBytes: 1 << 20}
	for _, o := range opts {
		o(&cfg)
	}
	return &ShareConsumer{c: c, topic: topic, group: group, cfg: cfg}
}

// owners returns the distinct brokers that own the topic's partitions.
func (k *ShareConsumer) owners(ctx context.Context) ([]string, error) {
	n, err := k.c.partitionCount(ctx, k.topic)
	if err != nil {
		return nil, fmt.Errorf("client: look up topic %q: %w", k.topic, err)
	}
	if n <= 0 {
		return nil, status.Errorf(codes.NotFound, "client: topic %q does not exist", k.topic)
	}
	var out []string
	for p := range n {
		a, ok := k.c.cachedOwner(k.topic, p)
		if !ok {
			a = k.c.ownerOf(ctx, k.topic, p)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Receive returns up to max records (max <= 0: WithMaxRecords's value;
// at most 1000), each leased to this caller until its LeaseUntil: settle
// each before then (Ack, Nack, Release, Reject), or Extend its lease. It
// waits up to the consumer's wait (WithWait) when no record is
// available, and returns an empty slice and no error when none came.
func (k *ShareConsumer) Receive(ctx context.Context, max int) ([]Message, error) {
	if max <= 0 {
		max = k.cfg.maxRecords
	}
	return k.receive(ctx, min(max, maxReceiveRecords), k.cfg.visibility)
}

func (k *ShareConsumer) receive(ctx context.Context, max int, vis time.Duration) ([]Message, error) {
	owners, err := k.owners(ctx)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	start := k.next % len(owners)
	k.next++
	k.mu.Unlock()
	owners = slices.Concat(owners[start:], owners[:start])
	var out []Message
	var firstErr error
	if len(owners) > 1 || k.cfg.wait == 0 {
		// Without waiting, owner after owner.
		answered := 0
		for _, addr := range owners {
			msgs, err := k.receiveFrom(ctx, addr, max-len(out), 0, vis)
			if err != nil {
				if ctx.Err() != nil {
					return k.giveBack(ctx, out, max, ctx.Err())
				}
				firstErr = cmpErr(firstErr, err)
				continue
			}
			answered++
			out = append(out, msgs...)
			if len(out) >= max {
				break
			}
		}
		if len(out) > 0 || k.cfg.wait == 0 || answered == 0 {
			if len(out) == 0 {
				k.refreshAfterEmpty()
			}
			return k.giveBack(ctx, out, max, firstErr)
		}
	}
	out, err = k.longPoll(ctx, owners, max, vis)
	if len(out) == 0 && err == nil {
		k.refreshAfterEmpty()
	}
	return k.giveBack(ctx, out, max, err)
}

// giveBack returns the first max of msgs, and releases the rest. With
// messages, err is dropped (it is reported again by a later receive);
// without, it is returned.
func (k *ShareConsumer) giveBack(ctx context.Context, msgs []Message, max int, err error) ([]Message, error) {
	if len(msgs) > max {
		extra := make([]string, 0, len(msgs)-max)
		for _, m := range msgs[max:] {
			extra = append(extra, m.Receipt)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		k.settle(rctx, settleRelease, 0, "", extra) // best effort: else their leases run out
		cancel()
		msgs = msgs[:max]
	}
	if len(msgs) > 0 {
		return msgs, nil
	}
	if err != nil {
		return nil, err
	}
	return []Message{}, nil
}

// longPoll asks every owner at once, waiting, and returns when one
// answers with records (the others are canceled) or all answered empty.
func (k *ShareConsumer) longPoll(ctx context.Context, owners []string, max int, vis time.Duration) ([]Message, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		msgs []Message
		err  error
	}
	answers := make(chan answer, len(owners))
	for _, addr := range owners {
		go func() {
			msgs, err := k.receiveFrom(pctx, addr, max, k.cfg.wait, vis)
			answers <- answer{msgs, err}
		}()
	}
	var out []Message
	var firstErr error
	for range owners {
		a := <-answers
		out = append(out, a.msgs...)
		if len(a.msgs) > 0 {
			cancel() // the others answer at once now
		}
		if a.err != nil && pctx.Err() == nil {
			firstErr = cmpErr(firstErr, a.err)
		}
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, firstErr
}

// refreshAfterEmpty refreshes the metadata in the background after a
// receive that found nothing (an owner may have joined), at most once per
// emptyRefresh.
func (k *ShareConsumer) refreshAfterEmpty() {
	k.mu.Lock()
	due := time.Since(k.lastRefresh) >= emptyRefresh
	if due {
		k.lastRefresh = time.Now()
	}
	k.mu.Unlock()
	if due {
		k.c.refreshInBackground()
	}
}

// receiveFrom makes one receive at the broker at addr, for the
// partitions it owns.
func (k *ShareConsumer) receiveFrom(ctx context.Context, addr string, max int, wait, vis time.Duration) ([]Message, error) {
	api, err := k.c.stub(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait+receiveSlack)
	defer cancel()
	sent := time.Now()
	resp, err := api.Receive(ctx, &stratapb.ReceiveRequest{Topic: k.topic, Group: k.group, MaxRecords: int32(max),
		WaitMs: int32(wait.Milliseconds()), VisibilityMs: vis.Milliseconds(), MaxBytes: k.cfg.maxBytes})
	switch {
	case err == nil:
		k.c.answered(addr)
	case unreachable(err):
		k.c.markDown(addr)
		k.c.refreshInBackground()
		return nil, err
	default:
		if _, moved := NotOwner(err); moved {
			k.c.refreshInBackground()
		}
		return nil, fmt.Errorf("client: receive from share group %s of %s at %s: %w", k.group, k.topic, addr, err)
	}
	out := make([]Message, 0, len(resp.Deliveries))
	arrived := time.Now()
	for _, d := range resp.Deliveries {
		m := Message{Record: fromProto(k.topic, d.Record), Receipt: d.Receipt, DeliveryCount: d.DeliveryCount, received: sent, arrived: arrived}
		m.Partition = d.Partition
		if d.LeaseUntilMs != 0 {
			m.LeaseUntil = time.UnixMilli(d.LeaseUntilMs)
		}
		out = append(out, m)
	}
	return out, nil
}

// Ack settles receipts as done.
func (k *ShareConsumer) Ack(ctx context.Context, receipts ...string) error {
	_, err := k.settleAll(ctx, settleAck, 0, "", receipts)
	return err
}

// Release gives receipts back: their records are available again at
// once, and the delivery does not count against the group's max
// deliveries.
func (k *ShareConsumer) Release(ctx context.Context, receipts ...string) error {
	_, err := k.settleAll(ctx, settleRelease, 0, "", receipts)
	return err
}

// Nack settles receipts as failed: their records come back after delay,
// or after the group's backoff when delay is 0, and the delivery counts
// (after the group's max deliveries a record goes to the dead-letter
// topic). reason is kept as the record's last error (cut to
// MaxReasonBytes).
func (k *ShareConsumer) Nack(ctx context.Context, delay time.Duration, reason string, receipts ...string) error {
	_, err := k.settleAll(ctx, settleNack, delay, reason, receipts)
	return err
}

// Reject sends receipts' records to the group's dead-letter topic now,
// with reason (cut to MaxReasonBytes) in their strata-dlq-reason header.
func (k *ShareConsumer) Reject(ctx context.Context, reason string, receipts ...string) error {
	_, err := k.settleAll(ctx, settleReject, 0, reason, receipts)
	return err
}

// Extend makes receipts' leases end by from now (1s to 12h) and returns
// the earliest new lease end among those extended (broker clock; zero
// when none was).
func (k *ShareConsumer) Extend(ctx context.Context, by time.Duration, receipts ...string) (time.Time, error) {
	res, err := k.settleAll(ctx, settleExtend, by, "", receipts)
	var until time.Time
	for _, r := range res {
		if r.err == nil && !r.until.IsZero() && (until.IsZero() || r.until.Before(until)) {
			until = r.until
		}
	}
	return until, err
}

// settleKind is one of the five settle RPCs.
type settleKind int

const (
	settleAck settleKind = iota
	settleNack
	settleRelease
	settleReject
	settleExtend
)

var settleNames = [...]string{"ack", "nack", "release", "reject", "extend"}

type settleRPC func(ctx context.Context, in *stratapb.SettleRequest, opts ...grpc.CallOption) (*stratapb.SettleResponse, error)

func (k settleKind) rpc(api stratapb.StrataClient) settleRPC {
	return [...]settleRPC{api.Ack, api.Nack, api.Release, api.Reject, api.Extend}[k]
}

// ReceiptError is why one receipt did not settle.
type ReceiptError struct {
	Receipt string
	// Code is the broker's (or the client's) gRPC code: FailedPrecondition
	// when the lease ended or the record is settled already (it may be
	// delivered again, to anyone); InvalidArgument when the receipt is
	// not one of this group; Unavailable or DeadlineExceeded when its
	// owner could not be reached (the outcome may be unknown).
	Code    codes.Code
	Message string
}

func (e *ReceiptError) Error() string {
	return fmt.Sprintf("receipt %s: %s (%s)", e.Receipt, e.Message, e.Code)
}

// GRPCStatus makes status.Code(err) the receipt's code.
func (e *ReceiptError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// SettleError reports the receipts of one settle call that did not
// settle (Failed, in the call's order); every other receipt settled.
type SettleError struct {
	Op           string // ack, nack, release, reject, extend
	Topic, Group string
	Receipts     int // in the call
	Failed       []*ReceiptError
}

func (e *SettleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s in share group %s of %s: %d of %d receipts did not settle (the others did)", e.Op, e.Group, e.Topic, len(e.Failed), e.Receipts)
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns the receipts' errors.
func (e *SettleError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

// cutReason makes reason fit the broker's bound: valid UTF-8, at most
// MaxReasonBytes, cut at a rune boundary and ending in "…" when cut.
func cutReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	const ell = "…"
	n := MaxReasonBytes - len(ell)
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n] + ell
}

// settled is one receipt's outcome.
type settled struct {
	until time.Time
	err   *ReceiptError
}

// settleAll settles receipts and returns each one's outcome, in order,
// and a *SettleError when some failed.
func (k *ShareConsumer) settleAll(ctx context.Context, kind settleKind, delay time.Duration, reason string, receipts []string) ([]settled, error) {
	if len(receipts) == 0 {
		return nil, nil
	}
	res := k.settle(ctx, kind, delay, reason, receipts)
	var failed []*ReceiptError
	for _, r := range res {
		if r.err != nil {
			failed = append(failed, r.err)
		}
	}
	if len(failed) > 0 {
		return res, &SettleError{Op: settleNames[kind], Topic: k.topic, Group: k.group, Receipts: len(receipts), Failed: failed}
	}
	return res, nil
}

// settleItem is a receipt still to settle.
type settleItem struct {
	idx     int
	receipt string
	part    int32
}

// settle settles receipts at their partitions' owners (the routing above)
// and returns each one's outcome, in order.
func (k *ShareConsumer) settle(ctx context.Context, kind settleKind, delay time.Duration, reason string, receipts []string) []settled {
	res := make([]settled, len(receipts))
	var pending []settleItem
	for i, r := range receipts {
		p, err := ReceiptPartition(r)
		if err != nil {
			res[i].err = &ReceiptError{Receipt: r, Code: codes.InvalidArgument, Message: err.Error()}
			continue
		}
		pending = append(pending, settleItem{i, r, p})
	}
	if kind == settleNack || kind == settleReject {
		reason = cutReason(reason)
	}
	start := time.Now()
	for round := 0; len(pending) > 0; round++ {
		byOwner := map[string][]settleItem{}
		var order []string
		for _, it := range pending {
			a := k.c.ownerOf(ctx, k.topic, it.part)
			if _, ok := byOwner[a]; !ok {
				order = append(order, a)
			}
			byOwner[a] = append(byOwner[a], it)
		}
		type sent struct {
			retry []settleItem
			wait  bool  // retry after a backoff (not a redirect)
			err   error // the request's error, when it is to be retried
		}
		var reqs [][]settleItem
		var addrs []string
		for _, a := range order {
			for items := byOwner[a]; len(items) > 0; {
				n := min(len(items), maxSettleReceipts)
				reqs, addrs = append(reqs, items[:n]), append(addrs, a)
				items = items[n:]
			}
		}
		answers := make([]sent, len(reqs))
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				retry, wait, err := k.settleAt(ctx, addrs[i], kind, delay, reason, reqs[i], res)
				answers[i] = sent{retry, wait, err}
			}()
		}
		wg.Wait()
		pending = pending[:0:0]
		var lastErr error
		down := false
		for _, a := range answers {
			pending = append(pending, a.retry...)
			down = down || a.wait
			if a.err != nil {
				lastErr = a.err
			}
		}
		if len(pending) == 0 {
			break
		}
		giveUp := round+1 > maxRedirects || ctx.Err() != nil || (down && time.Since(start) >= k.c.cfg.failover)
		if !giveUp {
			switch {
			case down:
				giveUp = !k.c.sleep(ctx, jitter(backoff(failoverBackoff, round, maxFailoverBackoff)))
				if !giveUp {
					k.c.refresh(ctx, nil)
				}
			case round > 0:
				giveUp = !k.c.sleep(ctx, jitter(backoff(redirectBackoff, round-1, maxBackoff)))
			}
		}
		if giveUp {
			for _, it := range pending {
				if res[it.idx].err == nil {
					res[it.idx].err = receiptErrorOf(it.receipt, cmpErr(lastErr, ctx.Err()), "still redirected after %d attempts (the brokers disagree on the partition's owner until their views converge by gossip); nothing was settled: settle it again")
				}
			}
			break
		}
	}
	return res
}

// receiptErrorOf is receipt's error when its request failed with err;
// when err is nil (the receipt was redirected too often), the message is
// notOwnerMsg.
func receiptErrorOf(receipt string, err error, notOwnerMsg string) *ReceiptError {
	if err == nil {
		return &ReceiptError{Receipt: receipt, Code: codes.FailedPrecondition, Message: fmt.Sprintf(notOwnerMsg, maxRedirects)}
	}
	st, ok := status.FromError(err)
	if !ok && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		st = status.FromContextError(err)
	}
	return &ReceiptError{Receipt: receipt, Code: st.Code(), Message: st.Message()}
}

// settleAt sends items to the broker at addr, notes each settled or
// failed receipt in res, and returns the items to send again: redirected,
// or (wait) not delivered or not stored (UNAVAILABLE), with the error
// that says why.
func (k *ShareConsumer) settleAt(ctx context.Context, addr string, kind settleKind, delay time.Duration, reason string, items []settleItem, res []settled) (retry []settleItem, wait bool, err error) {
	req := &stratapb.SettleRequest{Topic: k.topic, Group: k.group, DelayMs: delay.Milliseconds(), Reason: reason}
	for _, it := range items {
		req.Receipts = append(req.Receipts, it.receipt)
	}
	api, err := k.c.stub(addr)
	if err == nil {
		var resp *stratapb.SettleResponse
		resp, err = kind.rpc(api)(ctx, req)
		if err == nil {
			k.c.answered(addr)
			retry, wait, err = k.outcomes(items, resp, res)
			return retry, wait, err
		}
	}
	owner, moved := NotOwner(err)
	switch {
	case moved:
		if owner != "" && len(items) > 0 {
			k.c.learnOwner(k.topic, items[0].part, owner)
		}
		k.c.refreshInBackground()
		return items, false, nil
	case unreachable(err):
		k.c.markDown(addr)
		return items, true, err
	}
	for _, it := range items {
		res[it.idx].err = receiptErrorOf(it.receipt, err, "")
	}
	return nil, false, nil
}

// outcomes notes resp's outcomes of items in res and returns the items to
// send again: redirected to another owner, or (wait) not stored.
func (k *ShareConsumer) outcomes(items []settleItem, resp *stratapb.SettleResponse, res []settled) (retry []settleItem, wait bool, err error) {
	byReceipt := make(map[string]*stratapb.SettleOutcome, len(resp.Outcomes))
	for _, o := range resp.Outcomes {
		byReceipt[o.Receipt] = o
	}
	for i, it := range items {
		var o *stratapb.SettleOutcome
		if i < len(resp.Outcomes) && resp.Outcomes[i].Receipt == it.receipt {
			o = resp.Outcomes[i]
		} else {
			o = byReceipt[it.receipt]
		}
		switch {
		case o == nil:
			res[it.idx].err = &ReceiptError{Receipt: it.receipt, Code: codes.Internal, Message: "the broker answered no outcome for this receipt; its outcome is unknown"}
		case o.Ok:
			res[it.idx] = settled{}
			if o.LeaseUntilMs != 0 {
				res[it.idx].until = time.UnixMilli(o.LeaseUntilMs)
			}
		case o.Reason == notOwnerReason:
			if o.OwnerAddress != "" {
				k.c.learnOwner(k.topic, it.part, o.OwnerAddress)
			}
			k.c.refreshInBackground()
			retry = append(retry, it)
		case codeNamed(o.Code) == codes.Unavailable:
			// Not stored (the owner is taking the partition over, or its
			// store failed): the broker asks for the settle again.
			retry, wait = append(retry, it), true
			err = status.Error(codes.Unavailable, o.Message)
			res[it.idx].err = &ReceiptError{Receipt: it.receipt, Code: codes.Unavailable, Message: o.Message}
		default:
			res[it.idx].err = &ReceiptError{Receipt: it.receipt, Code: codeNamed(o.Code), Message: o.Message}
		}
	}
	return retry, wait, err
}

// codeNamed is the gRPC code of a canonical code name (FAILED_PRECONDITION);
// Unknown for a name it does not know.
func codeNamed(name string) codes.Code {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(strconv.Quote(name))); err != nil {
		return codes.Unknown
	}
	return c
}
