package membership

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func key(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// joinKeyed starts a member with keys, joining seeds (no retry: a refused
// join is an error).
func joinKeyed(t *testing.T, name string, keys [][]byte, seeds ...string) (*Cluster, error) {
	t.Helper()
	c, err := Join(Config{Name: name, ClientAddr: "api-" + name, Keys: keys, Seeds: seeds})
	if err == nil {
		t.Cleanup(func() { c.Shutdown() })
	}
	return c, err
}

// seesInc waits until every member of cs sees member name publish
// incarnation inc: a metadata change that only reaches the others if
// gossip between them decrypts.
func seesInc(t *testing.T, name, inc string, cs ...*Cluster) {
	t.Helper()
	waitFor(t, name+"'s incarnation "+inc+" to reach every member", func() bool {
		for _, c := range cs {
			found := false
			for _, m := range c.Members() {
				found = found || m.Name == name && m.Incarnation == inc
			}
			if !found {
				return false
			}
		}
		return true
	})
}

func TestGossipMismatchedKeysDoNotJoin(t *testing.T) {
	k1, k2 := key(1, 32), key(2, 32)
	a, err := joinKeyed(t, "a", [][]byte{k1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := joinKeyed(t, "b", [][]byte{k2}, a.Addr()); err == nil {
		t.Fatal("a member with another key joined an encrypted cluster")
	}
	if _, err := joinKeyed(t, "c", nil, a.Addr()); err == nil {
		t.Fatal("a member without encryption joined an encrypted cluster")
	}
	// The other way round: an encrypted member cannot join a clear one.
	plain, err := joinKeyed(t, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := joinKeyed(t, "d", [][]byte{k1}, plain.Addr()); err == nil {
		t.Fatal("an encrypted member joined a clear-text cluster")
	}
	if n := len(a.Members()); n != 1 {
		t.Fatalf("the encrypted member sees %d members (%s); want itself only", n, names(a.Members()))
	}
	if n := len(plain.Members()); n != 1 {
		t.Fatalf("the clear member sees %d members (%s); want itself only", n, names(plain.Members()))
	}
}

func TestGossipSharedKeyJoinsAndRotationKeepsThemJoined(t *testing.T) {
	old, next := key(7, 16), key(9, 32)
	a, err := joinKeyed(t, "a", [][]byte{old})
	if err != nil {
		t.Fatal(err)
	}
	b, err := joinKeyed(t, "b", [][]byte{old}, a.Addr())
	if err != nil {
		t.Fatalf("a member with the shared key did not join: %v", err)
	}
	waitFor(t, "both to see each other", func() bool { return names(a.Members()) == "a,b," && names(b.Members()) == "a,b," })

	// The documented rotation, one broker after the other at each step;
	// after every change both directions still gossip (a metadata update
	// of each reaches the other).
	steps := []struct {
		what string
		keys [][]byte
	}{
		{"add the new key", [][]byte{old, next}},
		{"make it primary", [][]byte{next, old}},
		{"remove the old key", [][]byte{next}},
	}
	round := 0
	for _, s := range steps {
		for _, c := range []*Cluster{a, b} {
			if err := c.SetKeys(s.keys); err != nil {
				t.Fatalf("%s on %s: %v", s.what, c.Name(), err)
			}
			round++
			for _, x := range []*Cluster{a, b} {
				inc := s.what + "-" + strings.Repeat("i", round)
				if err := x.SetIncarnation(inc); err != nil {
					t.Fatal(err)
				}
				seesInc(t, x.Name(), inc, a, b)
			}
		}
	}
	if got := a.Keys(); len(got) != 1 || !bytes.Equal(got[0], next) {
		t.Fatalf("a's keys after rotation: %d keys; want the new key only", len(got))
	}
	// The old key is gone: a member that has only it cannot join.
	if _, err := joinKeyed(t, "c", [][]byte{old}, a.Addr()); err == nil {
		t.Fatal("a member with the removed key joined")
	}
	if _, err := joinKeyed(t, "d", [][]byte{next}, b.Addr()); err != nil {
		t.Fatalf("a member with the new key: %v", err)
	}
}

func TestSetKeysRefusals(t *testing.T) {
	plain, err := joinKeyed(t, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.SetKeys([][]byte{key(1, 16)}); err != ErrNotEncrypted {
		t.Fatalf("SetKeys on a clear cluster: %v; want ErrNotEncrypted", err)
	}
	enc, err := joinKeyed(t, "e", [][]byte{key(1, 16)})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][][]byte{nil, {key(2, 15)}, {key(2, 16), key(2, 16)}} {
		if err := enc.SetKeys(bad); err == nil {
			t.Fatalf("SetKeys(%d keys) accepted a bad ring", len(bad))
		}
	}
	if got := enc.Keys(); len(got) != 1 || !bytes.Equal(got[0], key(1, 16)) {
		t.Fatal("a refused SetKeys changed the ring")
	}
	if _, err := Join(Config{Name: "x", Keys: [][]byte{key(3, 20)}}); err == nil || !strings.Contains(err.Error(), "20 bytes") {
		t.Fatalf("Join with a 20-byte key: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	k16, k32 := base64.StdEncoding.EncodeToString(key(1, 16)), base64.RawStdEncoding.EncodeToString(key(2, 32))
	keys, err := ParseKeys(strings.NewReader("# primary first\n"+k32+"\n\n  "+k16+"  \n"), "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !bytes.Equal(keys[0], key(2, 32)) || !bytes.Equal(keys[1], key(1, 16)) {
		t.Fatalf("parsed %d keys in the wrong order or value", len(keys))
	}
	secret := base64.StdEncoding.EncodeToString(key(5, 20))
	for _, c := range []struct{ in, want string }{
		{"", "has no key"},
		{"# only a comment\n", "has no key"},
		{k16 + "\nnot*base64\n", "line 2: not a base64 key"},
		{secret + "\n", "line 1: the key is 20 bytes; want 16, 24 or 32"},
		{k16 + "\n" + k16 + "\n", "line 2: the same key as key 1"},
	} {
		_, err := ParseKeys(strings.NewReader(c.in), "keys.txt")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "keys.txt") {
			t.Errorf("%q: %v; want an error naming the file and %q", c.in, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), k16) {
			t.Errorf("%q: the error shows the key: %v", c.in, err)
		}
	}
}
