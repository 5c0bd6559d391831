package membership

import (
	"fmt"
	"net"
	"sync"
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
	a, err := Join(Config{Name: "a", ClientAddr: "api-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := Join(Config{Name: "b", ClientAddr: "api-b", Seeds: []string{a.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	c, err := Join(Config{Name: "c", ClientAddr: "api-c", Zone: "z2", Seeds: []string{b.Addr()}})
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
	if m := a.Members(); m[2].ClientAddr != "api-c" || m[2].Zone != "z2" || time.Since(m[2].Since) > time.Minute {
		t.Fatalf("metadata not gossiped: %+v", m[2])
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
	if _, err := Join(Config{Name: "x", ClientAddr: string(make([]byte, 10000))}); err == nil {
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

func TestSettledKeepsNewMembersOutUntilTheySettle(t *testing.T) {
	now := time.Now()
	old := []Member{{Name: "x", Since: now.Add(-time.Hour)}, {Name: "y", Since: now.Add(-time.Hour)}}
	fresh := Member{Name: "z", Since: now.Add(-time.Second)}
	all := append(append([]Member{}, old...), fresh)
	if got := names(Settled(all, now, 5*time.Second)); got != "x,y," {
		t.Fatalf("settled members %s, want the new z kept out", got)
	}
	if got := names(Settled(all, now.Add(5*time.Second), 5*time.Second)); got != "x,y,z," {
		t.Fatalf("after the settle time: %s, want z in", got)
	}
	// A cluster starting together: nobody has settled, all take part.
	young := []Member{{Name: "x", Since: now}, {Name: "y", Since: now}}
	if got := names(Settled(young, now, 5*time.Second)); got != "x,y," {
		t.Fatalf("a young cluster: %s, want all", got)
	}
	// Only keys that move to z move at all when it settles.
	moved := 0
	for p := 0; p < 300; p++ {
		key := fmt.Sprintf("t/%d", p)
		before, _ := Owner(key, Settled(all, now, 5*time.Second))
		after, _ := Owner(key, Settled(all, now.Add(5*time.Second), 5*time.Second))
		if before.Name != after.Name {
			moved++
			if after.Name != "z" {
				t.Fatalf("%s moved from %s to %s, not to the new member", key, before.Name, after.Name)
			}
		}
	}
	if moved < 60 || moved > 140 {
		t.Fatalf("%d of 300 keys moved to the third member, want about a third", moved)
	}
}

func TestRetryJoinWaitsForTheSeed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b, err := Join(Config{Name: "b", Seeds: []string{fmt.Sprintf("127.0.0.1:%d", port)}, RetryJoin: true})
	if err != nil {
		t.Fatalf("a retrying join failed at once: %v", err)
	}
	defer b.Shutdown()
	a, err := Join(Config{Name: "a", BindPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	waitFor(t, "b to join a once a is up", func() bool { return names(a.Members()) == "a,b," })
}

// A member whose seeds name only itself has not joined anything: with
// RetryJoin it keeps trying, and joins once another seed answers.
func TestJoinThroughItselfIsNoJoin(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	selfPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	a, err := Join(Config{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	self := fmt.Sprintf("127.0.0.1:%d", selfPort)
	if _, err := Join(Config{Name: "x", BindPort: selfPort, Seeds: []string{self}}); err == nil {
		t.Fatal("a join that reached only the member itself succeeded")
	}
	b, err := Join(Config{Name: "b", BindPort: selfPort, Seeds: []string{self, a.Addr()}, RetryJoin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	waitFor(t, "b to join a although it lists itself first", func() bool { return names(a.Members()) == "a,b," })
}

// Ownership queries and membership events run concurrently without
// deadlock: memberlist notifies changes with its node lock held, and the
// view cache must never hold its own lock across a memberlist call (the
// old cache did, and a query racing two events hung the member for good).
func TestQueriesDuringChurnDoNotDeadlock(t *testing.T) {
	a, err := Join(Config{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	stop := make(chan struct{})
	var queries sync.WaitGroup
	for range 4 {
		queries.Add(1)
		go func() {
			defer queries.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a.Owner("t/1")
				a.Members()
			}
		}()
	}
	for i := range 4 {
		// A cluster of three of their own joins a's at once: a learns of
		// several members in one merge, one notification each, under
		// memberlist's lock (the case that deadlocked).
		var ms []*Cluster
		for j := range 3 {
			var seeds []string
			if j > 0 {
				seeds = []string{ms[0].Addr()}
			}
			m, err := Join(Config{Name: fmt.Sprintf("m%d-%d", i, j), Seeds: seeds})
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m)
		}
		waitFor(t, "the other cluster to form", func() bool { return len(ms[0].Members()) == 3 })
		if err := ms[0].join([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the joiners to be seen", func() bool { return len(a.Members()) == 4 })
		for _, m := range ms {
			m.Leave(time.Second)
		}
		waitFor(t, "the leavers to be gone", func() bool { return len(a.Members()) == 1 })
	}
	close(stop)
	queries.Wait()
}
