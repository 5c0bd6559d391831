package main

// Flag defaults from the environment and the config file: one mechanism
// for every command. A flag --X not given on the command line takes the
// environment variable STRATA_<X> (upper case, '-' as '_'), else key X of
// the config file, else its built-in default: flags win over the
// environment, the environment over the file. Single-letter aliases
// (-o for --output) are not looked up; their long names are.
//
// The config file is $STRATA_CONFIG, else $XDG_CONFIG_HOME/strata/config.yaml
// (~/.config/strata/config.yaml): a YAML mapping of flag names to values.
// Top-level keys apply to every client command that has the flag (serve
// reads only its own section); a key whose value is a mapping is a
// section for the command of that name, and a section may hold one for a
// subcommand; the most specific wins:
//
//	broker: 10.0.0.1:7420,10.0.0.2:7420
//	tls-ca: /etc/strata/ca.pem
//	output: json
//	topic:
//	  list:
//	    output: text
//	serve:
//	  data-dir: /var/lib/strata
//
// A list value is joined with commas (--join a,b), or given once per item
// to a repeatable flag (--header). docs/cli-config.md is the user's guide.

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// serverCommands read only their own section of the config file, not its
// top-level keys (a person's --tls-cert is not a broker's).
var serverCommands = map[string]bool{"serve": true}

// repeatable is a flag value that takes each item of a list value.
type repeatable interface{ repeatable() }

func (*headerFlags) repeatable() {}

// envName is the environment variable of flag name: STRATA_<NAME>.
func envName(name string) string {
	return "STRATA_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// secretFlag reports whether flag name holds a secret whose value no
// message may show.
func secretFlag(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "token") || strings.Contains(n, "password") || strings.Contains(n, "secret")
}

// shown is value as a message may show it.
func shown(name, value string) string {
	if secretFlag(name) {
		return "(hidden)"
	}
	return fmt.Sprintf("%q", value)
}

// flagDefaults sets every flag of fs not given on the command line from
// the environment, else from the config file (see the top of this file).
// fs.Name() is the command path ("serve", "topic list").
func flagDefaults(fs *flag.FlagSet) error {
	// Flags given, by value too: an alias given (-o) counts for its long
	// name (--output), which shares its value.
	givenName, givenValue := map[string]bool{}, map[any]bool{}
	fs.Visit(func(f *flag.Flag) {
		givenName[f.Name] = true
		if key, ok := valueKey(f.Value); ok {
			givenValue[key] = true
		}
	})
	unset := func(f *flag.Flag) bool {
		if givenName[f.Name] || len(f.Name) == 1 {
			return false
		}
		key, ok := valueKey(f.Value)
		return !ok || !givenValue[key]
	}
	var err error
	fromEnv := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || !unset(f) {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			fromEnv[f.Name] = true
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s=%s: %v", env, shown(f.Name, v), serr)
			}
		}
	})
	if err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil || cfg == nil {
		return err
	}
	vals, err := cfg.values(strings.Fields(fs.Name()))
	if err != nil {
		return err
	}
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := vals[f.Name]
		// A mapping is a section (a command's: group, topic), never a
		// value, even where a flag has the command's name (--group).
		if err != nil || !ok || v.section || fromEnv[f.Name] || !unset(f) {
			return
		}
		err = v.set(fs, f, cfg.path)
	})
	if v := vals["token"]; err == nil && v != nil && !v.section {
		cfg.warnIfShared()
	}
	return err
}

// valueKey identifies a flag's value, shared by a flag and its aliases.
func valueKey(v flag.Value) (any, bool) {
	if reflect.TypeOf(v).Comparable() {
		return v, true
	}
	return nil, false
}

// configFile is a parsed config file.
type configFile struct {
	path string
	root *yaml.Node // a mapping
}

// configValue is one key's value: scalars, with the line it is on.
type configValue struct {
	items   []string
	list    bool
	section bool // a mapping: a section, never a flag's value
	line    int
}

func (v *configValue) set(fs *flag.FlagSet, f *flag.Flag, path string) error {
	fail := func(err error) error {
		return fmt.Errorf("config file %s line %d: %s: %v", path, v.line, f.Name, err)
	}
	if _, ok := f.Value.(repeatable); ok && v.list {
		for _, item := range v.items {
			if err := fs.Set(f.Name, item); err != nil {
				return fail(err)
			}
		}
		return nil
	}
	joined := strings.Join(v.items, ",")
	if err := fs.Set(f.Name, joined); err != nil {
		return fail(fmt.Errorf("%s: %v", shown(f.Name, joined), err))
	}
	return nil
}

// configPath is the config file's path, and whether STRATA_CONFIG named
// it (then it must exist).
func configPath() (string, bool) {
	if p := os.Getenv("STRATA_CONFIG"); p != "" {
		return p, true
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", false
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "strata", "config.yaml"), false
}

// loadConfig reads the config file; nil when there is none at the
// default path.
func loadConfig() (*configFile, error) {
	path, explicit := configPath()
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return nil, nil
		}
		if explicit {
			return nil, fmt.Errorf("config file %s (STRATA_CONFIG): %v", path, err)
		}
		return nil, fmt.Errorf("config file %s: %v (set STRATA_CONFIG to use another file)", path, err)
	}
	return parseConfig(path, raw)
}

// parseConfig parses a config file's contents.
func parseConfig(path string, raw []byte) (*configFile, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		// yaml.v3's errors read "yaml: line N: ...".
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if strings.HasPrefix(msg, "line ") {
			return nil, fmt.Errorf("config file %s %s", path, msg)
		}
		return nil, fmt.Errorf("config file %s: %s", path, msg)
	}
	if len(doc.Content) == 0 { // empty, or only comments
		return &configFile{path: path, root: &yaml.Node{Kind: yaml.MappingNode}}, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s line %d: want a mapping of flag names to values (broker: HOST:PORT), not a %s", path, root.Line, kindName(root))
	}
	c := &configFile{path: path, root: root}
	if err := c.check(root); err != nil {
		return nil, err
	}
	return c, nil
}

// check refuses what no command could read: a value that is neither a
// scalar, a list of scalars nor a section, and duplicate keys.
func (c *configFile) check(m *yaml.Node) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("config file %s line %d: a key must be a flag or command name", c.path, k.Line)
		}
		if prev, dup := seen[k.Value]; dup {
			return fmt.Errorf("config file %s line %d: %s is set twice (also on line %d)", c.path, k.Line, k.Value, prev)
		}
		seen[k.Value] = k.Line
		switch v.Kind {
		case yaml.ScalarNode:
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file %s line %d: %s: a list holds plain values, not a %s", c.path, item.Line, k.Value, kindName(item))
				}
			}
		case yaml.MappingNode:
			if err := c.check(v); err != nil {
				return err
			}
		default:
			return fmt.Errorf("config file %s line %d: %s: want a value, a list or a command's section, not a %s", c.path, v.Line, k.Value, kindName(v))
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	return "value"
}

// values is what the file sets for the command path cmd: the top-level
// values (not for a server command), overridden by the section of
// cmd[0], then by that section's cmd[1], and so on.
func (c *configFile) values(cmd []string) (map[string]*configValue, error) {
	out := map[string]*configValue{}
	apply := func(m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			switch v.Kind {
			case yaml.ScalarNode:
				if v.Tag == "!!null" {
					continue
				}
				out[k.Value] = &configValue{items: []string{v.Value}, line: v.Line}
			case yaml.SequenceNode:
				cv := &configValue{list: true, line: v.Line}
				for _, item := range v.Content {
					cv.items = append(cv.items, item.Value)
				}
				out[k.Value] = cv
			case yaml.MappingNode:
				if _, ok := out[k.Value]; !ok {
					out[k.Value] = &configValue{section: true, line: v.Line}
				}
			}
		}
	}
	m := c.root
	if len(cmd) == 0 || !serverCommands[cmd[0]] {
		apply(m)
	}
	for _, word := range cmd {
		var next *yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == word && m.Content[i+1].Kind == yaml.MappingNode {
				next = m.Content[i+1]
			}
		}
		if next == nil {
			break
		}
		apply(next)
		m = next
	}
	return out, nil
}

// warnIfShared warns when a file holding a token is readable by others.
func (c *configFile) warnIfShared() {
	if st, err := os.Stat(c.path); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(errOut, "strata: warning: config file %s holds a token and is readable by other users (mode %s): chmod 600 it\n", c.path, st.Mode().Perm())
	}
}
