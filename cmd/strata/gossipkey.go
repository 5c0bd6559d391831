package main

// Reloading the gossip key file (--gossip-key-file): on SIGHUP, and when
// its contents change (checked every gossipKeyPoll), the broker installs
// the file's keys with membership's SetKeys. A file that does not parse
// is logged and the keys in use are kept.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratalog/strata/membership"
)

// gossipKeyPoll is how often the key file is reread to see if it changed
// (a variable for tests).
var gossipKeyPoll = 5 * time.Second

// keyIDs are the fingerprints of keys, for logs.
func keyIDs(keys [][]byte) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = membership.KeyID(k)
	}
	return ids
}

// watchGossipKeys reloads path into c until ctx ends; the returned func
// stops it and waits for it.
func watchGossipKeys(ctx context.Context, c *membership.Cluster, path string, log *slog.Logger) (stop func()) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("the gossip key file is readable by other users: chmod 600 it", "file", path, "mode", st.Mode().Perm().String())
	}
	log.Info("gossip encryption on", "file", path, "keys", keyIDs(c.Keys()), "primary", membership.KeyID(c.Keys()[0]))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	last, _ := os.ReadFile(path) // before returning: a change right after is seen
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		t := time.NewTicker(gossipKeyPoll)
		defer t.Stop()
		lastErr := ""
		fail := func(msg string, args ...any) { // logs a failure once, not every poll
			if key := fmt.Sprint(msg, args); key != lastErr {
				lastErr = key
				log.Error(msg, args...)
			}
		}
		for {
			signalled := false
			select {
			case <-ctx.Done():
				return
			case <-hup:
				signalled = true
			case <-t.C:
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				fail("gossip key file unreadable; keeping the keys in use", "file", path, "err", err)
				continue
			}
			if !signalled && bytes.Equal(raw, last) {
				continue
			}
			last = raw
			keys, err := membership.ParseKeys(bytes.NewReader(raw), path)
			if err == nil {
				err = c.SetKeys(keys)
			}
			if err != nil {
				fail("gossip keys not reloaded; keeping the keys in use", "err", err, "keys", keyIDs(c.Keys()))
				continue
			}
			lastErr = ""
			log.Info("gossip keys reloaded", "file", path, "keys", keyIDs(keys), "primary", membership.KeyID(keys[0]))
		}
	}()
	return func() { cancel(); <-done }
}
