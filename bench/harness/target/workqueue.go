package target

import (
	"context"
	"time"
)

// Queuer is a target with queue semantics: competing workers receive any
// available record and ack each one, the server forgetting (or marking
// settled) what was acked. strata: a share group; NATS: a JetStream
// work-queue stream with one durable pull consumer; Redis: a stream with
// a consumer group (XREADGROUP, XACK); RabbitMQ: quorum and classic
// durable queues. The queue workload runs once per kind.
type Queuer interface {
	// QueueKinds are the queues the target offers (RabbitMQ: quorum and
	// classic); most offer one.
	QueueKinds() []QueueKind
	// CreateQueue creates an empty queue of kind (a QueueKinds name) with
	// its consumer group, for up to workers workers each receiving
	// batches of up to batch records. partitions is strata's topic
	// partition count; the peers' queues are one queue (a stream, a key)
	// and ignore it.
	CreateQueue(ctx context.Context, kind, name string, partitions, workers, batch int) (Queue, error)
}

// QueueKind is one kind of queue and what its acks mean.
type QueueKind struct {
	Name       string `json:"name"`       // label in tables: strata-share, nats-js-sync, rabbitmq-quorum, ...
	Target     string `json:"target"`     // the target that runs it
	Durability string `json:"durability"` // what a produce confirm and a consumer ack mean, in words
	// Comparable: every stored record and every ack is on stable storage
	// (fsynced, or in the object store) before the server confirms it, as
	// strata's are; the queue goal compares strata with these.
	Comparable bool `json:"comparable"`
	// AckConfirmed: the ack call returns once the server has applied the
	// ack (false: the protocol has no reply to an ack, so the call returns
	// once it is sent, and receive-to-ack latency is the client's).
	AckConfirmed bool `json:"ack_confirmed"`
	// Prefetch: the server pushes records ahead of the receive call (a
	// window of one batch per worker); false: a receive asks for them.
	Prefetch bool `json:"prefetch"`
}

// Queue is one queue on a running target.
type Queue interface {
	// NewProducer sends records to the queue; a record's cb runs once the
	// server confirmed it as the kind's durability says.
	NewProducer(ctx context.Context, o ProducerOptions) (Producer, error)
	// NewWorker is one competing consumer with its own connection.
	NewWorker(ctx context.Context, o WorkerOptions) (Worker, error)
	// Unacked is how many records the server holds that were not acked
	// (delivered or not). Call it after every worker is closed.
	Unacked(ctx context.Context) (int64, error)
}

// WorkerOptions are a worker's knobs.
type WorkerOptions struct {
	Batch int           // most records one Receive returns
	Wait  time.Duration // how long a Receive waits when none is available
}

// Worker receives and acks records of one queue. One goroutine at a time.
type Worker interface {
	// Receive returns up to Batch records, waiting up to Wait for the
	// first; none and no error when none came.
	Receive(ctx context.Context) ([]QueueMsg, error)
	// Ack acknowledges msgs (from this worker's receives) in one call
	// where the protocol allows, and returns when the server confirmed
	// (see QueueKind.AckConfirmed).
	Ack(ctx context.Context, msgs []QueueMsg) error
	Close() error
}

// QueueMsg is a received record.
type QueueMsg struct {
	Value []byte
	ref   any // the target's handle: receipt, message, stream id, delivery tag
}
