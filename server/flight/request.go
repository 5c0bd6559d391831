package flightserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"
)

// Version is the version of the command and ticket formats this package
// writes and reads.
const Version = 1

// Bounds of what a client sends, checked before anything is decoded.
const (
	// MaxCommandBytes bounds a CMD descriptor.
	MaxCommandBytes = 64 << 10
	// MaxTicketBytes bounds a ticket (this server's are ~200 bytes).
	MaxTicketBytes = 4 << 10
)

// Command is the JSON of a CMD descriptor: a range of one topic.
//
//	{"v": 1, "topic": "orders", "partitions": [0, 2],
//	 "from_offset": {"0": 100}, "to_offset": {"0": 200},
//	 "from_time": "2026-11-22T10:00:00Z", "to_time": 1795000000000}
//
// Every field but topic is optional. partitions empty means every
// partition. Per partition, the range starts at from_offset[p], else at
// the first record at or after from_time, else at the log start; it ends
// (exclusive) at to_offset[p], else before the first record at or after
// to_time, else at the high watermark when GetFlightInfo answers. A time
// is RFC 3339 text or milliseconds since the Unix epoch. An offset map
// names partitions by their number, as a string (JSON keys are strings).
// Unknown members are refused, so a misspelt field is an error, not an
// ignored one.
type Command struct {
	V          int             `json:"v,omitempty"` // 0 or 1: this format
	Topic      string          `json:"topic"`
	Partitions []int32         `json:"partitions,omitempty"`
	FromOffset map[int32]int64 `json:"from_offset,omitempty"`
	ToOffset   map[int32]int64 `json:"to_offset,omitempty"`
	FromTime   *Millis         `json:"from_time,omitempty"`
	ToTime     *Millis         `json:"to_time,omitempty"`
}

// Millis is a time in milliseconds since the Unix epoch; in JSON a number
// of milliseconds or an RFC 3339 string (written as a number).
type Millis int64

// MillisOf is t in milliseconds.
func MillisOf(t time.Time) *Millis {
	m := Millis(t.UnixMilli())
	return &m
}

// UnmarshalJSON implements json.Unmarshaler.
func (m *Millis) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			*m = Millis(n)
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("time %q is neither RFC 3339 (2026-11-22T10:00:00Z) nor milliseconds since the Unix epoch", s)
		}
		*m = Millis(t.UnixMilli())
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("time %s is neither an RFC 3339 string nor a number of milliseconds since the Unix epoch", b)
	}
	v, err := n.Int64()
	if err != nil {
		return fmt.Errorf("time %s is not a whole number of milliseconds since the Unix epoch", b)
	}
	*m = Millis(v)
	return nil
}

// Descriptor is the CMD descriptor of c.
func (c *Command) Descriptor() (*flight.FlightDescriptor, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: data}, nil
}

// PathDescriptor is the PATH descriptor of a whole topic: every
// partition, from the log start to the high watermark.
func PathDescriptor(topic string) *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{topic}}
}

// errBadRequest marks what decodeDescriptor and decodeTicket refuse.
var errBadRequest = errors.New("flightserver: bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// members and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeDescriptor turns a descriptor into a checked command: a PATH of
// one topic name, or a CMD holding a Command. What it checks needs no
// topic: the partitions and offsets against the topic's are checked by
// GetFlightInfo.
func decodeDescriptor(d *flight.FlightDescriptor) (*Command, error) {
	if d == nil {
		return nil, badRequest("no flight descriptor: send a PATH descriptor [\"<topic>\"] or a CMD descriptor with a JSON range (docs/flight.md)")
	}
	switch d.Type {
	case flight.DescriptorPATH:
		if len(d.Path) != 1 || d.Path[0] == "" {
			return nil, badRequest("a PATH descriptor names one topic, [\"<topic>\"]; got %d elements %q (for a range, send a CMD descriptor: docs/flight.md)", len(d.Path), d.Path)
		}
		return &Command{V: Version, Topic: d.Path[0]}, nil
	case flight.DescriptorCMD:
		return decodeCommand(d.Cmd)
	}
	return nil, badRequest("flight descriptor type %v: send PATH [\"<topic>\"] or CMD with a JSON range (docs/flight.md)", d.Type)
}

// decodeCommand decodes and checks a CMD descriptor's JSON.
func decodeCommand(data []byte) (*Command, error) {
	if len(data) > MaxCommandBytes {
		return nil, badRequest("command of %d bytes is over the %d-byte limit", len(data), MaxCommandBytes)
	}
	var c Command
	if err := decodeStrict(data, &c); err != nil {
		return nil, badRequest("command is not a valid range request: %v; send JSON like {\"topic\":\"t\",\"partitions\":[0],\"from_offset\":{\"0\":100},\"to_offset\":{\"0\":200}} (docs/flight.md)", err)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.V == 0 {
		c.V = Version
	}
	return &c, nil
}

// check is what a command must satisfy whatever the topic.
func (c *Command) check() error {
	switch {
	case c.V != 0 && c.V != Version:
		return badRequest("command version %d is not supported: this server reads version %d", c.V, Version)
	case c.Topic == "":
		return badRequest("command names no topic: set \"topic\"")
	case len(c.FromOffset) > 0 && c.FromTime != nil:
		return badRequest("command sets both from_offset and from_time: use one")
	case len(c.ToOffset) > 0 && c.ToTime != nil:
		return badRequest("command sets both to_offset and to_time: use one")
	case c.FromTime != nil && *c.FromTime < 0, c.ToTime != nil && *c.ToTime < 0:
		return badRequest("command has a time before the Unix epoch: times are milliseconds since 1970-01-01T00:00:00Z")
	case c.FromTime != nil && c.ToTime != nil && *c.ToTime < *c.FromTime:
		return badRequest("to_time %s is before from_time %s: the range would end before it starts", fmtMillis(*c.ToTime), fmtMillis(*c.FromTime))
	}
	seen := map[int32]bool{}
	for _, p := range c.Partitions {
		if p < 0 {
			return badRequest("partition %d: partitions are numbered from 0", p)
		}
		if seen[p] {
			return badRequest("partition %d is named twice in partitions", p)
		}
		seen[p] = true
	}
	for name, m := range map[string]map[int32]int64{"from_offset": c.FromOffset, "to_offset": c.ToOffset} {
		for p, off := range m {
			switch {
			case p < 0:
				return badRequest("%s names partition %d: partitions are numbered from 0", name, p)
			case off < 0:
				return badRequest("%s of partition %d is %d: offsets are not negative", name, p, off)
			case len(c.Partitions) > 0 && !seen[p]:
				return badRequest("%s names partition %d, which is not in partitions %v: add it there or drop it here", name, p, c.Partitions)
			}
		}
	}
	for p, to := range c.ToOffset {
		if from, ok := c.FromOffset[p]; ok && to < from {
			return badRequest("to_offset %d of partition %d is below its from_offset %d: the range is [from, to)", to, p, from)
		}
	}
	return nil
}

func fmtMillis(m Millis) string {
	return time.UnixMilli(int64(m)).UTC().Format(time.RFC3339Nano)
}

// ticket is the JSON of a ticket: one partition's offsets [From, To) of
// the topic with identity TopicID.
type ticket struct {
	V         int    `json:"v"`
	Topic     string `json:"topic"`
	TopicID   string `json:"topic_id"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
}

func (t *ticket) encode() []byte {
	data, _ := json.Marshal(t)
	return data
}

// decodeTicket decodes and checks a ticket.
func decodeTicket(data []byte) (*ticket, error) {
	if len(data) > MaxTicketBytes {
		return nil, badRequest("ticket of %d bytes is over the %d-byte limit: this server's tickets come from GetFlightInfo", len(data), MaxTicketBytes)
	}
	var t ticket
	if err := decodeStrict(data, &t); err != nil {
		return nil, badRequest("ticket is not one of this server's (%v): get tickets from GetFlightInfo", err)
	}
	switch {
	case t.V != Version:
		return nil, badRequest("ticket version %d is not supported: this server reads version %d; get new tickets from GetFlightInfo", t.V, Version)
	case t.Topic == "" || strings.ContainsRune(t.Topic, 0):
		return nil, badRequest("ticket names no topic: get tickets from GetFlightInfo")
	case t.Partition < 0:
		return nil, badRequest("ticket partition %d: partitions are numbered from 0", t.Partition)
	case t.From < 0:
		return nil, badRequest("ticket offset %d: offsets are not negative", t.From)
	case t.To < t.From:
		return nil, badRequest("ticket range [%d, %d) ends before it starts", t.From, t.To)
	case t.To == math.MaxInt64:
		return nil, badRequest("ticket range end %d is past any offset", t.To)
	}
	return &t, nil
}

// partitionsOf is c's partitions in the order named, or 0..n-1 when it
// names none.
func (c *Command) partitionsOf(n int32) []int32 {
	if len(c.Partitions) > 0 {
		return c.Partitions
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}
