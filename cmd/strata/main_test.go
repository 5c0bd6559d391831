package main

import (
	"context"
	"strings"
	"testing"
)

func TestRunDemo(t *testing.T) {
	if err := run(context.Background(), []string{"demo", "--records", "500", "--partitions", "2", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
}

func TestRunBadInput(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"demo", "--records", "0"},
		{"demo", "--object-store", "ftp://nowhere/x", "--dir", t.TempDir()},
		{"demo", "--object-store", "file://relative", "--dir", t.TempDir()},
	} {
		err := run(context.Background(), args)
		if err == nil {
			t.Errorf("%v: accepted", args)
			continue
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%v: empty error", args)
		}
	}
}
