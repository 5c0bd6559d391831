package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
)

// A record's Delay, Priority and MsgID reach the broker as its queue
// headers: the delayed record comes last and not before its time, the
// priority-9 one before the priority-0 ones, and a second record with the
// same message id is not stored.
func TestRecordQueueSettings(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{})
	ctx := context.Background()
	p := c.NewProducer("jobs", client.WithPartition(0))
	start := time.Now()
	for _, r := range []client.Record{
		{Value: []byte("later"), Delay: 1500 * time.Millisecond},
		{Value: []byte("low")},
		{Value: []byte("high"), Priority: 9},
		{Value: []byte("once"), MsgID: "m-1"},
		{Value: []byte("twice"), MsgID: "m-1"},
	} {
		res, err := p.Send(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := res.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(5*time.Second))
	var order []string
	for len(order) < 4 {
		msgs, err := k.Receive(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			order = append(order, string(m.Value))
			if string(m.Value) == "later" && time.Since(start) < 1500*time.Millisecond {
				t.Fatalf("the delayed record came after %v, before its 1.5s", time.Since(start))
			}
			if string(m.Value) == "high" && m.Priority != 9 {
				t.Fatalf("priority read back as %d", m.Priority)
			}
		}
		if err := k.Ack(ctx, receiptsOf(msgs)...); err != nil {
			t.Fatal(err)
		}
	}
	if order[0] != "high" || order[3] != "later" {
		t.Fatalf("received in order %v: want high first (priority 9) and later last (delayed)", order)
	}
	for _, v := range order {
		if v == "twice" {
			t.Fatalf("the record with a message id already stored was stored again: %v", order)
		}
	}
	if msgs, err := k.Receive(ctx, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("after the four: %d more, %v", len(msgs), err)
	}
}
