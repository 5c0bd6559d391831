package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Status codes read as words in the CLI's messages.
func TestRPCErrorsReadAsWords(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.OutOfRange:        "out of range: x",
		codes.InvalidArgument:   "invalid argument: x",
		codes.ResourceExhausted: "resource exhausted: x",
		codes.NotFound:          "not found: x",
		codes.Unavailable:       "unavailable: x",
	} {
		if got := rpcErr(status.Error(code, "x")).Error(); got != want {
			t.Errorf("%v: %q, want %q", code, got, want)
		}
	}
}
