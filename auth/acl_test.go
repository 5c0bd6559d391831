package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

func TestACLValidateRefusesPatternsThatMatchNothing(t *testing.T) {
	ops := []auth.Operation{auth.Produce}
	for _, tc := range []struct {
		name string
		acl  auth.ACL
		says string // "" = valid
	}{
		{"literal topic", auth.ACL{Principal: "alice", Type: auth.Topic, Name: "orders", Operations: ops}, ""},
		{"prefix topic", auth.ACL{Principal: "alice", Type: auth.Topic, Pattern: auth.Prefix, Name: "orders.", Operations: ops}, ""},
		{"every topic", auth.ACL{Principal: "*", Type: auth.Topic, Pattern: auth.Prefix, Name: "", Operations: ops}, ""},
		{"cluster", auth.ACL{Principal: "ops", Type: auth.Cluster, Operations: []auth.Operation{auth.Admin}}, ""},
		{"glob", auth.ACL{Principal: "alice", Type: auth.Topic, Name: "orders*", Operations: ops}, "can match no topic"},
		{"slash", auth.ACL{Principal: "alice", Type: auth.Group, Pattern: auth.Prefix, Name: "a/b", Operations: ops}, "can match no group"},
		{"too long", auth.ACL{Principal: "alice", Type: auth.Topic, Name: strings.Repeat("x", 201), Operations: ops}, "at most 200"},
		{"empty literal", auth.ACL{Principal: "alice", Type: auth.Topic, Operations: ops}, "needs a name"},
		{"unknown type", auth.ACL{Principal: "alice", Type: "table", Name: "t", Operations: ops}, "unknown resource type"},
		{"unknown pattern", auth.ACL{Principal: "alice", Type: auth.Topic, Pattern: "regex", Name: "t", Operations: ops}, "unknown pattern type"},
		{"cluster with a name", auth.ACL{Principal: "alice", Type: auth.Cluster, Name: "x", Operations: ops}, "names no resource"},
		{"no operations", auth.ACL{Principal: "alice", Type: auth.Topic, Name: "t"}, "no operations"},
		{"unknown operation", auth.ACL{Principal: "alice", Type: auth.Topic, Name: "t", Operations: []auth.Operation{"write"}}, "unknown operation"},
		{"bad principal", auth.ACL{Principal: "a,b", Type: auth.Topic, Name: "t", Operations: ops}, "invalid principal"},
		{"empty principal", auth.ACL{Type: auth.Topic, Name: "t", Operations: ops}, "invalid principal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.acl
			err := a.Normalize()
			if tc.says == "" {
				if err != nil {
					t.Fatalf("valid ACL refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, auth.ErrInvalidACL) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want an ErrInvalidACL saying %q", err, tc.says)
			}
		})
	}
}

func TestAllowedImpliesAndMatches(t *testing.T) {
	acls := []auth.ACL{
		{Principal: "alice", Type: auth.Topic, Pattern: auth.Literal, Name: "orders", Operations: []auth.Operation{auth.Produce}},
		{Principal: "bob", Type: auth.Topic, Pattern: auth.Prefix, Name: "logs.", Operations: []auth.Operation{auth.Admin}},
		{Principal: "*", Type: auth.Group, Pattern: auth.Prefix, Name: "shared-", Operations: []auth.Operation{auth.Consume}},
		{Principal: "ops", Type: auth.Cluster, Pattern: auth.Literal, Operations: []auth.Operation{auth.Describe}},
	}
	for _, tc := range []struct {
		who  string
		want auth.Access
		ok   bool
	}{
		{"alice", auth.TopicAccess(auth.Produce, "orders"), true},
		{"alice", auth.TopicAccess(auth.Describe, "orders"), true}, // produce implies describe
		{"alice", auth.TopicAccess(auth.Consume, "orders"), false},
		{"alice", auth.TopicAccess(auth.Admin, "orders"), false},
		{"alice", auth.TopicAccess(auth.Produce, "orders2"), false}, // literal is exact
		{"alice", auth.GroupAccess(auth.Produce, "orders"), false},  // another resource type
		{"bob", auth.TopicAccess(auth.Consume, "logs.app"), true},   // admin implies all
		{"bob", auth.TopicAccess(auth.Admin, "logs."), true},
		{"bob", auth.TopicAccess(auth.Produce, "logs"), false}, // not under the prefix
		{"carol", auth.GroupAccess(auth.Consume, "shared-x"), true},
		{"carol", auth.GroupAccess(auth.Describe, "shared-x"), true},
		{"carol", auth.GroupAccess(auth.Admin, "shared-x"), false},
		{"carol", auth.GroupAccess(auth.Consume, "private"), false},
		{"ops", auth.ClusterAccess(auth.Describe), true},
		{"ops", auth.ClusterAccess(auth.Admin), false},
		{"alice", auth.ClusterAccess(auth.Describe), false},
	} {
		if got := auth.Allowed(acls, tc.who, tc.want); got != tc.ok {
			t.Errorf("%s %s: allowed %v, want %v", tc.who, tc.want, got, tc.ok)
		}
	}
	if auth.Allowed(nil, "alice", auth.TopicAccess(auth.Describe, "orders")) {
		t.Error("no ACLs allowed something: default deny is broken")
	}
}

func TestACLStoreAgreesAcrossBrokersByCAS(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	a, b := auth.NewACLStore(store, auth.ACLStoreConfig{}), auth.NewACLStore(store, auth.ACLStoreConfig{})
	defer a.Close()
	defer b.Close()
	for _, s := range []*auth.ACLStore{a, b} {
		if err := s.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	acl := auth.ACL{Principal: "alice", Type: auth.Topic, Name: "orders", Operations: []auth.Operation{auth.Produce}}
	if changed, err := a.Add(ctx, acl); err != nil || !changed {
		t.Fatalf("add: %v %v", changed, err)
	}
	// b added another ACL without having read a's: CAS makes it merge, not overwrite.
	acl2 := auth.ACL{Principal: "bob", Type: auth.Group, Pattern: auth.Prefix, Name: "g", Operations: []auth.Operation{auth.Consume}}
	if _, err := b.Add(ctx, acl2); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.ACLs(); len(got) != 2 {
		t.Fatalf("a sees %v, want both ACLs", got)
	}
	if !auth.Allowed(a.ACLs(), "bob", auth.GroupAccess(auth.Consume, "g1")) {
		t.Fatal("a does not enforce b's ACL after a refresh")
	}
	// Adding granted operations again changes nothing; adding one more merges.
	if changed, _ := a.Add(ctx, acl); changed {
		t.Fatal("a repeated add reported a change")
	}
	acl.Operations = []auth.Operation{auth.Consume}
	if changed, _ := b.Add(ctx, acl); !changed {
		t.Fatal("adding consume changed nothing")
	}
	got, err := a.List(ctx, "alice")
	if err != nil || len(got) != 1 || len(got[0].Operations) != 2 {
		t.Fatalf("alice's ACLs: %v %v, want one with produce and consume", got, err)
	}
	// Removing every operation deletes the ACL.
	acl.Operations = []auth.Operation{auth.Produce, auth.Consume}
	if changed, err := a.Remove(ctx, acl); err != nil || !changed {
		t.Fatalf("remove: %v %v", changed, err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if auth.Allowed(b.ACLs(), "alice", auth.TopicAccess(auth.Produce, "orders")) {
		t.Fatal("b still allows a removed ACL after a refresh")
	}
	// A corrupted object: Load fails (a broker refuses to start), Refresh
	// keeps the ACLs read last (never fails open into "no ACLs" or closed).
	if _, err := store.Put(ctx, meta.ACLKey, strings.NewReader("{not json"), -1); err != nil {
		t.Fatal(err)
	}
	before := b.ACLs()
	if err := b.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("refresh of a corrupted ACL object: %v", err)
	}
	if len(b.ACLs()) != len(before) {
		t.Fatal("a failed refresh changed the ACLs enforced")
	}
	if err := auth.NewACLStore(store, auth.ACLStoreConfig{}).Load(ctx); err == nil {
		t.Fatal("loading a corrupted ACL object succeeded")
	}
}

func TestACLStoreRefreshLoopStopsAtClose(t *testing.T) {
	s := auth.NewACLStore(tier.NewMemStore(), auth.ACLStoreConfig{RefreshInterval: 1})
	s.Start()
	s.Close()
	s.Close() // idempotent
}
