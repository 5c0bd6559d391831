package core

import (
	"strconv"
	"testing"

	"github.com/stratalog/strata/queue"
	"github.com/stratalog/strata/segment"
)

// FuzzDecodeReceipt: a receipt either fails to decode with an error or
// decodes to what encodes back to it. Never a panic.
func FuzzDecodeReceipt(f *testing.F) {
	f.Add(encodeReceipt(3, 0xdeadbeef, queue.Lease{Offset: 42, Count: 2, Token: 7}))
	f.Add("0-")
	f.Add("-1-AAAA")
	f.Add("12")
	f.Add("99999999999-AQ")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := decodeReceipt(s)
		if err != nil {
			return
		}
		if r.p < 0 || r.lease.Offset < 0 || r.lease.Count <= 0 {
			t.Fatalf("accepted a receipt out of range: %+v", r)
		}
		back, err := decodeReceipt(encodeReceipt(r.p, r.tag, r.lease))
		if err != nil || back != r {
			t.Fatalf("round trip of %+v gave %+v, %v", r, back, err)
		}
	})
}

// FuzzDecodeShareConfig: a stored share-group config either fails with an
// error or passes what CreateShareGroup checks, and makes a usable queue
// state. Never a panic.
func FuzzDecodeShareConfig(f *testing.F) {
	f.Add([]byte(`{"topic":"t","group":"g","seed":1}`))
	f.Add([]byte(`{"topic":"t","group":"g","seed":5,"visibility_ms":1000,"max_deliveries":3,"backoff_min_ms":10,"backoff_max_ms":5,"backoff_multiplier":2}`))
	f.Add([]byte(`{"group":"g","seed":1,"visibility_ms":-1}`))
	f.Add([]byte(`{"group":"g","seed":1,"dead_letter_topic":"t"}`))
	f.Add([]byte(`{"group":"g","seed":1,"start_offsets":[-5]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeShareConfig("t", "g", data)
		if err != nil {
			return
		}
		qc := cfg.queueConfig().Defaults()
		if err := qc.Check(); err != nil {
			t.Fatalf("accepted %+v: %v", cfg, err)
		}
		if cfg.DeadLetterTopic == "t" {
			t.Fatal("accepted the topic as its own dead-letter topic")
		}
		st := queue.New(qc, 0)
		_ = st.Offer(queue.Record{Offset: 0}, 1)
		evs := st.Receive(1, 1, 0, func() uint64 { return 1 })
		if len(evs) != 1 {
			t.Fatalf("config %+v hands out nothing", cfg)
		}
		if _, err := st.Settle(queue.Nack, 0, 1, 1, 2, 0, ""); err != nil {
			t.Fatalf("nack under %+v: %v", cfg, err)
		}
	})
}

// FuzzQueueHeaders: a record's delay, deliver-at and priority headers are
// accepted only in range, and a delay becomes a deliver-at.
func FuzzQueueHeaders(f *testing.F) {
	f.Add(HeaderDelay, "1500")
	f.Add(HeaderDelay, "-1")
	f.Add(HeaderDeliverAt, "99999999999999999999")
	f.Add(HeaderPriority, "12")
	f.Add(HeaderPriority, "9")
	f.Fuzz(func(t *testing.T, key, value string) {
		const now = 1_700_000_000_000
		r := segment.Record{Headers: []segment.Header{{Key: key, Value: []byte(value)}}}
		if err := queueHeaders(&r, now); err != nil {
			return
		}
		h := r.Headers[0]
		v, perr := strconv.ParseInt(string(h.Value), 10, 64)
		switch h.Key {
		case HeaderDeliverAt:
			if perr != nil || v < 0 || v > now+queue.MaxDelay.Milliseconds() {
				t.Fatalf("accepted deliver-at %q", h.Value)
			}
		case HeaderPriority:
			if perr != nil || v < 0 || v > queue.MaxPriority {
				t.Fatalf("accepted priority %q", h.Value)
			}
		case HeaderDelay:
			t.Fatal("a delay header was left as it was")
		}
	})
}
