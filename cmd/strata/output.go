package main

// Output of the list and describe commands: aligned tables for people by
// default (text/tabwriter), or one JSON document with --output json (-o
// json). JSON of an API message is protoMap's: every field of the
// message, set or not, under its proto name, so fields added to the API
// appear without a change here.

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// outputFlag is the --output (-o) flag of list and describe commands.
func outputFlag(fs *flag.FlagSet) *string {
	o := fs.String("output", "text", "text (aligned tables), or json (one JSON document)")
	fs.StringVar(o, "o", "text", "short for --output")
	return o
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output %q: use text or json", o)
	}
	return nil
}

// printJSON prints v as one indented JSON document.
func printJSON(v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table is an aligned table on w: cells separated by tabs, rows by
// newlines; Flush writes it.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...any) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row adds a row of cells.
func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprintln(t.tw)
}

func (t *table) flush() error { return t.tw.Flush() }

// protoMap is m as a JSON object: every field under its proto name
// (unset ones too, as their zero value), 64-bit integers as numbers,
// enums by name, bytes as a string when UTF-8, else base64.
func protoMap(m proto.Message) map[string]any {
	return messageMap(m.ProtoReflect())
}

func messageMap(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() && !m.Has(fd) {
			continue // an unset member of a oneof
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, 0, l.Len())
			for j := 0; j < l.Len(); j++ {
				items = append(items, scalarJSON(fd, l.Get(j)))
			}
			out[string(fd.Name())] = items
		case fd.IsMap():
			obj := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				obj[k.String()] = scalarJSON(fd.MapValue(), mv)
				return true
			})
			out[string(fd.Name())] = obj
		case fd.HasPresence() && !m.Has(fd) && fd.Kind() != protoreflect.MessageKind:
			out[string(fd.Name())] = nil // optional and absent
		default:
			out[string(fd.Name())] = scalarJSON(fd, v)
		}
	}
	return out
}

func scalarJSON(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !v.Message().IsValid() {
			return nil
		}
		return messageMap(v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return int32(v.Enum())
	case protoreflect.BytesKind:
		if b := v.Bytes(); utf8.Valid(b) {
			return string(b)
		} else {
			return base64.StdEncoding.EncodeToString(b)
		}
	}
	return v.Interface()
}

// retentionText is a retention time for a table: "forever" for 0.
func retentionText(ms int64) string {
	if ms == 0 {
		return "forever"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// orDash is v for a table, "-" when it is zero or empty.
func orDash[T comparable](v T) any {
	var zero T
	if v == zero {
		return "-"
	}
	return v
}

// joinInts is 0,1,2.
func joinInts[T ~int32 | ~int64 | ~int](vs []T) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ",")
}
