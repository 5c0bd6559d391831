package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/membership"
)

func b64key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

// A key file that does not parse, or one given without gossip, stops
// serve at start with an error naming the file and line, never the key.
func TestServeGossipKeyFileBadInput(t *testing.T) {
	dir := t.TempDir()
	short := base64.StdEncoding.EncodeToString([]byte("twenty-byte-key-1234"))
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		file  string
		extra []string
		want  string
	}{
		{write("short", b64key(1)+"\n"+short+"\n"), []string{"--gossip-listen", "127.0.0.1:0"}, "short line 2: the key is 20 bytes; want 16, 24 or 32"},
		{write("garbage", "not base64!\n"), []string{"--gossip-listen", "127.0.0.1:0"}, "garbage line 1: not a base64 key"},
		{write("empty", "# nothing\n"), []string{"--gossip-listen", "127.0.0.1:0"}, "has no key"},
		{filepath.Join(dir, "missing"), []string{"--gossip-listen", "127.0.0.1:0"}, "no such file"},
		{write("good", b64key(1)+"\n"), nil, "gossips with no one"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--gossip-key-file", c.file}, c.extra...)
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("serve with key file %s: %v\n%s\nwant an error containing %q", filepath.Base(c.file), err, out, c.want)
		}
		if strings.Contains(string(out), short) || strings.Contains(string(out), b64key(1)) {
			t.Errorf("serve's error shows a key:\n%s", out)
		}
	}
}

// The broker rereads its key file when it changes and on SIGHUP; a file
// that stops parsing leaves the keys in use.
func TestGossipKeyFileReload(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	path := filepath.Join(t.TempDir(), "gossip.keys")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(b64key(1) + "\n")
	c, err := membership.Join(membership.Config{Name: "n", Keys: [][]byte{k1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	primary := func() []byte { return c.Keys()[0] }
	waitKeys := func(what string, want ...[]byte) {
		t.Helper()
		waitUntil(t, what, func() bool {
			got := c.Keys()
			if len(got) != len(want) {
				return false
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					return false
				}
			}
			return true
		})
	}

	defer func(p time.Duration) { gossipKeyPoll = p }(gossipKeyPoll)
	gossipKeyPoll = 20 * time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stop := watchGossipKeys(context.Background(), c, path, log)
	write(b64key(1) + "\n" + b64key(2) + "\n")
	waitKeys("the added key", k1, k2)
	write(b64key(2) + "\n" + b64key(1) + "\n")
	waitKeys("the new primary", k2, k1)
	write("garbage\n")
	time.Sleep(10 * gossipKeyPoll) // several polls of a bad file
	if !bytes.Equal(primary(), k2) || len(c.Keys()) != 2 {
		t.Fatal("a key file that does not parse changed the keys in use")
	}
	stop()

	// SIGHUP: with polling out of the way, the signal alone reloads.
	gossipKeyPoll = time.Hour
	stop = watchGossipKeys(context.Background(), c, path, log)
	defer stop()
	write(b64key(2) + "\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitKeys("the old key removed on SIGHUP", k2)
}

// serve --gossip-key-file encrypts the broker's gossip: a member with
// another key cannot join it, one with the file's key can.
func TestServeGossipEncrypted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.keys")
	if err := os.WriteFile(path, []byte(b64key(3)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gossip := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	serveBin(t, t.TempDir(), "", "STRATA_GOSSIP_LISTEN="+gossip, "STRATA_GOSSIP_KEY_FILE="+path)
	if c, err := membership.Join(membership.Config{Name: "intruder", Keys: [][]byte{bytes.Repeat([]byte{4}, 32)}, Seeds: []string{gossip}}); err == nil {
		c.Shutdown()
		t.Fatal("a member with another key joined the broker's gossip")
	}
	if c, err := membership.Join(membership.Config{Name: "plain", Seeds: []string{gossip}}); err == nil {
		c.Shutdown()
		t.Fatal("a member without encryption joined the broker's gossip")
	}
	c, err := membership.Join(membership.Config{Name: "friend", Keys: [][]byte{bytes.Repeat([]byte{3}, 32)}, Seeds: []string{gossip}})
	if err != nil {
		t.Fatalf("a member with the broker's key: %v", err)
	}
	defer c.Shutdown()
	waitUntil(t, "the broker in the member's view", func() bool { return len(c.Members()) == 2 })
}
