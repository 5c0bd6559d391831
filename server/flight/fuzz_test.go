package flightserver

import (
	"errors"
	"reflect"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/flight"
)

// Any ticket bytes: decodeTicket never panics, refuses with errBadRequest,
// and what it accepts is in range and encodes to a ticket that decodes to
// the same thing.
func FuzzDecodeTicket(f *testing.F) {
	f.Add([]byte(`{"v":1,"topic":"t","topic_id":"00ff","partition":0,"from":0,"to":10}`))
	f.Add([]byte(`{"v":1,"topic":"t","topic_id":"","partition":3,"from":9,"to":9}`))
	f.Add([]byte(`{"v":1,"topic":"t","partition":-1,"from":0,"to":1}`))
	f.Add([]byte(`{"v":1,"topic":"t","from":5,"to":4}`))
	f.Add([]byte(`{"v":1,"topic":"t","from":0,"to":1e30}`))
	f.Add([]byte(`{"v":1} []`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := decodeTicket(data)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if tk.V != Version || tk.Topic == "" || tk.Partition < 0 || tk.From < 0 || tk.To < tk.From {
			t.Fatalf("accepted %+v", tk)
		}
		again, err := decodeTicket(tk.encode())
		if err != nil || !reflect.DeepEqual(again, tk) {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, tk)
		}
	})
}

// Any CMD bytes: decodeDescriptor never panics, refuses with
// errBadRequest, and what it accepts passes check and re-encodes to a
// command that decodes to the same thing.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"topic":"t","partitions":[0,2],"from_offset":{"0":100},"to_offset":{"0":200}}`))
	f.Add([]byte(`{"topic":"t","from_time":"2026-11-22T10:00:00Z","to_time":1795000000000}`))
	f.Add([]byte(`{"topic":"t","from_time":"1795000000000","to_time":"2026-11-22T10:00:00.123+02:00"}`))
	f.Add([]byte(`{"topic":"t","from_offset":{"-1":3}}`))
	f.Add([]byte(`{"topic":"t","partitions":[1,1]}`))
	f.Add([]byte(`{"topic":"t","from_time":1.5}`))
	f.Add([]byte(`{"topic":"t","from_offset":{"99999999999":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: data})
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if c.V != Version || c.check() != nil {
			t.Fatalf("accepted %+v, which fails check: %v", c, c.check())
		}
		d, err := c.Descriptor()
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeDescriptor(d)
		if err != nil || !reflect.DeepEqual(norm(again), norm(c)) {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, c)
		}
	})
}

// norm makes empty maps and slices nil (JSON omits them).
func norm(c *Command) *Command {
	n := *c
	if len(n.Partitions) == 0 {
		n.Partitions = nil
	}
	if len(n.FromOffset) == 0 {
		n.FromOffset = nil
	}
	if len(n.ToOffset) == 0 {
		n.ToOffset = nil
	}
	return &n
}
