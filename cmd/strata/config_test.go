package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFlags is a command's flag set as the commands build them, with
// flags named as the auth helper's TLS and token flags are.
func testFlags(name string) (*flag.FlagSet, map[string]*string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	v := map[string]*string{}
	for _, n := range []string{"broker", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "token", "join"} {
		v[n] = fs.String(n, "default-"+n, "")
	}
	v["output"] = outputFlag(fs)
	return fs, v
}

// withConfig points STRATA_CONFIG at a file holding body and clears the
// environment variables of testFlags's flags.
func withConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRATA_CONFIG", path)
	for _, n := range []string{"BROKER", "TLS_CA", "TLS_CERT", "TLS_KEY", "TLS_SERVER_NAME", "TOKEN", "JOIN", "OUTPUT", "HEADER", "MAX"} {
		os.Unsetenv("STRATA_" + n)
	}
	return path
}

func TestFlagsOverEnvOverFile(t *testing.T) {
	withConfig(t, `
broker: file-broker:7420
tls-ca: /file/ca.pem
tls-cert: /file/cert.pem
tls-server-name: file-name
token: file-token
join: [a:1, b:2]
output: json
topic:
  output: text
  list:
    tls-ca: /file/topic-list-ca.pem
`)
	t.Setenv("STRATA_TLS_CERT", "/env/cert.pem")
	t.Setenv("STRATA_TOKEN", "env-token")
	fs, v := testFlags("topic list")
	if _, err := parseArgs(fs, []string{"--token", "flag-token", "x"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"token":           "flag-token",              // the flag over the environment and the file
		"tls-cert":        "/env/cert.pem",           // the environment over the file
		"broker":          "file-broker:7420",        // the file's top level
		"tls-ca":          "/file/topic-list-ca.pem", // the topic list section over the top level
		"output":          "text",                    // the topic section over the top level
		"tls-server-name": "file-name",
		"join":            "a:1,b:2", // a list, joined
		"tls-key":         "default-tls-key",
	} {
		if got := *v[name]; got != want {
			t.Errorf("--%s = %q; want %q", name, got, want)
		}
	}

	// Another command reads the top level, not topic's sections.
	fs, v = testFlags("group list")
	if _, err := parseArgs(fs, nil); err != nil {
		t.Fatal(err)
	}
	if *v["output"] != "json" || *v["tls-ca"] != "/file/ca.pem" {
		t.Errorf("group list: output %q tls-ca %q; want the top level's json and /file/ca.pem", *v["output"], *v["tls-ca"])
	}
	// -o given counts for --output: the file does not override it.
	fs, v = testFlags("group list")
	if _, err := parseArgs(fs, []string{"-o", "text"}); err != nil {
		t.Fatal(err)
	}
	if *v["output"] != "text" {
		t.Errorf("-o text with output: json in the file: %q", *v["output"])
	}
}

// serve reads its own section and the environment, never the top level
// meant for a person's client commands.
func TestServeReadsOnlyItsSection(t *testing.T) {
	withConfig(t, "tls-cert: /client/cert.pem\nserve:\n  tls-key: /server/key.pem\n")
	fs, v := testFlags("serve")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := flagDefaults(fs); err != nil {
		t.Fatal(err)
	}
	if *v["tls-cert"] != "default-tls-cert" || *v["tls-key"] != "/server/key.pem" {
		t.Fatalf("serve: tls-cert %q tls-key %q", *v["tls-cert"], *v["tls-key"])
	}
}

func TestRepeatableFlagFromList(t *testing.T) {
	withConfig(t, "produce:\n  header: [a=1, b=2]\n")
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	var h headerFlags
	fs.Var(&h, "header", "")
	if _, err := parseArgs(fs, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(h, " ") != "a=1 b=2" {
		t.Fatalf("--header from a list: %q", h)
	}
}

func TestConfigErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"broker: a\n  bad: indent\n", "line 2"},
		{"broker: [a\n", "line 1"},
		{"- a\n- b\n", "line 1: want a mapping"},
		{"broker: a\nbroker: b\n", "line 2: broker is set twice (also on line 1)"},
		{"join:\n  - [nested]\n", "line 2: join: a list holds plain values"},
		{"max: lots\n", "line 1: max:"},
	} {
		path := withConfig(t, c.body)
		fs := flag.NewFlagSet("consume", flag.ContinueOnError)
		fs.String("broker", "", "")
		fs.String("join", "", "")
		fs.Int("max", 0, "")
		_, err := parseArgs(fs, nil)
		if err == nil || !strings.Contains(err.Error(), "config file "+path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error naming %s and %q", c.body, err, path, c.want)
		}
	}
	// A token's value is never shown.
	withConfig(t, "")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("max-token-age", 0, "")
	t.Setenv("STRATA_MAX_TOKEN_AGE", "s3cr3t")
	if _, err := parseArgs(fs, nil); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("a bad secret-named value: %v", err)
	}
	// STRATA_CONFIG naming a missing file is an error; a missing default
	// file is not.
	t.Setenv("STRATA_CONFIG", filepath.Join(t.TempDir(), "absent.yaml"))
	if _, err := parseArgs(flag.NewFlagSet("x", flag.ContinueOnError), nil); err == nil || !strings.Contains(err.Error(), "STRATA_CONFIG") {
		t.Errorf("STRATA_CONFIG naming a missing file: %v", err)
	}
	t.Setenv("STRATA_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if _, err := parseArgs(flag.NewFlagSet("x", flag.ContinueOnError), nil); err != nil {
		t.Errorf("no config file at the default path: %v", err)
	}
}

// runCLIEnv runs the binary with extra environment variables.
func runCLIEnv(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// The binary reads STRATA_BROKER and the config file, so a user need not
// repeat --broker; the flag wins over the environment, the environment
// over the file.
func TestCLIBrokerFromEnvAndConfig(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	cli(t, "", nil, "topic", "create", "cfg", "--broker", s.addr)
	dead := freeAddr(t) // nothing listens there
	dir := t.TempDir()
	cfg := filepath.Join(dir, "strata", "config.yaml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	home := "XDG_CONFIG_HOME=" + dir
	write("broker: " + s.addr + "\noutput: json\n")
	if out, errs, err := runCLIEnv(t, []string{home}, "topic", "list"); err != nil || !strings.Contains(out, `"name": "cfg"`) {
		t.Fatalf("topic list with broker and output from ~/.config/strata/config.yaml: %v\n%s%s", err, out, errs)
	}
	write("broker: " + dead + "\n")
	if out, errs, err := runCLIEnv(t, []string{home, "STRATA_BROKER=" + s.addr}, "topic", "list"); err != nil || !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "cfg ") {
		t.Fatalf("topic list with STRATA_BROKER over a dead broker in the file: %v\n%s%s", err, out, errs)
	}
	if out, errs, err := runCLIEnv(t, []string{home, "STRATA_BROKER=" + dead}, "topic", "list", "--broker", s.addr); err != nil || !strings.Contains(out, "cfg ") {
		t.Fatalf("topic list --broker over a dead STRATA_BROKER: %v\n%s%s", err, out, errs)
	}
	write("broker: [unclosed\n")
	if _, errs, err := runCLIEnv(t, []string{home}, "topic", "list", "--broker", s.addr); err == nil || !strings.Contains(errs, "config file "+cfg+" line 1: ") {
		t.Fatalf("a bad config file: %v\n%s", err, errs)
	}
}
