package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// Dead-letter headers the broker sets on the records it moves to a
// dead-letter topic (core's HeaderDLQ*): a redriven record loses them.
const (
	dlqHeaderPrefix = "strata-dlq-"
	// HeaderDLQOriginTopic names a dead-lettered record's origin topic.
	HeaderDLQOriginTopic = "strata-dlq-origin-topic"
)

// RedriveOptions says what Redrive moves where.
type RedriveOptions struct {
	// Topic and Group name the share group whose dead letters to redrive.
	Topic, Group string
	// DeadLetterTopic is the topic to read. Default: the group's
	// dead-letter topic (its settings), else Topic+".dlq."+Group.
	DeadLetterTopic string
	// To is the topic every record goes to. Default: each record's origin
	// topic (its strata-dlq-origin-topic header); a record without one
	// stops the redrive with an error.
	To string
	// Rate bounds the records produced per second; 0: no bound.
	Rate float64
	// Max bounds the records redriven by this call; 0: no bound.
	Max int64
	// Progress, when set, is called after each committed batch with the
	// records redriven so far and the total the call expects (the
	// dead-letter topic's records not yet redriven when it started, at
	// most Max).
	Progress func(done, total int64)
}

const (
	// redriveGiveUp ends a redrive after this many empty polls in a row
	// without progress (a partition that never reaches its end offset:
	// truncated, or read by another redrive that stopped).
	redriveGiveUp = 20
	// redriveCloseTimeout bounds closing the redrive's consumer and
	// producers.
	redriveCloseTimeout = 30 * time.Second
)

// Redrive moves the records of a share group's dead-letter topic back to
// their origin topic (or RedriveOptions.To): each record's key, value and
// headers (without the strata-dlq-* ones) are produced with the
// idempotent producer, then the dead-letter topic's offsets are committed
// for the log consumer group "<dead-letter topic>.redrive", after each
// produced batch. So a rerun continues where the last one stopped, and a
// redrive is at-least-once: a crash of the redriving client between a
// produce and its commit redrives those records again on the next run.
// It ends once it has read to the end offsets the dead-letter topic had
// when it started (records dead-lettered meanwhile wait for the next
// run), after Max records, or when ctx ends, and returns the records
// redriven.
func (c *Client) Redrive(ctx context.Context, o RedriveOptions) (int64, error) {
	dlq, err := c.deadLetterTopic(ctx, o)
	if err != nil {
		return 0, err
	}
	group := dlq + ".redrive"
	fail := func(err error) error {
		return fmt.Errorf("client: redrive %s: %w", dlq, err)
	}
	desc, err := c.api.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: dlq})
	if err != nil {
		return 0, fail(err)
	}
	next, goal := map[int32]int64{}, map[int32]int64{}
	for _, p := range desc.Partitions {
		next[p.Partition], goal[p.Partition] = p.LogStartOffset, p.HighWatermark
	}
	if err := c.redriveCommitted(ctx, group, next); err != nil {
		return 0, fail(err)
	}
	var total int64
	for p, g := range goal {
		total += max(0, g-next[p])
	}
	if o.Max > 0 {
		total = min(total, o.Max)
	}
	caughtUp := func() bool {
		for p, g := range goal {
			if next[p] < g {
				return false
			}
		}
		return true
	}
	if total == 0 || caughtUp() {
		return 0, nil
	}
	k, err := c.NewConsumer(ctx, dlq, WithGroup(group, AtLeastOnce))
	if err != nil {
		return 0, fail(err)
	}
	producers := map[string]*Producer{}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redriveCloseTimeout)
		defer cancel()
		for _, p := range producers {
			p.Close(cctx)
		}
		k.Close(cctx)
	}()
	pace := pacer{rate: o.Rate}
	var done int64
	for idle := 0; !caughtUp() && (o.Max <= 0 || done < o.Max); {
		recs, err := k.Poll(ctx)
		if err != nil {
			return done, fail(err)
		}
		if len(recs) == 0 {
			before := fmt.Sprint(next)
			if err := c.redriveCommitted(ctx, group, next); err != nil {
				return done, fail(err)
			}
			if fmt.Sprint(next) == before {
				idle++
			} else {
				idle = 0
			}
			if idle >= redriveGiveUp {
				break
			}
			continue
		}
		idle = 0
		n, err := c.redriveBatch(ctx, k, o, recs, done, &pace, producers, next, goal)
		done += n
		if cerr := k.Commit(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("commit the redriven records (they are produced; a rerun redrives them again): %w", cerr)
		}
		if o.Progress != nil {
			o.Progress(done, total)
		}
		if err != nil {
			return done, fail(err)
		}
	}
	return done, nil
}

// deadLetterTopic is the topic a redrive reads.
func (c *Client) deadLetterTopic(ctx context.Context, o RedriveOptions) (string, error) {
	if o.DeadLetterTopic != "" {
		return o.DeadLetterTopic, nil
	}
	if o.Topic == "" || o.Group == "" {
		return "", status.Error(codes.InvalidArgument, "client: redrive: name the share group (Topic and Group) or its DeadLetterTopic")
	}
	groups, err := c.ListShareGroups(ctx, o.Topic)
	if err != nil && status.Code(err) != codes.NotFound {
		return "", fmt.Errorf("client: redrive share group %s of %s: look up its dead-letter topic: %w", o.Group, o.Topic, err)
	}
	for _, g := range groups {
		if g.Group == o.Group && g.DeadLetterTopic != "" {
			return g.DeadLetterTopic, nil
		}
	}
	return o.Topic + ".dlq." + o.Group, nil
}

// redriveCommitted raises next to the redrive group's committed offsets
// (another run may have moved them).
func (c *Client) redriveCommitted(ctx context.Context, group string, next map[int32]int64) error {
	resp, err := c.api.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: group})
	if status.Code(err) == codes.NotFound {
		return nil // never committed
	}
	if err != nil {
		return err
	}
	for p, off := range resp.Offsets {
		if _, ok := next[p]; ok {
			next[p] = max(next[p], off)
		}
	}
	return nil
}

// redriveBatch produces recs (a Poll's records below goal) to their
// destinations, paced, and waits for every ack. It returns how many were produced;
// the consumer is sought back, in each partition, to the first record
// not produced (not sent: Max reached, ctx ended; or failed), so the
// commit that follows covers exactly the produced prefix of each
// partition. next is raised past the produced records.
func (c *Client) redriveBatch(ctx context.Context, k *Consumer, o RedriveOptions, recs []Record, done int64, pace *pacer, producers map[string]*Producer, next, goal map[int32]int64) (int64, error) {
	type sent struct {
		rec *Record
		res *Result
	}
	var out []sent
	var stopErr error
	var past []*Record // beyond the end offsets of the start: for the next run
	unsent := len(recs)
	for i := range recs {
		r := &recs[i]
		if g, ok := goal[r.Partition]; !ok || r.Offset >= g {
			past = append(past, r)
			continue
		}
		if o.Max > 0 && done+int64(len(out)) >= o.Max {
			unsent = i
			break
		}
		if err := pace.wait(ctx); err != nil {
			unsent, stopErr = i, err
			break
		}
		dest := o.To
		if dest == "" {
			dest = string(r.Headers[HeaderDLQOriginTopic])
		}
		if dest == "" {
			unsent = i
			stopErr = fmt.Errorf("record %d of partition %d has no %s header (it was not dead-lettered by a share group): set RedriveOptions.To", r.Offset, r.Partition, HeaderDLQOriginTopic)
			break
		}
		p := producers[dest]
		if p == nil {
			p = c.NewProducer(dest)
			producers[dest] = p
		}
		var headers map[string][]byte
		for hk, hv := range r.Headers {
			if !strings.HasPrefix(hk, dlqHeaderPrefix) {
				if headers == nil {
					headers = map[string][]byte{}
				}
				headers[hk] = hv
			}
		}
		res, err := p.Send(ctx, Record{Key: r.Key, Value: r.Value, Headers: headers})
		if err != nil {
			unsent, stopErr = i, fmt.Errorf("produce record %d of partition %d to %s: %w", r.Offset, r.Partition, dest, err)
			break
		}
		out = append(out, sent{r, res})
	}
	for _, p := range producers {
		p.Flush(context.WithoutCancel(ctx)) // bounded by the producer's retries
	}
	// The first record of each partition that is not redriven.
	back := map[int32]int64{}
	mark := func(r *Record) {
		if b, ok := back[r.Partition]; !ok || r.Offset < b {
			back[r.Partition] = r.Offset
		}
	}
	var n int64
	for _, s := range out {
		if err := s.res.Wait(context.WithoutCancel(ctx)); err != nil {
			mark(s.rec)
			stopErr = cmpErr(stopErr, fmt.Errorf("produce record %d of partition %d: %w", s.rec.Offset, s.rec.Partition, err))
			continue
		}
		n++
	}
	for i := unsent; i < len(recs); i++ {
		mark(&recs[i])
	}
	for _, r := range past {
		mark(r)
	}
	for _, s := range out {
		if b, ok := back[s.rec.Partition]; !ok || s.rec.Offset < b {
			next[s.rec.Partition] = max(next[s.rec.Partition], s.rec.Offset+1)
		}
	}
	for p, off := range back {
		if err := k.Seek(p, off); err != nil {
			return n, errors.Join(stopErr, err)
		}
	}
	return n, stopErr
}

// pacer spaces events at rate per second (no bursts: a pause is not made
// up for); rate 0 does not wait.
type pacer struct {
	rate float64
	next time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	if p.rate <= 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	if d := time.Until(p.next); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.next = p.next.Add(time.Duration(float64(time.Second) / p.rate))
	return nil
}
