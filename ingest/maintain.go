package ingest

import (
	"context"
	"errors"
	"time"
)

// The background maintenance: rounds of Maintain on a timer owned by the
// Partition. A round runs on the timer's goroutine; when it ends, the
// timer is armed for the next round, at the first moment something is
// due (nextRound): an active file reaching SealInterval, the oldest
// segment reaching RetentionTime, a sweep. In between the partition has
// no goroutine at all, and a partition with nothing due waits up to
// IdleCheckInterval: with thousands of partitions, a goroutine and a 1 s
// ticker each were a good part of the broker's memory and of its CPU.
// An append that closes a file or is the first into the active file, a
// retention floor that moves, or a failed round (retried after
// CheckInterval) bring the next round forward. Close stops the timer and waits for a round in progress
// (whose context it cancels).

// startMaintenance arms the first round. Called once, at the end of the
// open.
func (p *Partition) startMaintenance() {
	p.bgCtx, p.bgCancel = context.WithCancel(context.Background())
	d := p.nextRound(nil)
	p.maint.Lock()
	defer p.maint.Unlock()
	p.maint.running.Add(1)
	p.maint.t = time.AfterFunc(d, p.round)
}

// stopMaintenance stops the rounds: none starts after it returns, and a
// round in progress has ended.
func (p *Partition) stopMaintenance() {
	p.maint.Lock()
	p.maint.stopped = true
	if p.maint.t != nil && p.maint.t.Stop() {
		p.maint.running.Done() // armed, and now never runs
	}
	p.maint.Unlock()
	if p.bgCancel != nil {
		p.bgCancel()
	}
	p.maint.running.Wait()
}

// wake brings the next round forward to now.
func (p *Partition) wake() {
	p.maint.Lock()
	defer p.maint.Unlock()
	if p.maint.stopped || p.maint.t == nil {
		return
	}
	if p.maint.t.Stop() {
		p.maint.t.Reset(0) // still armed: running stays counted
		return
	}
	p.maint.kicked = true // a round is under way: the next runs at once
}

// wakeForFirstAppend wakes the rounds once per active file, when its
// first record came (first: its FirstAppend): the round that runs then
// finds nothing due and arms the next for when the file reaches
// SealInterval.
func (p *Partition) wakeForFirstAppend(first time.Time) {
	p.maint.Lock()
	seen := p.maint.firstAppend.Equal(first)
	p.maint.firstAppend = first
	p.maint.Unlock()
	if !seen {
		p.wake()
	}
}

// round is one background round; it arms the next.
func (p *Partition) round() {
	defer p.maint.running.Done()
	err := p.Maintain(p.bgCtx)
	if err != nil && !errors.Is(err, context.Canceled) {
		p.log.Warn("partition maintenance failed; will retry", "err", err)
	}
	d := p.nextRound(err)
	p.maint.Lock()
	defer p.maint.Unlock()
	if p.maint.stopped {
		return
	}
	if p.maint.kicked {
		p.maint.kicked, d = false, 0
	}
	p.maint.running.Add(1)
	p.maint.t.Reset(d)
}

// nextRound is how long until the next round: CheckInterval after a
// failed round, else until the first thing due, at least CheckInterval
// and at most the longer of CheckInterval and IdleCheckInterval.
func (p *Partition) nextRound(err error) time.Duration {
	if err != nil && !errors.Is(err, context.Canceled) {
		return p.cfg.CheckInterval
	}
	now := p.cfg.Clock()
	next := max(p.cfg.IdleCheckInterval, p.cfg.CheckInterval)
	at := func(t time.Time) { next = min(next, t.Sub(now)) }
	if files := p.local.Files(); len(files) > 0 {
		a := files[len(files)-1]
		if !a.Active {
			return p.cfg.CheckInterval // not reached: the last file is the active one
		}
		if len(files) > 1 {
			if m, _ := p.Manifest(context.Background()); files[len(files)-2].EndOffset > m.NextOffset() {
				return p.cfg.CheckInterval // a closed file is not sealed yet
			}
		}
		if a.Bytes > 0 && !a.FirstAppend.IsZero() {
			at(a.FirstAppend.Add(p.cfg.SealInterval))
		}
	}
	if m, _ := p.Manifest(context.Background()); p.cfg.RetentionTime > 0 && len(m.Segments) > 0 {
		at(time.UnixMilli(m.Segments[0].MaxTimestamp).Add(p.cfg.RetentionTime))
	}
	if p.sealMu.TryLock() {
		at(p.sweepDue)
		p.sealMu.Unlock()
	} else {
		next = p.cfg.CheckInterval // a seal is under way (SealNow, Close): look again soon
	}
	return max(next, p.cfg.CheckInterval)
}
