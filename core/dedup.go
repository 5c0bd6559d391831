package core

// Deduplication by message id (docs/dedup.md). The core only configures
// it: the check runs in ingest, where offsets are assigned (ingest/dedup.go).

import (
	"fmt"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/segment"
)

// HeaderMsgID is the header that carries a record's message id (its
// first header of that name). A record whose id its partition stored
// within the topic's dedup window is acknowledged with the stored copy's
// offset and not stored again. Dedup is per partition: records with one
// id must reach one partition (the same key, or no key: a keyless record
// with a message id is partitioned by the hash of the id).
const HeaderMsgID = "strata-msg-id"

// MaxMsgIDBytes bounds a message id's length.
const MaxMsgIDBytes = ingest.MaxMsgIDBytes

// DefaultDedupWindow is a topic's dedup window when its config sets none.
const DefaultDedupWindow = 2 * time.Minute

// MaxDedupWindowMs bounds dedup_window_ms: 24 hours.
const MaxDedupWindowMs = 24 * 3600 * 1000

// checkDedupWindow checks dedup_window_ms (for checkTopicSizes).
func checkDedupWindow(cfg *TopicConfig) error {
	if cfg.DedupWindowMs < 0 || cfg.DedupWindowMs > MaxDedupWindowMs {
		return fmt.Errorf("dedup_window_ms %d is out of range: use 0 (the default, %v) or 1 to %d (24 hours)", cfg.DedupWindowMs, DefaultDedupWindow, int64(MaxDedupWindowMs))
	}
	return nil
}

// dedupWindow is the topic's dedup window.
func dedupWindow(cfg *TopicConfig) time.Duration {
	if cfg.DedupWindowMs == 0 {
		return DefaultDedupWindow
	}
	return time.Duration(cfg.DedupWindowMs) * time.Millisecond
}

// msgIDOf returns record i's message id, refusing an empty or too long
// one.
func msgIDOf(i int, r *segment.Record) ([]byte, bool, error) {
	id, ok := ingest.MsgID(r, HeaderMsgID)
	if !ok {
		return nil, false, nil
	}
	if err := ingest.CheckMsgID(id); err != nil {
		return nil, false, errorf(ErrInvalidArgument, "record %d has an invalid %s header (%d bytes): use 1 to %d bytes, e.g. a UUID or a hash of the content; nothing was written", i, HeaderMsgID, len(id), MaxMsgIDBytes)
	}
	return id, true, nil
}
