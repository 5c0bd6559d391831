package wal

import (
	"context"
	"strings"
	"testing"

	"github.com/stratalog/strata/tier"
)

// DefaultConfig with a store and an incarnation is valid; Validate names
// the first bad field; NewWriter takes a zero field for its default and
// refuses a config Validate refuses.
func TestConfigDefaultsAndValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Store, cfg.Incarnation = tier.NewMemStore(), "a"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		set  func(*Config)
		says string
	}{
		{func(c *Config) { c.Store = nil }, "Store and Incarnation are required"},
		{func(c *Config) { c.FlushBytes = -1 }, "must be positive"},
		{func(c *Config) { c.FlushBytes, c.MaxBufferedBytes = 2<<20, 1<<20 }, "MaxBufferedBytes 1048576 is below FlushBytes 2097152"},
		{func(c *Config) { c.Incarnation = "a/b" }, "wal: "},
	} {
		c := cfg
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v; want %q", err, tc.says)
		}
		if w, err := NewWriter(c); err == nil {
			w.Close(context.Background())
			t.Errorf("NewWriter took a config Validate refuses (%q)", tc.says)
		}
	}
	w, err := NewWriter(Config{Store: tier.NewMemStore(), Incarnation: "a", FlushBytes: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if d := DefaultConfig(); w.cfg.FlushInterval != d.FlushInterval || w.cfg.MaxBufferedBytes != 512<<20 || w.cfg.ProbeInterval != d.ProbeInterval {
		t.Fatalf("zero fields: %+v; want the defaults (MaxBufferedBytes at least FlushBytes)", w.cfg)
	}
}
