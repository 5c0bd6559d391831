package columnar

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrCannotInfer is what Infer wraps when the sample gives no schema:
// no JSON object in it, or a member that cannot be a column.
var ErrCannotInfer = errors.New("columnar: cannot infer a value schema")

// kinds of JSON value Infer tells apart, as bits of a field's mask.
const (
	kindBool      = 1 << iota
	kindInt       // a number that int64 takes
	kindFloat     // a number that float64 takes and int64 does not
	kindString    // a string
	kindOther     // an object, an array, or a number float64 does not take
	kindNullsOnly = 0
)

// Infer returns a value schema for the JSON objects among values (a topic's
// first records): one field per top-level member name, in the order the
// names first appear, typed by every non-null value the samples give it:
//
//	int64    every value is an integer int64 takes (no fraction, no exponent)
//	float64  every value is a number float64 takes, some not int64's
//	string   every value is a string
//	bool     every value is true or false
//	json     objects or arrays, mixed kinds, or only nulls
//
// Every object in values fits the spec returned. Values that are not one
// JSON object of valid Unicode with distinct member names (see Spec) are
// skipped: they would not fit any spec. It fails, wrapping
// ErrCannotInfer, when no value is such an object, when the objects have
// no members, more than MaxFields names, or a name that cannot be a field
// (empty, too long, one of the layout's own columns): a topic like that
// needs a schema declared explicitly.
func Infer(values [][]byte) (*Spec, error) {
	type member struct {
		name string
		kind int
	}
	var (
		fields  []Field
		masks   []int
		index   = map[string]int{}
		inObj   = map[string]bool{} // the names of the object being read
		members []member            // the object being read
		objects int
		first   error // why the first skipped value is not an object
	)
	for vi, v := range values {
		clear(inObj)
		members = members[:0]
		err := readObject(v, func(name string, raw json.RawMessage) error {
			if inObj[name] {
				return fmt.Errorf("member %q appears twice", name)
			}
			inObj[name] = true
			members = append(members, member{name, kindOf(raw)})
			return nil
		})
		if v == nil {
			err = errors.New("no value (a tombstone)")
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("value %d: %v", vi, err)
			}
			continue // skipped: it would not fit any spec
		}
		objects++
		for _, m := range members {
			i, ok := index[m.name]
			if !ok {
				if err := checkInferredName(m.name, vi); err != nil {
					return nil, err
				}
				if len(fields) == MaxFields {
					return nil, fmt.Errorf("%w: the sampled objects have more than %d distinct members; declare a value schema explicitly (--value-schema) with the members to keep as columns (values with others will not fit and are kept in _raw), or keep values opaque (no value format)", ErrCannotInfer, MaxFields)
				}
				i = len(fields)
				index[m.name] = i
				fields = append(fields, Field{Name: m.name})
				masks = append(masks, kindNullsOnly)
			}
			masks[i] |= m.kind
		}
	}
	switch {
	case objects == 0 && len(values) == 0:
		return nil, fmt.Errorf("%w: no values to infer it from; produce some JSON objects first, or declare a value schema explicitly (--value-schema)", ErrCannotInfer)
	case objects == 0:
		return nil, fmt.Errorf("%w: none of the %d sampled values is a JSON object (%v); produce JSON objects, declare a value schema explicitly (--value-schema), or keep values opaque (no value format)", ErrCannotInfer, len(values), first)
	case len(fields) == 0:
		return nil, fmt.Errorf("%w: the %d sampled objects have no members; declare a value schema explicitly (--value-schema)", ErrCannotInfer, objects)
	}
	for i := range fields {
		fields[i].Type = typeOf(masks[i])
	}
	s := &Spec{Fields: fields}
	if err := s.Validate(); err != nil { // checkInferredName keeps this from failing
		return nil, fmt.Errorf("%w: %v", ErrCannotInfer, err)
	}
	return s, nil
}

// checkInferredName says why a member name of value vi cannot be a field.
func checkInferredName(name string, vi int) error {
	var why string
	switch {
	case name == "":
		why = "an empty name"
	case len(name) > MaxFieldName:
		why = fmt.Sprintf("a name over %d bytes", MaxFieldName)
	case reserved(name):
		why = "the name of one of the layout's own columns (partition, offset, timestamp, key, headers, _invalid, _raw)"
	default:
		return nil
	}
	return fmt.Errorf("%w: value %d has a member %s (%s), which cannot be a column; declare a value schema explicitly (--value-schema) without it (values that have it will not fit and are kept in _raw), or rename the member in the values", ErrCannotInfer, vi, brief([]byte(name)), why)
}

// kindOf classifies one member's JSON value by the types that take it:
// the conversions of the typed columns decide, so what Infer calls an
// int64 is exactly what the int64 column takes.
func kindOf(raw json.RawMessage) int {
	switch raw[0] {
	case 'n':
		return kindNullsOnly
	case 't', 'f':
		return kindBool
	case '"':
		return kindString
	case '{', '[':
		return kindOther
	}
	if _, err := convert(TypeInt64, raw); err == nil {
		return kindInt
	}
	if _, err := convert(TypeFloat64, raw); err == nil {
		return kindFloat
	}
	return kindOther
}

// typeOf is the field type of a mask of the kinds seen.
func typeOf(mask int) string {
	switch mask {
	case kindBool:
		return TypeBool
	case kindInt:
		return TypeInt64
	case kindFloat, kindInt | kindFloat:
		return TypeFloat64
	case kindString:
		return TypeString
	}
	return TypeJSON
}
