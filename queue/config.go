package queue

import (
	"fmt"
	"time"
)

// Limits of the settings a client may choose (checked by Config.Check).
const (
	MinVisibility     = time.Second
	MaxVisibility     = 12 * time.Hour
	DefaultVisibility = 30 * time.Second
	// MaxDelay bounds a record's delay and a nack's explicit delay.
	MaxDelay              = 366 * 24 * time.Hour
	DefaultMaxDeliveries  = 5
	MaxMaxDeliveries      = 1000
	DefaultBackoffMin     = time.Second
	DefaultBackoffMax     = 10 * time.Minute
	DefaultBackoffFactor  = 2.0
	DefaultPriorityAging  = 5 * time.Second
	DefaultWindow         = 10000
	DefaultMemTimers      = 65536
	MaxPriority           = 9
	minMemTimers          = 16
	maxBackoffMultiplier  = 100.0
	maxConfiguredWindow   = 1 << 20
	maxConfiguredMemTimer = 1 << 24
)

// Config is a share group's queue settings for one partition. Zero fields
// take the defaults named above (Defaults).
type Config struct {
	Visibility        time.Duration // lease length when a receive names none
	MaxDeliveries     int32         // deliveries before the dead-letter topic
	BackoffMin        time.Duration // backoff after the first failed delivery
	BackoffMax        time.Duration // backoff cap
	BackoffMultiplier float64       // growth per delivery
	OrderedByKey      bool          // one record per key in flight
	PriorityAging     time.Duration // waiting time that adds one priority level
	Window            int           // records not delayed held at once (read-ahead)
	MemTimers         int           // delayed records held in memory before spilling
	Horizon           time.Duration // spill only records due beyond 2×Horizon; read a run back when due within Horizon
	Seed              uint64        // the group's jitter seed (fixed at creation)
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	if c.Visibility == 0 {
		c.Visibility = DefaultVisibility
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	if c.BackoffMultiplier == 0 {
		c.BackoffMultiplier = DefaultBackoffFactor
	}
	if c.PriorityAging == 0 {
		c.PriorityAging = DefaultPriorityAging
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MemTimers == 0 {
		c.MemTimers = DefaultMemTimers
	}
	if c.Horizon == 0 {
		c.Horizon = SpillHorizon
	}
	return c
}

// Check reports the first setting out of range, saying the allowed range.
// It checks c as given: call it on Defaults() to check a full config.
func (c Config) Check() error {
	switch {
	case c.Visibility != 0 && (c.Visibility < MinVisibility || c.Visibility > MaxVisibility):
		return fmt.Errorf("visibility timeout %v is out of range: use %v to %v", c.Visibility, MinVisibility, MaxVisibility)
	case c.MaxDeliveries < 0 || c.MaxDeliveries > MaxMaxDeliveries:
		return fmt.Errorf("max deliveries %d is out of range: use 1 to %d (0 for the default, %d)", c.MaxDeliveries, MaxMaxDeliveries, DefaultMaxDeliveries)
	case c.BackoffMin < 0 || c.BackoffMin > MaxDelay || c.BackoffMin != 0 && c.BackoffMin < time.Millisecond:
		return fmt.Errorf("minimum backoff %v is out of range: use 0 (the default, %v) or 1ms up to %v", c.BackoffMin, DefaultBackoffMin, MaxDelay)
	case c.BackoffMax < 0 || c.BackoffMax > MaxDelay:
		return fmt.Errorf("maximum backoff %v is out of range: use 0 (the default, %v) up to %v", c.BackoffMax, DefaultBackoffMax, MaxDelay)
	case c.BackoffMax != 0 && c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("maximum backoff %v is below the minimum %v: the maximum caps the growing backoff", c.BackoffMax, c.BackoffMin)
	case c.BackoffMultiplier != 0 && (c.BackoffMultiplier < 1 || c.BackoffMultiplier > maxBackoffMultiplier):
		return fmt.Errorf("backoff multiplier %v is out of range: use 1 to %v (0 for the default, %v)", c.BackoffMultiplier, maxBackoffMultiplier, DefaultBackoffFactor)
	case c.PriorityAging < 0 || c.PriorityAging > time.Hour || c.PriorityAging != 0 && c.PriorityAging < time.Millisecond:
		return fmt.Errorf("priority aging %v is out of range: use 0 (the default, %v) or 1ms up to 1h", c.PriorityAging, DefaultPriorityAging)
	case c.Window < 0 || c.Window > maxConfiguredWindow:
		return fmt.Errorf("window %d is out of range: use 0 (the default, %d) up to %d", c.Window, DefaultWindow, maxConfiguredWindow)
	case c.MemTimers != 0 && (c.MemTimers < minMemTimers || c.MemTimers > maxConfiguredMemTimer):
		return fmt.Errorf("in-memory timers %d is out of range: use 0 (the default, %d) or %d to %d", c.MemTimers, DefaultMemTimers, minMemTimers, maxConfiguredMemTimer)
	}
	return nil
}

// Backoff is how long a record waits after its delivery number count
// failed (was nacked without a delay, or its lease ran out): with
// base = min(BackoffMax, BackoffMin × BackoffMultiplier^(count-1)), the wait
// is BackoffMin + a jitter uniform in [0, base − BackoffMin] ("full
// jitter" above a floor: never a hot redelivery loop, and retries of many
// records spread out). The jitter is a hash of the seed, the offset and
// the count, so the same failure always waits the same time (a rebuilt
// state decides as the original did).
func (c Config) Backoff(offset int64, count int32) time.Duration {
	c = c.Defaults()
	// No delivery count passes MaxMaxDeliveries; a larger one (a corrupt
	// snapshot) must not run the loop below 2^31 times.
	count = min(count, MaxMaxDeliveries)
	base := float64(c.BackoffMin)
	for i := int32(1); i < count && base < float64(c.BackoffMax); i++ {
		base *= c.BackoffMultiplier
	}
	base = min(base, float64(c.BackoffMax))
	span := base - float64(c.BackoffMin)
	if span <= 0 {
		return c.BackoffMin
	}
	u := float64(mix(c.Seed, uint64(offset), uint64(count))>>11) / (1 << 53) // [0, 1)
	return c.BackoffMin + time.Duration(u*span)
}

// mix is a 64-bit hash of three words (splitmix64 finalizer rounds).
func mix(a, b, c uint64) uint64 {
	x := a ^ 0x9e3779b97f4a7c15
	for _, v := range [...]uint64{b, c} {
		x ^= v
		x += 0x9e3779b97f4a7c15
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
		x = (x ^ (x >> 27)) * 0x94d049bb133111eb
		x ^= x >> 31
	}
	return x
}
