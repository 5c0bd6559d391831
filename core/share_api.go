package core

import (
	"time"

	"github.com/stratalog/strata/segment"
)

// Share groups (queue semantics) on a topic: the types of the API in
// share.go. See docs/queues.md for the semantics a user is promised.

// Well-known record headers. A producer sets the delay, priority and
// message-id headers; the broker sets the dead-letter headers on the
// records it moves to a dead-letter topic.
const (
	// HeaderDelay: deliver no earlier than this many milliseconds after the
	// broker receives the record (decimal). The broker turns it into
	// HeaderDeliverAt by its own clock.
	HeaderDelay = "strata-delay-ms"
	// HeaderDeliverAt: deliver no earlier than this time, milliseconds
	// since the Unix epoch (decimal).
	HeaderDeliverAt = "strata-deliver-at"
	// HeaderPriority: 0 (the default, lowest) to 9 (decimal).
	HeaderPriority = "strata-priority"

	HeaderDLQOriginTopic     = "strata-dlq-origin-topic"
	HeaderDLQOriginPartition = "strata-dlq-origin-partition"
	HeaderDLQOriginOffset    = "strata-dlq-origin-offset"
	HeaderDLQOriginTime      = "strata-dlq-origin-timestamp" // RFC 3339, ms
	HeaderDLQGroup           = "strata-dlq-group"
	HeaderDLQDeliveryCount   = "strata-dlq-delivery-count"
	HeaderDLQFirstDelivery   = "strata-dlq-first-delivery" // RFC 3339, ms
	HeaderDLQLastDelivery    = "strata-dlq-last-delivery"  // RFC 3339, ms
	HeaderDLQReason          = "strata-dlq-reason"         // the last nack or reject reason
	HeaderDLQOriginMsgID     = "strata-dlq-origin-msg-id"  // the record's strata-msg-id, if it had one
)

// ShareGroupConfig is a share group's settings, as a client sets them and
// as the bucket stores them (field names are the stored format). Zero
// fields take the defaults of package queue.
type ShareGroupConfig struct {
	Topic             string  `json:"topic"`
	Group             string  `json:"group"`
	VisibilityMs      int64   `json:"visibility_ms,omitempty"`       // default 30 s; 1 s to 12 h
	MaxDeliveries     int32   `json:"max_deliveries,omitempty"`      // default 5
	BackoffMinMs      int64   `json:"backoff_min_ms,omitempty"`      // default 1 s
	BackoffMaxMs      int64   `json:"backoff_max_ms,omitempty"`      // default 10 min
	BackoffMultiplier float64 `json:"backoff_multiplier,omitempty"`  // default 2
	DeadLetterTopic   string  `json:"dead_letter_topic,omitempty"`   // default <topic>.dlq.<group>
	OrderedByKey      bool    `json:"ordered_by_key,omitempty"`      // one record per key in flight
	PriorityAgingMs   int64   `json:"priority_aging_ms,omitempty"`   // default 5 s
	Seed              uint64  `json:"seed,omitempty"`                // jitter seed, set at creation
	StartFromEarliest bool    `json:"start_from_earliest,omitempty"` // a new group starts at the log start (default: at the end)
	// StartOffsets is where the group starts on each partition: the high
	// watermarks at creation (set by the broker; unused with
	// StartFromEarliest).
	StartOffsets []int64 `json:"start_offsets,omitempty"`
}

// ReceiveRequest asks for available records of a share group.
type ReceiveRequest struct {
	Topic, Group string
	// Partitions to receive from; empty: every partition of the topic
	// this broker owns (in a cluster, a client asks every owner).
	Partitions []int32
	MaxRecords int           // 1 to MaxReceiveRecords
	Wait       time.Duration // long poll, at most MaxReceiveWait; 0: answer at once
	Visibility time.Duration // lease; 0: the group's
}

// Limits of a receive.
const (
	MaxReceiveRecords = 1000
	MaxReceiveWait    = 20 * time.Second
)

// Delivery is one record handed out under a lease.
type Delivery struct {
	Partition     int32
	Record        segment.Record
	Receipt       string // settles this delivery (Settle)
	DeliveryCount int32  // 1 on the first delivery
	LeaseUntil    time.Time
}

// SettleKind is how receipts settle.
type SettleKind int32

const (
	SettleAck     SettleKind = 1 // done
	SettleNack    SettleKind = 2 // failed: back after backoff (or Delay), count +1 counted
	SettleRelease SettleKind = 3 // back now, no penalty
	SettleReject  SettleKind = 4 // to the dead-letter topic now
	SettleExtend  SettleKind = 5 // the lease now ends Delay from now
)

// MaxSettleReceipts bounds the receipts of one settle request.
const MaxSettleReceipts = 1000

// SettleRequest settles receipts of one share group.
type SettleRequest struct {
	Topic, Group string
	Kind         SettleKind
	Receipts     []string
	Delay        time.Duration // Nack: explicit delay (0: backoff); Extend: new lease length from now
	Reason       string        // Nack, Reject: kept as the record's last reason
}

// SettleResult is the outcome of one receipt: Err nil means settled (and
// durable, like a durable produce ack).
type SettleResult struct {
	Receipt    string
	Err        error
	LeaseUntil time.Time // Extend: the new lease end
}

// SharePartitionInfo is a share group's state on one partition.
type SharePartitionInfo struct {
	Partition                                                            int32
	Cursor                                                               int64 // next offset the group reads
	Floor                                                                int64 // every record below is settled
	Available, InFlight, Backoff, Delayed, KeyBlocked, DeadLetterPending int64
	Acked, DeadLettered                                                  int64 // since the group was created
	OldestUnacked                                                        time.Time
	Owner                                                                string // the broker that holds it ("" when read from the bucket)
	// Live: the state is held by this broker (current), not read from
	// the latest snapshot in the bucket. (Owner alone does not tell: a
	// broker without a node id has Owner "".)
	Live bool
}

// ShareGroupDescription describes a share group.
type ShareGroupDescription struct {
	Config                                                               ShareGroupConfig
	Available, InFlight, Backoff, Delayed, KeyBlocked, DeadLetterPending int64
	Acked, DeadLettered                                                  int64
	OldestUnackedAge                                                     time.Duration
	Partitions                                                           []SharePartitionInfo
}
