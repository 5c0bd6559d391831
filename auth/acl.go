package auth

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Operation is what an ACL allows.
type Operation string

// The operations. Admin implies the others on the same resource; Produce
// and Consume imply Describe.
const (
	Produce  Operation = "produce"
	Consume  Operation = "consume"
	Describe Operation = "describe"
	Admin    Operation = "admin"
)

// Operations lists every operation, in order.
var Operations = []Operation{Produce, Consume, Describe, Admin}

// ParseOperation parses an operation's name.
func ParseOperation(s string) (Operation, error) {
	op := Operation(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Operations, op) {
		return op, nil
	}
	return "", fmt.Errorf("auth: unknown operation %q: use produce, consume, describe or admin", s)
}

// implies reports whether an ACL granting have allows want.
func (have Operation) implies(want Operation) bool {
	switch {
	case have == want, have == Admin:
		return true
	case want == Describe:
		return have == Produce || have == Consume
	}
	return false
}

// ResourceType is the kind of thing an ACL is about.
type ResourceType string

// The resource types. A group is a consumer group or a share group, by
// its name (a share group named g on any topic is the group g).
const (
	Topic   ResourceType = "topic"
	Group   ResourceType = "group"
	Cluster ResourceType = "cluster" // ACL changes, broker stats; it has no name
)

// PatternType says how an ACL's name matches a resource's.
type PatternType string

// The pattern types.
const (
	Literal PatternType = "literal" // the exact name
	Prefix  PatternType = "prefix"  // every name that starts with it
)

// Resource is one thing a request touches.
type Resource struct {
	Type ResourceType
	Name string // "" for the cluster
}

func (r Resource) String() string {
	if r.Type == Cluster {
		return "cluster"
	}
	return string(r.Type) + " " + fmt.Sprintf("%q", r.Name)
}

// Access is one operation on one resource: what a request needs.
type Access struct {
	Op       Operation
	Resource Resource
}

func (a Access) String() string { return string(a.Op) + " on " + a.Resource.String() }

// Wildcard is the principal of an ACL that applies to every authenticated
// principal.
const Wildcard = "*"

// ACL allows Principal (or Wildcard) the Operations on the resources of
// Type whose names match Name per Pattern.
type ACL struct {
	Principal  string       `json:"principal"`
	Type       ResourceType `json:"resource_type"`
	Pattern    PatternType  `json:"pattern_type"`
	Name       string       `json:"name"`
	Operations []Operation  `json:"operations"`
}

// ErrInvalidACL is wrapped by every error of ACL.Validate.
var ErrInvalidACL = errors.New("auth: invalid ACL")

// resourceName is what a topic or group name may hold (the core's rule
// for topics: letters, digits, '.', '_', '-'; at most 200 bytes). A prefix
// obeys it too, and may be empty (every name).
var resourceName = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)

// ValidPrincipal reports whether name can be a principal (of a token, a
// certificate, an ACL or --super-users): 1 to 256 bytes of UTF-8 without
// commas (lists of principals are comma separated) or control
// characters, not starting or ending with a space, and not "*".
func ValidPrincipal(name string) error {
	bad := len(name) == 0 || len(name) > 256 || !utf8.ValidString(name) || name == Wildcard ||
		name[0] == ' ' || name[len(name)-1] == ' ' ||
		strings.ContainsFunc(name, func(r rune) bool { return r == ',' || unicode.IsControl(r) })
	if bad {
		return fmt.Errorf("auth: invalid principal %q: use 1 to 256 characters without commas or control characters, not starting or ending with a space (\"*\" is every principal, in an ACL only)", name)
	}
	return nil
}

// Normalize fills defaults (pattern literal), sorts and deduplicates the
// operations, and validates the ACL.
func (a *ACL) Normalize() error {
	if a.Pattern == "" {
		a.Pattern = Literal
	}
	a.Type = ResourceType(strings.ToLower(string(a.Type)))
	a.Pattern = PatternType(strings.ToLower(string(a.Pattern)))
	ops := make([]Operation, 0, len(a.Operations))
	for _, o := range a.Operations {
		op, err := ParseOperation(string(o))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidACL, err)
		}
		if !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	slices.SortFunc(ops, func(x, y Operation) int { return slices.Index(Operations, x) - slices.Index(Operations, y) })
	a.Operations = ops
	return a.Validate()
}

// Validate reports why the ACL is not valid: an unknown resource type or
// pattern type, a name that no topic or group could have, a cluster ACL
// with a name, no operations, or an invalid principal.
func (a *ACL) Validate() error {
	if a.Principal != Wildcard {
		if err := ValidPrincipal(a.Principal); err != nil {
			return fmt.Errorf("%w: %v (or %q for every principal)", ErrInvalidACL, err, Wildcard)
		}
	}
	switch a.Type {
	case Topic, Group:
	case Cluster:
		if a.Name != "" || a.Pattern != Literal {
			return fmt.Errorf("%w: a cluster ACL names no resource (got pattern %s, name %q)", ErrInvalidACL, a.Pattern, a.Name)
		}
	default:
		return fmt.Errorf("%w: unknown resource type %q: use topic, group or cluster", ErrInvalidACL, a.Type)
	}
	switch a.Pattern {
	case Literal, Prefix:
	default:
		return fmt.Errorf("%w: unknown pattern type %q: use literal (an exact name) or prefix", ErrInvalidACL, a.Pattern)
	}
	if a.Type != Cluster {
		if len(a.Name) > 200 || !resourceName.MatchString(a.Name) {
			return fmt.Errorf("%w: %s name %q can match no %s: names are at most 200 letters, digits, '.', '_' or '-' (a prefix pattern is the start of one; wildcards such as '*' are not patterns, use --prefix)", ErrInvalidACL, a.Pattern, a.Name, a.Type)
		}
		if a.Pattern == Literal && a.Name == "" {
			return fmt.Errorf("%w: a literal %s ACL needs a name (for every %s, use the prefix \"\")", ErrInvalidACL, a.Type, a.Type)
		}
	}
	if len(a.Operations) == 0 {
		return fmt.Errorf("%w: no operations: name one or more of produce, consume, describe, admin", ErrInvalidACL)
	}
	for _, o := range a.Operations {
		if !slices.Contains(Operations, o) {
			return fmt.Errorf("%w: unknown operation %q: use produce, consume, describe or admin", ErrInvalidACL, o)
		}
	}
	return nil
}

// key identifies the ACL's binding regardless of its operations.
func (a *ACL) key() string {
	return a.Principal + "\x00" + string(a.Type) + "\x00" + string(a.Pattern) + "\x00" + a.Name
}

func (a *ACL) matches(r Resource) bool {
	if a.Type != r.Type {
		return false
	}
	switch a.Pattern {
	case Literal:
		return a.Name == r.Name
	case Prefix:
		return strings.HasPrefix(r.Name, a.Name)
	}
	return false
}

func (a ACL) String() string {
	ops := make([]string, len(a.Operations))
	for i, o := range a.Operations {
		ops[i] = string(o)
	}
	res := string(a.Type)
	if a.Type != Cluster {
		res += fmt.Sprintf(" %s %q", a.Pattern, a.Name)
	}
	return fmt.Sprintf("%s may %s on %s", a.Principal, strings.Join(ops, ","), res)
}

// Allowed reports whether the ACLs allow principal the access.
func Allowed(acls []ACL, principal string, want Access) bool {
	for i := range acls {
		a := &acls[i]
		if a.Principal != principal && a.Principal != Wildcard {
			continue
		}
		if !a.matches(want.Resource) {
			continue
		}
		for _, op := range a.Operations {
			if op.implies(want.Op) {
				return true
			}
		}
	}
	return false
}
