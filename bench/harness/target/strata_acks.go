package target

import (
	"fmt"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

// strataAcks maps the harness's ack mode to producer options and the
// broker's --fsync policy. The broker fsyncs before a local ack whatever
// its --fsync policy; the policy (interval: every 50 ms) only covers
// records acknowledged otherwise.
func strataAcks(mode string) ([]client.ProducerOption, string, error) {
	switch mode {
	case "local":
		return []client.ProducerOption{client.WithAcks(stratapb.Acks_ACKS_LOCAL)}, "interval", nil
	case "none":
		return []client.ProducerOption{client.WithAcks(stratapb.Acks_ACKS_NONE)}, "interval", nil
	case "durable":
		return []client.ProducerOption{client.WithAcks(stratapb.Acks_ACKS_DURABLE)}, "interval", nil
	}
	return nil, "", fmt.Errorf("strata: unknown ack mode %q (none, local, durable)", mode)
}

func strataDurability(mode string) string {
	switch mode {
	case "local":
		return "ACKS_LOCAL: acked after the broker's local log is fsynced (fsync before ack); the object-store WAL follows within --wal-flush-interval"
	case "none":
		return "ACKS_NONE: acked on receipt (records have offsets; local fsync every 50 ms, WAL upload within --wal-flush-interval)"
	case "durable":
		return "ACKS_DURABLE: acked after the records are in the object store (group-committed WAL object)"
	}
	return mode
}
