package membership

import (
	"fmt"
	"testing"
	"time"
)

// waitFor polls cond until it holds or 20 s pass (a bound, not a timing
// assertion: gossip converges in well under a second on loopback).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(ms []Member) string {
	s := ""
	for _, m := range ms {
		s += m.Name + ","
	}
	return s
}

func TestThreeBrokersAgreeAndRebalanceOnLeave(t *testing.T) {
	a, err := Join(Config{Name: "a", Meta: []byte("api-a")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := Join(Config{Name: "b", Meta: []byte("api-b"), Seeds: []string{a.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	c, err := Join(Config{Name: "c", Meta: []byte("api-c"), Seeds: []string{b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	all := []*Cluster{a, b, c}
	waitFor(t, "all three to see each other", func() bool {
		for _, x := range all {
			if names(x.Members()) != "a,b,c," {
				return false
			}
		}
		return true
	})
	if m := a.Members(); string(m[2].Meta) != "api-c" {
		t.Fatalf("metadata not gossiped: %q", m[2].Meta)
	}
	// Every broker proposes the same owner for every partition, and the
	// partitions spread over all three.
	owners := map[string]string{}
	count := map[string]int{}
	for p := 0; p < 300; p++ {
		key := fmt.Sprintf("orders/%d", p)
		oa, _ := a.Owner(key)
		ob, _ := b.Owner(key)
		oc, _ := c.Owner(key)
		if oa.Name != ob.Name || ob.Name != oc.Name {
			t.Fatalf("%s: owners disagree: %s %s %s", key, oa.Name, ob.Name, oc.Name)
		}
		owners[key] = oa.Name
		count[oa.Name]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if count[n] < 60 {
			t.Fatalf("unbalanced ownership: %v", count)
		}
	}
	// c leaves: a and b see it, and only c's partitions move.
	if err := c.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c's leave to be seen", func() bool {
		return names(a.Members()) == "a,b," && names(b.Members()) == "a,b,"
	})
	for key, before := range owners {
		after, _ := a.Owner(key)
		if before != "c" && after.Name != before {
			t.Fatalf("%s moved from %s to %s though its owner stayed", key, before, after.Name)
		}
		if before == "c" && after.Name == "c" {
			t.Fatalf("%s still owned by the departed c", key)
		}
	}
	select {
	case <-a.Changes():
	default:
		t.Fatal("no change was signalled")
	}
}

func TestJoinErrors(t *testing.T) {
	if _, err := Join(Config{}); err == nil {
		t.Fatal("a member without a name was accepted")
	}
	if _, err := Join(Config{Name: "x", Meta: make([]byte, 10000)}); err == nil {
		t.Fatal("oversized metadata was accepted")
	}
	if _, err := Join(Config{Name: "y", Seeds: []string{"127.0.0.1:1"}}); err == nil {
		t.Fatal("joining a seed that is not there succeeded")
	}
}

func TestOwnerIsStable(t *testing.T) {
	ms := []Member{{Name: "x"}, {Name: "y"}, {Name: "z"}}
	o1, _ := Owner("t/1", ms)
	o2, _ := Owner("t/1", []Member{ms[2], ms[0], ms[1]})
	if o1.Name != o2.Name {
		t.Fatal("the owner depends on member order")
	}
	if _, ok := Owner("t/1", nil); ok {
		t.Fatal("an owner among no members")
	}
}
