package columnar

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// Spec is a topic's value schema: its values are JSON objects whose
// top-level fields are these columns. Stored in the topic config as JSON:
//
//	{"fields": [{"name": "user", "type": "string"}, {"name": "amount", "type": "float64"}]}
//
// A value fits the spec when it is one JSON object, every member of which
// is a declared field (no member twice), each of a value its type takes
// (below) or null. A declared field that is missing is null. Anything
// else (not JSON, not an object, an undeclared member, a value of the
// wrong type, an integer out of range) does not fit: the row keeps the
// value in _raw and says why in _invalid.
//
// Types, and the JSON values each takes:
//
//	bool          true, false
//	int32, int64  an integer written without fraction or exponent, in range
//	float64       any number in the float64 range
//	string        a string
//	timestamp_ms  an integer (milliseconds since the Unix epoch) or an RFC 3339 string; stored as timestamp[ms, UTC]
//	binary        a base64 string (standard alphabet, padded)
//	json          any JSON value, stored as its compact text (utf8)
type Spec struct {
	Fields []Field `json:"fields"`
}

// Field is one declared top-level member of the values.
type Field struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Field types.
const (
	TypeBool        = "bool"
	TypeInt32       = "int32"
	TypeInt64       = "int64"
	TypeFloat64     = "float64"
	TypeString      = "string"
	TypeTimestampMs = "timestamp_ms"
	TypeBinary      = "binary"
	TypeJSON        = "json"
)

var fieldTypes = []string{TypeBool, TypeInt32, TypeInt64, TypeFloat64, TypeString, TypeTimestampMs, TypeBinary, TypeJSON}

// MaxFields bounds the fields of a spec.
const MaxFields = 1024

// MaxFieldName bounds a field name's bytes.
const MaxFieldName = 256

// ErrInvalidSpec is what ParseSpec and Validate wrap.
var ErrInvalidSpec = errors.New("columnar: invalid value schema")

// ParseSpec decodes and validates a spec (the JSON above). Unknown members
// are refused, so a misspelt "fields" is an error, not an empty schema.
func ParseSpec(data []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v; write it as {\"fields\": [{\"name\": \"...\", \"type\": \"...\"}, ...]}", ErrInvalidSpec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the schema object", ErrInvalidSpec)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks names and types: at least one field, at most MaxFields,
// names non-empty valid UTF-8 of at most MaxFieldName bytes, unique, and
// none of the layout's own columns.
func (s *Spec) Validate() error {
	if len(s.Fields) == 0 {
		return fmt.Errorf("%w: no fields; declare at least one, or create the topic without a value schema", ErrInvalidSpec)
	}
	if len(s.Fields) > MaxFields {
		return fmt.Errorf("%w: %d fields, at most %d", ErrInvalidSpec, len(s.Fields), MaxFields)
	}
	seen := make(map[string]bool, len(s.Fields))
	for i, f := range s.Fields {
		switch {
		case f.Name == "":
			return fmt.Errorf("%w: field %d has no name", ErrInvalidSpec, i)
		case len(f.Name) > MaxFieldName || !utf8.ValidString(f.Name):
			return fmt.Errorf("%w: field %d: a name is valid UTF-8 of at most %d bytes", ErrInvalidSpec, i, MaxFieldName)
		case reserved(f.Name):
			return fmt.Errorf("%w: field %q is one of the layout's own columns (partition, offset, timestamp, key, headers, _invalid, _raw); rename it in the values", ErrInvalidSpec, f.Name)
		case seen[f.Name]:
			return fmt.Errorf("%w: field %q is declared twice", ErrInvalidSpec, f.Name)
		case !validType(f.Type):
			return fmt.Errorf("%w: field %q has type %q; the types are %s", ErrInvalidSpec, f.Name, f.Type, strings.Join(fieldTypes, ", "))
		}
		seen[f.Name] = true
	}
	return nil
}

// Marshal is the spec's stored form.
func (s *Spec) Marshal() []byte {
	b, _ := json.Marshal(s)
	return b
}

func reserved(name string) bool {
	switch name {
	case ColPartition, ColOffset, ColTimestamp, ColKey, ColHeaders, ColInvalid, ColRaw:
		return true
	}
	return false
}

func validType(t string) bool {
	for _, x := range fieldTypes {
		if t == x {
			return true
		}
	}
	return false
}

func (f Field) arrowType() arrow.DataType {
	switch f.Type {
	case TypeBool:
		return arrow.FixedWidthTypes.Boolean
	case TypeInt32:
		return arrow.PrimitiveTypes.Int32
	case TypeInt64:
		return arrow.PrimitiveTypes.Int64
	case TypeFloat64:
		return arrow.PrimitiveTypes.Float64
	case TypeTimestampMs:
		return TimestampType
	case TypeBinary:
		return arrow.BinaryTypes.Binary
	default: // string, json
		return arrow.BinaryTypes.String
	}
}

// typedColumns are the builders of a value-schema layout's field columns.
type typedColumns struct {
	spec    *Spec
	index   map[string]int
	cols    []array.Builder
	invalid *array.StringBuilder
	raw     *array.BinaryBuilder
	vals    []any // scratch: the parsed value of each field, nil for null
}

func newTypedColumns(spec *Spec, rb *array.RecordBuilder, first int) *typedColumns {
	t := &typedColumns{spec: spec, index: make(map[string]int, len(spec.Fields)), vals: make([]any, len(spec.Fields))}
	for i, f := range spec.Fields {
		t.index[f.Name] = i
		t.cols = append(t.cols, rb.Field(first+i))
	}
	t.invalid = rb.Field(first + len(spec.Fields)).(*array.StringBuilder)
	t.raw = rb.Field(first + len(spec.Fields) + 1).(*array.BinaryBuilder)
	return t
}

// append adds the field columns of value and reports whether it fit.
func (t *typedColumns) append(value []byte) bool {
	err := t.parse(value)
	if err != nil {
		for _, c := range t.cols {
			c.AppendNull()
		}
		t.invalid.Append(err.Error())
		if value == nil {
			t.raw.AppendNull()
		} else {
			t.raw.Append(value)
		}
		return false
	}
	for i, c := range t.cols {
		v := t.vals[i]
		if v == nil {
			c.AppendNull()
			continue
		}
		switch c := c.(type) {
		case *array.BooleanBuilder:
			c.Append(v.(bool))
		case *array.Int32Builder:
			c.Append(int32(v.(int64)))
		case *array.Int64Builder:
			c.Append(v.(int64))
		case *array.Float64Builder:
			c.Append(v.(float64))
		case *array.TimestampBuilder:
			c.Append(arrow.Timestamp(v.(int64)))
		case *array.BinaryBuilder:
			c.Append(v.([]byte))
		case *array.StringBuilder:
			c.Append(v.(string))
		}
	}
	t.invalid.AppendNull()
	t.raw.AppendNull()
	return true
}

// parse fills t.vals from value, or says why value does not fit.
func (t *typedColumns) parse(value []byte) error {
	clear(t.vals)
	if value == nil {
		return errors.New("no value (a tombstone)")
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make([]bool, len(t.vals))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		name := tok.(string) // inside an object, a key token is a string
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		i, ok := t.index[name]
		if !ok {
			return fmt.Errorf("field %q is not in the schema", name)
		}
		if seen[i] {
			return fmt.Errorf("field %q appears twice", name)
		}
		seen[i] = true
		v, err := convert(t.spec.Fields[i].Type, raw)
		if err != nil {
			return fmt.Errorf("field %q: %v", name, err)
		}
		t.vals[i] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// convert parses one member's JSON value for a field type; nil for null.
func convert(typ string, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	switch typ {
	case TypeJSON:
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		return buf.String(), nil
	case TypeBool:
		switch string(raw) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%s is not a bool", brief(raw))
	case TypeInt32, TypeInt64:
		bits := 64
		if typ == TypeInt32 {
			bits = 32
		}
		n, err := strconv.ParseInt(string(raw), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%s is not an %s", brief(raw), typ)
		}
		return n, nil
	case TypeFloat64:
		if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
			return nil, fmt.Errorf("%s is not a number", brief(raw))
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s is not a float64", brief(raw))
		}
		return f, nil
	case TypeString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%s is not a string", brief(raw))
		}
		return s, nil
	case TypeBinary:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%s is not a base64 string", brief(raw))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not base64: %v", brief(raw), err)
		}
		return b, nil
	case TypeTimestampMs:
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("%s is not a timestamp", brief(raw))
			}
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("%s is not an RFC 3339 time", brief(raw))
			}
			return ts.UnixMilli(), nil
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not milliseconds since the epoch or an RFC 3339 string", brief(raw))
		}
		return n, nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}

// brief quotes at most 40 bytes of a JSON value for an error message.
func brief(raw []byte) string {
	if len(raw) > 40 {
		return strconv.Quote(string(raw[:40])) + "..."
	}
	return strconv.Quote(string(raw))
}
