package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/queue"
)

// Records in and out of the CLI: the JSON form of a record (consume,
// queue receive, dlq list print it; produce --format json reads it) and
// the headers produce sets.

// recordJSON is the JSON object of a record of topic: its fields as
// consume --format json prints them (key null when the record has none,
// timestamp in RFC 3339).
func recordJSON(topic string, r client.Record) map[string]any {
	hs := map[string]string{}
	for k, v := range r.Headers {
		hs[k] = string(v)
	}
	var key any
	if r.Key != nil {
		key = string(r.Key)
	}
	return map[string]any{
		"topic": topic, "partition": r.Partition, "offset": r.Offset,
		"timestamp": time.UnixMilli(r.Timestamp).UTC().Format(time.RFC3339Nano),
		"key":       key, "value": string(r.Value), "headers": hs,
	}
}

// rfc3339ms formats t in UTC with milliseconds, as the dead-letter headers
// are.
func rfc3339ms(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// headerFlags is a repeatable --header NAME=VALUE flag.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ",") }

func (h *headerFlags) Set(s string) error {
	name, _, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	*h = append(*h, s)
	return nil
}

// produceHeaders is the headers produce sets on every record: --header's,
// then the share-group headers of --delay, --deliver-at and --priority,
// each checked against the broker's range so that a bad value stops the
// produce before any record is sent.
func produceHeaders(fs *flag.FlagSet, hs headerFlags, delay time.Duration, deliverAt string, priority int) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, h := range hs {
		name, value, _ := strings.Cut(h, "=")
		out[name] = []byte(value)
	}
	if flagSet(fs, "delay") && deliverAt != "" {
		return nil, errors.New("--delay and --deliver-at both say when to deliver: give one of them")
	}
	if flagSet(fs, "delay") {
		if delay < 0 || delay > queue.MaxDelay {
			return nil, fmt.Errorf("--delay %v is out of range: delay a record by 0 to %v (366 days); nothing was sent", delay, queue.MaxDelay)
		}
		out[core.HeaderDelay] = []byte(strconv.FormatInt(delay.Milliseconds(), 10))
	}
	if deliverAt != "" {
		at, err := time.Parse(time.RFC3339, deliverAt)
		if err != nil {
			return nil, fmt.Errorf("--deliver-at %q: %v (use RFC3339, like 2026-11-22T10:00:00Z); nothing was sent", deliverAt, err)
		}
		if at.Before(time.UnixMilli(0)) || time.Until(at) > queue.MaxDelay {
			return nil, fmt.Errorf("--deliver-at %s is out of range: use a time after 1970 and at most 366 days from now; nothing was sent", deliverAt)
		}
		out[core.HeaderDeliverAt] = []byte(strconv.FormatInt(at.UnixMilli(), 10))
	}
	if flagSet(fs, "priority") {
		if priority < 0 || priority > queue.MaxPriority {
			return nil, fmt.Errorf("--priority %d is out of range: use 0 (lowest, the default) to %d (highest); nothing was sent", priority, queue.MaxPriority)
		}
		out[core.HeaderPriority] = []byte(strconv.Itoa(priority))
	}
	return out, nil
}

// jsonInput is a record as produce --format json reads it.
type jsonInput struct {
	Key     *string           `json:"key"`
	Value   *string           `json:"value"`
	Headers map[string]string `json:"headers"`
}

// parseProduceLine makes the record of one input line: text (the line, or
// key<sep>value) or json (jsonInput), with the headers of extra over the
// line's, and with dedupHeader's value copied into the message id.
func parseProduceLine(line, format, sep string, extra map[string][]byte, dedupHeader string) (client.Record, error) {
	var r client.Record
	switch format {
	case "json":
		var in jsonInput
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return r, fmt.Errorf(`not a JSON record {"key":..,"value":..,"headers":{..}}: %v`, err)
		}
		if dec.More() {
			return r, errors.New(`more than one JSON value on the line: give one record {"key":..,"value":..,"headers":{..}} per line`)
		}
		if in.Value == nil {
			return r, errors.New(`the record has no "value" (use "" for an empty one)`)
		}
		r.Value = []byte(*in.Value)
		if in.Key != nil {
			r.Key = []byte(*in.Key)
		}
		for k, v := range in.Headers {
			if r.Headers == nil {
				r.Headers = map[string][]byte{}
			}
			r.Headers[k] = []byte(v)
		}
	default:
		r.Value = []byte(line)
		if sep != "" {
			if k, v, ok := strings.Cut(line, sep); ok {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
	}
	for k, v := range extra {
		if r.Headers == nil {
			r.Headers = map[string][]byte{}
		}
		r.Headers[k] = v
	}
	if dedupHeader != "" {
		id, ok := r.Headers[dedupHeader]
		if !ok || len(bytes.TrimSpace(id)) == 0 {
			return r, fmt.Errorf("the record has no header %s (--dedup-id-header) to take its message id from: give every record one", dedupHeader)
		}
		r.Headers[core.HeaderMsgID] = id
	}
	return r, nil
}

// splitList splits a comma-separated list, refusing empty items; "" is
// the empty list.
func splitList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, errors.New("an empty name in the list: use NAME1,NAME2")
		}
		out = append(out, f)
	}
	return out, nil
}
