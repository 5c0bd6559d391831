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
// else does not fit: no value (a tombstone), not JSON, not valid UTF-8, a
// \u escape of a lone surrogate (not Unicode), not an object, an
// undeclared member, a value of the wrong type, an integer out of range.
// The row of a value that does not fit has every field null, keeps the
// value in _raw and says why in _invalid. Nothing is rounded into range
// or re-spelt to fit; the only conversions are the ones listed here.
//
// Types, and the JSON values each takes:
//
//	bool          true, false
//	int32, int64  an integer written without fraction or exponent, in range
//	float64       any number in the float64 range (parsed to the nearest float64)
//	string        a string
//	timestamp_ms  an integer (milliseconds since the Unix epoch) or an RFC 3339 string
//	              (any offset; truncated to the millisecond); stored as timestamp[ms, UTC]
//	binary        a base64 string (standard alphabet, padded, no line breaks)
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

// ParseSpec decodes and validates a spec (the JSON above). It is strict:
// member names are matched exactly (encoding/json alone would take
// "Fields" or "NAME"), and an unknown or repeated member is refused, so a
// misspelt "fields" is an error, not an empty schema.
func ParseSpec(data []byte) (*Spec, error) {
	const how = `write it as {"fields": [{"name": "...", "type": "..."}, ...]}`
	if err := checkSpecMembers(data); err != nil {
		return nil, fmt.Errorf("%w: %v; %s", ErrInvalidSpec, err, how)
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: %v; %s", ErrInvalidSpec, err, how)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkSpecMembers checks that data is one JSON object whose only member
// is "fields", an array (or null) of objects with members "name" and
// "type" only, each member once, names spelt exactly.
func checkSpecMembers(data []byte) error {
	top := false
	return readObject(data, func(name string, raw json.RawMessage) error {
		switch {
		case name != "fields":
			return fmt.Errorf("unknown member %q", name)
		case top:
			return errors.New(`member "fields" appears twice`)
		}
		top = true
		if string(raw) == "null" {
			return nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return errors.New(`"fields" is not an array`)
		}
		for i, item := range items {
			var seenName, seenType bool
			err := readObject(item, func(name string, _ json.RawMessage) error {
				seen := &seenName
				switch name {
				case "name":
				case "type":
					seen = &seenType
				default:
					return fmt.Errorf("unknown member %q", name)
				}
				if *seen {
					return fmt.Errorf("member %q appears twice", name)
				}
				*seen = true
				return nil
			})
			if err != nil {
				return fmt.Errorf("field %d: %v", i, err)
			}
		}
		return nil
	})
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
	vals    []any  // scratch: the parsed value of each field, nil for null
	seen    []bool // scratch: the fields the value has
}

func newTypedColumns(spec *Spec, rb *array.RecordBuilder, first int) *typedColumns {
	t := &typedColumns{spec: spec, index: make(map[string]int, len(spec.Fields)), vals: make([]any, len(spec.Fields)), seen: make([]bool, len(spec.Fields))}
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
	clear(t.seen)
	if value == nil {
		return errors.New("no value (a tombstone)")
	}
	return readObject(value, func(name string, raw json.RawMessage) error {
		i, ok := t.index[name]
		if !ok {
			return fmt.Errorf("field %q is not in the schema", name)
		}
		if t.seen[i] {
			return fmt.Errorf("field %q appears twice", name)
		}
		t.seen[i] = true
		v, err := convert(t.spec.Fields[i].Type, raw)
		if err != nil {
			return fmt.Errorf("field %q: %v", name, err)
		}
		t.vals[i] = v
		return nil
	})
}

// readObject reads value as one JSON object and calls member with each
// member's name and JSON value, in order, stopping at the first error.
// It refuses, with the reason a row's _invalid carries, what is not
// exactly one well-formed JSON object of valid Unicode: bytes that are not
// UTF-8, and \u escapes of lone UTF-16 surrogates, which encoding/json
// would silently decode as U+FFFD (a different name or string), are
// refused rather than replaced. Duplicate names are for member to catch.
func readObject(value []byte, member func(name string, raw json.RawMessage) error) error {
	if !utf8.Valid(value) {
		return errors.New("not valid UTF-8")
	}
	if loneSurrogate(value) {
		return errors.New("a \\u escape of a lone UTF-16 surrogate: not valid Unicode")
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok { // the decoder refuses a non-string key; never trust it to
			return errors.New("not JSON: an object member without a name")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		if err := member(name, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// loneSurrogate reports whether data (JSON text) holds a \u escape of a
// UTF-16 surrogate that is not half of a high-low pair. Backslashes occur
// only inside JSON strings, so the bytes are scanned as they are.
func loneSurrogate(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped byte: skipped below unless it starts \uXXXX
		if i >= len(data) || data[i] != 'u' {
			continue
		}
		r, ok := hex4(data[i+1:])
		if !ok {
			continue // not JSON: the decoder says so
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low half first
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
				return true
			}
			lo, ok := hex4(data[i+3:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 decodes the four hex digits that start b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
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
		// The decoder skips line breaks and ignores stray padding bits:
		// only the one standard spelling of the bytes fits.
		if base64.StdEncoding.EncodeToString(b) != s {
			return nil, fmt.Errorf("%s is not standard padded base64 (no line breaks, zero padding bits)", brief(raw))
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
