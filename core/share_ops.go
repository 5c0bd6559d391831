package core

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/queue"
	"github.com/stratalog/strata/segment"
)

// Receipts. A receipt is "<partition>-<base64url payload>": the partition
// in the clear (a client routes a settle to the partition's owner by it),
// then version, a tag of the group's creation, the offset, the delivery
// count and the lease's random token. The token is what makes a receipt
// unforgeable: a receipt settles only the lease it names.

const receiptVersion = 1

func receiptTag(store string, cfg *ShareGroupConfig) uint32 {
	return crc32.ChecksumIEEE([]byte(store + "\x00" + cfg.tag()))
}

func encodeReceipt(p int32, tag uint32, l queue.Lease) string {
	var b [25]byte
	b[0] = receiptVersion
	binary.BigEndian.PutUint32(b[1:], tag)
	binary.BigEndian.PutUint64(b[5:], uint64(l.Offset))
	binary.BigEndian.PutUint32(b[13:], uint32(l.Count))
	binary.BigEndian.PutUint64(b[17:], l.Token)
	return strconv.Itoa(int(p)) + "-" + base64.RawURLEncoding.EncodeToString(b[:])
}

type receipt struct {
	p     int32
	tag   uint32
	lease queue.Lease
}

func decodeReceipt(s string) (receipt, error) {
	ps, payload, ok := strings.Cut(s, "-")
	p, err := strconv.ParseInt(ps, 10, 32)
	if !ok || err != nil || p < 0 {
		return receipt{}, fmt.Errorf("receipt %q is malformed: it starts with a partition number and a dash; pass receipts exactly as receive returned them", trim(s))
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) != 25 || b[0] != receiptVersion {
		return receipt{}, fmt.Errorf("receipt %q is malformed or of an unknown version; pass receipts exactly as receive returned them", trim(s))
	}
	r := receipt{p: int32(p), tag: binary.BigEndian.Uint32(b[1:])}
	r.lease.Offset = int64(binary.BigEndian.Uint64(b[5:]))
	r.lease.Count = int32(binary.BigEndian.Uint32(b[13:]))
	r.lease.Token = binary.BigEndian.Uint64(b[17:])
	if r.lease.Offset < 0 || r.lease.Count <= 0 {
		return receipt{}, fmt.Errorf("receipt %q is malformed (offset or delivery count out of range)", trim(s))
	}
	return r, nil
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func randomToken() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("core: crypto/rand failed: " + err.Error())
	}
	return binary.BigEndian.Uint64(b[:])
}

// Receive hands out available records of a share group under a lease,
// waiting up to req.Wait for some. The leases are durable (in the state
// log) before the records are returned, so a receipt outlives the broker.
func (b *Broker) Receive(ctx context.Context, req *ReceiveRequest) ([]Delivery, error) {
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	cfg, err := b.shareConfig(ctx, t, req.Group, false)
	if err != nil {
		return nil, err
	}
	switch {
	case req.MaxRecords < 1 || req.MaxRecords > MaxReceiveRecords:
		return nil, errorf(ErrInvalidArgument, "max records %d is out of range: use 1 to %d", req.MaxRecords, MaxReceiveRecords)
	case req.Wait < 0 || req.Wait > MaxReceiveWait:
		return nil, errorf(ErrInvalidArgument, "wait %v is out of range: use 0 to %v", req.Wait, MaxReceiveWait)
	case req.Visibility != 0 && (req.Visibility < queue.MinVisibility || req.Visibility > queue.MaxVisibility):
		return nil, errorf(ErrInvalidArgument, "visibility timeout %v is out of range: use %v to %v (or 0 for the group's)", req.Visibility, queue.MinVisibility, queue.MaxVisibility)
	}
	parts := req.Partitions
	explicit := len(parts) > 0
	if !explicit {
		for p := range t.cfg.Partitions {
			if _, self := b.ownerOf(t.cfg.OwnerKey(p)); self {
				parts = append(parts, p)
			}
		}
	}
	for _, p := range parts {
		if err := t.checkPartition(p); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(req.Wait)
	start := int(t.rr.Add(1))
	for {
		wake := b.shares.waitCh()
		var out []Delivery
		var changed []<-chan struct{}
		next := int64(0)
		for i := range parts {
			if len(out) >= req.MaxRecords {
				break
			}
			p := parts[(start+i)%len(parts)]
			var (
				rt *sharePart
				ds []Delivery
				w  int64
			)
			ran, err := b.onSharePart(ctx, t, cfg, p, func(r *sharePart) (err error) {
				rt = r
				ds, w, err = rt.receive(ctx, req.MaxRecords-len(out), req.Visibility)
				return err
			})
			if !ran {
				if explicit || !errors.Is(err, ErrNotOwner) {
					if len(out) > 0 {
						return out, nil // what is leased is returned
					}
					return nil, err
				}
				continue
			}
			out = append(out, ds...)
			if err != nil {
				if len(out) > 0 {
					return out, nil
				}
				return nil, err
			}
			if w > 0 && (next == 0 || w < next) {
				next = w
			}
			changed = append(changed, rt.data.log.Changed())
		}
		if len(out) > 0 || !time.Now().Before(deadline) {
			return out, nil
		}
		wait := time.Until(deadline)
		if next > 0 {
			wait = min(wait, time.Until(time.UnixMilli(next))+time.Millisecond)
		}
		if err := waitAny(ctx, wake, changed, wait); err != nil {
			return nil, err
		}
	}
}

// onSharePart runs fn on the live state of cfg's group on partition p,
// and again on a new one (twice at most) when the state it got was
// dropped before fn could take its token (errRuntimeDropped: nothing was
// done). ran is false, and err sharePart's error, when the last try found
// no state.
func (b *Broker) onSharePart(ctx context.Context, t *topic, cfg *ShareGroupConfig, p int32, fn func(*sharePart) error) (ran bool, err error) {
	for try := 0; ; try++ {
		rt, err := b.sharePart(ctx, t, cfg, p)
		if err != nil {
			return false, err
		}
		if err := fn(rt); !errors.Is(err, errRuntimeDropped) || try == 2 {
			return true, err
		}
	}
}

// waitAny waits until one of the channels is closed, d passes, or ctx ends.
func waitAny(ctx context.Context, wake <-chan struct{}, chs []<-chan struct{}, d time.Duration) error {
	timer := time.NewTimer(max(d, 0))
	defer timer.Stop()
	any := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	for _, ch := range chs {
		go func() {
			select {
			case <-ch:
				select {
				case any <- struct{}{}:
				case <-stop:
				}
			case <-stop:
			}
		}()
	}
	select {
	case <-wake:
	case <-any:
	case <-timer.C:
	case <-ctx.Done():
		return classify(ctx.Err())
	}
	return nil
}

// receive leases up to max records of the partition and returns them, and
// the next time (ms) something waiting for time may become available.
func (rt *sharePart) receive(ctx context.Context, max int, visibility time.Duration) ([]Delivery, int64, error) {
	if err := rt.lock(ctx); err != nil {
		return nil, 0, err
	}
	now := time.Now().UnixMilli()
	rt.st.Advance(now)
	for i := 0; i < 4; i++ {
		got, err := rt.fill(ctx, -1, now)
		if err != nil {
			rt.unlock()
			return nil, 0, err
		}
		if !got {
			break
		}
	}
	evs := rt.st.Receive(now, max, visibility, randomToken)
	var end int64
	var out []Delivery
	var leases []queue.Lease
	var err error
	if len(evs) > 0 {
		tag := receiptTag(rt.t.store, rt.cfg())
		var gone []queue.Event
		for _, ev := range evs {
			e, _ := rt.st.Entry(ev.Offset)
			rec, rerr := rt.record(ctx, ev.Offset)
			var oor *fetch.OutOfRangeError
			if errors.As(rerr, &oor) {
				// Retention dropped it before the group settled it: it is
				// settled as gone, not handed out.
				g := queue.Event{Kind: queue.KindGone, Offset: ev.Offset, Time: now}
				_ = rt.st.Apply(g)
				gone = append(gone, g)
				continue
			}
			if rerr != nil {
				err = rerr
				break
			}
			l := queue.Lease{Offset: ev.Offset, Count: e.Count, Token: ev.Token, Until: ev.Until}
			leases = append(leases, l)
			out = append(out, Delivery{Partition: rt.p, Record: rec, Receipt: encodeReceipt(rt.p, tag, l), DeliveryCount: e.Count, LeaseUntil: time.UnixMilli(ev.Until)})
		}
		// Log the leases even when a record was unreadable: they are
		// applied, and expire like any lease.
		var aerr error
		end, aerr = rt.appendEvents(ctx, append(evs, gone...))
		if err == nil {
			err = aerr
		}
	}
	next := rt.st.NextWake()
	rt.unlock()
	if err != nil {
		return nil, 0, err
	}
	if len(evs) > 0 {
		if err := rt.durable(ctx, end); err != nil {
			if ctx.Err() != nil && len(leases) > 0 {
				// The caller left before the leases were stored: give the
				// records back once they are, at no cost to their
				// delivery count.
				go rt.releaseLater(end, leases)
			}
			// Not stored: the leases may be lost with this broker, so the
			// records are not handed out (a new owner has them available).
			return nil, 0, classify(err)
		}
	}
	return out, next, nil
}

// releaseLater releases leases whose receive was abandoned, once the
// state log holds them (up to end); if it never does, the runtime is
// rebuilt anyway and they were never stored.
func (rt *sharePart) releaseLater(end int64, leases []queue.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rt.log.log.WaitDurable(ctx, end) != nil || rt.lock(ctx) != nil {
		return
	}
	now := time.Now().UnixMilli()
	var evs []queue.Event
	for _, l := range leases {
		if ev, err := rt.st.Settle(queue.Release, l.Offset, l.Count, l.Token, now, 0, ""); err == nil {
			evs = append(evs, ev)
		}
	}
	_, _ = rt.appendEvents(ctx, evs)
	rt.unlock()
	rt.b.shares.notify()
}

// Settle settles receipts of a share group. Each receipt's result is
// durable (in the state log) when its Err is nil.
func (b *Broker) Settle(ctx context.Context, req *SettleRequest) ([]SettleResult, error) {
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	cfg, err := b.shareConfig(ctx, t, req.Group, false)
	if err != nil {
		return nil, err
	}
	var kind queue.SettleKind
	switch req.Kind {
	case SettleAck:
		kind = queue.Ack
	case SettleNack:
		kind = queue.Nack
	case SettleRelease:
		kind = queue.Release
	case SettleReject:
		kind = queue.Reject
	case SettleExtend:
		kind = queue.Extend
		if req.Delay < queue.MinVisibility || req.Delay > queue.MaxVisibility {
			return nil, errorf(ErrInvalidArgument, "extension %v is out of range: a lease is extended to %v to %v from now", req.Delay, queue.MinVisibility, queue.MaxVisibility)
		}
	default:
		return nil, errorf(ErrInvalidArgument, "unknown settle kind %d: use ack, nack, release, reject or extend", req.Kind)
	}
	switch {
	case len(req.Receipts) == 0 || len(req.Receipts) > MaxSettleReceipts:
		return nil, errorf(ErrInvalidArgument, "%d receipts: a settle takes 1 to %d", len(req.Receipts), MaxSettleReceipts)
	case req.Delay < 0 || req.Delay > queue.MaxDelay:
		return nil, errorf(ErrInvalidArgument, "delay %v is out of range: use 0 to %v", req.Delay, queue.MaxDelay)
	case len(req.Reason) > queue.MaxReasonBytes:
		return nil, errorf(ErrInvalidArgument, "reason is %d bytes, over the %d-byte limit: shorten it", len(req.Reason), queue.MaxReasonBytes)
	}
	tag := receiptTag(t.store, cfg)
	results := make([]SettleResult, len(req.Receipts))
	byPart := map[int32][]int{}
	var order []int32
	for i, s := range req.Receipts {
		results[i].Receipt = s
		r, err := decodeReceipt(s)
		switch {
		case err != nil:
			results[i].Err = errorf(ErrInvalidArgument, "%v", err)
			continue
		case r.tag != tag:
			results[i].Err = errorf(ErrInvalidArgument, "receipt %q is not of share group %q on topic %q (another group's, or of a group deleted and re-created since)", trim(s), cfg.Group, t.cfg.Name)
			continue
		case r.p >= t.cfg.Partitions:
			results[i].Err = errorf(ErrInvalidArgument, "receipt %q names partition %d, but topic %q has %d", trim(s), r.p, t.cfg.Name, t.cfg.Partitions)
			continue
		}
		if _, ok := byPart[r.p]; !ok {
			order = append(order, r.p)
		}
		byPart[r.p] = append(byPart[r.p], i)
	}
	for _, p := range order {
		idx := byPart[p]
		_, err := b.onSharePart(ctx, t, cfg, p, func(rt *sharePart) error {
			return rt.settle(ctx, kind, req, idx, results)
		})
		if err != nil {
			for _, i := range idx {
				results[i].Err = err
			}
		}
	}
	return results, nil
}

// settle settles the receipts results[idx] of this partition. It returns
// an error, and sets no result, only when it could not take the state's
// token (nothing was done).
func (rt *sharePart) settle(ctx context.Context, kind queue.SettleKind, req *SettleRequest, idx []int, results []SettleResult) error {
	if err := rt.lock(ctx); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	var evs []queue.Event
	var ok []int
	for _, i := range idx {
		r, _ := decodeReceipt(req.Receipts[i])
		ev, err := rt.st.Settle(kind, r.lease.Offset, r.lease.Count, r.lease.Token, now, req.Delay, req.Reason)
		if err != nil {
			k := ErrFailedPrecondition
			var re *queue.ReceiptError
			if errors.As(err, &re) && strings.Contains(re.Why, "forged") {
				k = ErrInvalidArgument
			}
			results[i].Err = &Error{Kind: k, Cause: err, Msg: fmt.Sprintf("%s of %s/%d offset %d: %v", kind, rt.t.cfg.Name, rt.p, r.lease.Offset, err)}
			continue
		}
		if kind == queue.Ack {
			rt.forget(r.lease.Offset)
		}
		if kind == queue.Extend {
			results[i].LeaseUntil = time.UnixMilli(ev.Until)
		}
		evs = append(evs, ev)
		ok = append(ok, i)
	}
	end, err := rt.appendEvents(ctx, evs)
	rt.unlock()
	if err == nil && len(evs) > 0 {
		err = rt.durable(ctx, end)
	}
	if err != nil {
		for _, i := range ok {
			results[i].Err = &Error{Kind: ErrUnavailable, Cause: err, Msg: fmt.Sprintf("%s of %s/%d: the settle was not stored (%v); its outcome is unknown until the partition's state is rebuilt: settle the receipt again (a receipt already settled answers so)", kind, rt.t.cfg.Name, rt.p, classify(err))}
		}
		return nil
	}
	if kind == queue.Nack || kind == queue.Release {
		rt.b.shares.notify()
	}
	return nil
}

// DescribeShareGroup describes a share group: its settings and, per
// partition, its state here when this broker holds it, or else as of its
// latest snapshot in the bucket.
func (b *Broker) DescribeShareGroup(ctx context.Context, topicName, group string) (*ShareGroupDescription, error) {
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return nil, err
	}
	cfg, err := b.shareConfig(ctx, t, group, true)
	if err != nil {
		return nil, err
	}
	d := &ShareGroupDescription{Config: *cfg}
	oldest := int64(0)
	for p := range t.cfg.Partitions {
		info := SharePartitionInfo{Partition: p}
		b.shares.mu.Lock()
		rt := b.shares.runtimes[runtimeKey{t.store, group, p}]
		b.shares.mu.Unlock()
		if rt != nil && rt.ready != nil {
			select {
			case <-rt.ready:
				if rt.err == nil && rt.lock(ctx) == nil {
					st := rt.st
					info.Cursor, info.Floor = st.Cursor(), st.Floor()
					fillInfo(&info, st.Counts())
					rt.unlock()
					info.Owner, info.Live = b.self().ID, true
				}
			default:
			}
		}
		if !info.Live {
			probe := &sharePart{b: b, t: t, p: p}
			probe.cfgp.Store(cfg)
			key, _, err := probe.latestSnapshot(ctx, 1<<62)
			if err != nil {
				return nil, err
			}
			if key != "" {
				data, err := probe.getObject(ctx, key, true)
				if err != nil {
					return nil, err
				}
				if s, err := queue.Restore(cfg.queueConfig(), data); err == nil {
					info.Cursor, info.Floor = s.Cursor(), s.Floor()
					fillInfo(&info, s.Counts())
				}
			}
		}
		if !info.OldestUnacked.IsZero() && (oldest == 0 || info.OldestUnacked.UnixMilli() < oldest) {
			oldest = info.OldestUnacked.UnixMilli()
		}
		d.Available += info.Available
		d.InFlight += info.InFlight
		d.Backoff += info.Backoff
		d.Delayed += info.Delayed
		d.KeyBlocked += info.KeyBlocked
		d.DeadLetterPending += info.DeadLetterPending
		d.Acked += info.Acked
		d.DeadLettered += info.DeadLettered
		d.Partitions = append(d.Partitions, info)
	}
	if oldest > 0 {
		d.OldestUnackedAge = time.Since(time.UnixMilli(oldest))
	}
	return d, nil
}

func fillInfo(info *SharePartitionInfo, c queue.Counts) {
	info.Available, info.InFlight, info.Backoff, info.Delayed = c.Available, c.Leased, c.Backoff, c.Delayed
	info.KeyBlocked, info.DeadLetterPending, info.Acked, info.DeadLettered = c.KeyBlocked, c.DeadLetterPending, c.Acked, c.DeadLettered
	if c.OldestUnsettled > 0 {
		info.OldestUnacked = time.UnixMilli(c.OldestUnsettled)
	}
}

// queueHeaders checks a record's delay, deliver-at and priority headers,
// and turns a delay into a deliver-at by the broker's clock (now, ms).
func queueHeaders(r *segment.Record, now int64) error {
	maxMs := queue.MaxDelay.Milliseconds()
	for i := range r.Headers {
		h := &r.Headers[i]
		switch h.Key {
		case HeaderDelay:
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil || v < 0 || v > maxMs {
				return fmt.Errorf("header %s %q is not a delay in milliseconds from 0 to %d (%v)", HeaderDelay, trim(string(h.Value)), maxMs, queue.MaxDelay)
			}
			h.Key, h.Value = HeaderDeliverAt, []byte(strconv.FormatInt(now+v, 10))
		case HeaderDeliverAt:
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil || v < 0 || v > now+maxMs {
				return fmt.Errorf("header %s %q is not a time in milliseconds since the Unix epoch at most %v from now", HeaderDeliverAt, trim(string(h.Value)), queue.MaxDelay)
			}
		case HeaderPriority:
			v, err := strconv.Atoi(string(h.Value))
			if err != nil || v < 0 || v > queue.MaxPriority {
				return fmt.Errorf("header %s %q is out of range: use 0 (lowest, the default) to %d", HeaderPriority, trim(string(h.Value)), queue.MaxPriority)
			}
		}
	}
	return nil
}

func hasQueueHeaders(r *segment.Record) bool {
	for _, h := range r.Headers {
		if h.Key == HeaderDelay || h.Key == HeaderDeliverAt || h.Key == HeaderPriority {
			return true
		}
	}
	return false
}
