package main

import (
	"flag"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfigFile(t *testing.T) {
	fs, _ := newAgentFlagSet(io.Discard)
	got, err := parseConfigFile([]byte(`
name: m30
data-dir: /var/lib/raftlb
raft-port: 7000
insecure: false
raft-leader-lease: 100ms
join: [10.0.0.2:7946, "m50.example:7946"]
notify:
  - /usr/local/bin/page-ops
  - [/usr/bin/logger, -t, "raftlb event"]
interface: ~
log-level:
`), fs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"name":              {"m30"},
		"data-dir":          {"/var/lib/raftlb"},
		"raft-port":         {"7000"},
		"insecure":          {"false"},
		"raft-leader-lease": {"100ms"},
		"join":              {"10.0.0.2:7946", "m50.example:7946"},
		"notify":            {"/usr/local/bin/page-ops", `["/usr/bin/logger","-t","raftlb event"]`},
		// interface and log-level are null: absent, so their defaults stay.
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("parseConfigFile =\n%q\nwant\n%q", got, want)
	}
	// Parsing does not set anything.
	if v := fs.Lookup("name").Value.String(); v != "" {
		t.Errorf("parseConfigFile set name to %q", v)
	}
}

func TestParseConfigFileEmpty(t *testing.T) {
	fs, _ := newAgentFlagSet(io.Discard)
	for _, in := range []string{"", "\n", "# all commented out\n# name: n1\n", "---\n", "~\n", "{}\n"} {
		got, err := parseConfigFile([]byte(in), fs)
		if err != nil {
			t.Errorf("parseConfigFile(%q): %v", in, err)
			continue
		}
		if len(got) != 0 {
			t.Errorf("parseConfigFile(%q) = %q, want nothing", in, got)
		}
	}
}

func TestParseConfigFileErrors(t *testing.T) {
	fs, _ := newAgentFlagSet(io.Discard)
	cases := []struct {
		in, want string
	}{
		{"bnid: 10.0.0.1\n", `config file line 1: unknown setting "bnid"`},
		{"data_dir: /var/lib/raftlb\n", `unknown setting "data_dir"`},
		{"config: other.yaml\n", `unknown setting "config"`},
		{"name: a\nname: b\n", `config file line 2: "name" is set twice`},
		{"name: ~\nname: b\n", `"name" is set twice`},
		{"bind: [10.0.0.1]\n", `config file line 1: "bind" takes one value, not a list`},
		{"raft-port: [1, 2]\n", `"raft-port" takes one value, not a list`},
		{"join: [[10.0.0.1:7946]]\n", `"join": list items must be plain values`},
		{"join: {a: b}\n", `"join": want a value or a list of values`},
		{"notify: [{a: b}]\n", `"notify": list items must be a program's path or a list of the program and its arguments`},
		{"notify: [[/bin/true, [x]]]\n", `"notify": a program's arguments must be plain values`},
		{"notify: [[]]\n", `"notify": an empty list`},
		{"name: &n a\nbind: *n\n", `"bind": want a value or a list of values`},
		{"[name]: a\n", "setting names must be plain words"},
		{"- name\n", "config file line 1: want a mapping"},
		{"just words\n", "want a mapping"},
		{"name: a\n---\nname: b\n", "exactly one YAML document"},
		{"name: a\n---\n", "exactly one YAML document"},
		{"name: [a\n", "config file: yaml:"},
		{"\tname: a\n", "config file: yaml:"},
	}
	for _, tc := range cases {
		got, err := parseConfigFile([]byte(tc.in), fs)
		if err == nil {
			t.Errorf("parseConfigFile(%q) = %q, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfigFile(%q) error %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestApplyConfigFile(t *testing.T) {
	fs, f := newAgentFlagSet(io.Discard)
	if err := fs.Parse([]string{"--name", "flag-name", "--join", "10.0.0.9:7946"}); err != nil {
		t.Fatal(err)
	}
	err := applyConfigFile(fs, map[string][]string{
		"name":                   {"file-name"},
		"bind":                   {"10.0.0.1"},
		"join":                   {"10.0.0.2:7946", "10.0.0.3:7946"},
		"raft-heartbeat-timeout": {"2s"},
		"bootstrap-expect":       {"3"},
		"insecure":               {"true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.name != "flag-name" {
		t.Errorf("name %q: a flag on the command line must win over the file", f.name)
	}
	if !slices.Equal(f.join, []string{"10.0.0.9:7946"}) {
		t.Errorf("join %q: the command line's joins must replace the file's, not add to them", f.join)
	}
	if f.bind != "10.0.0.1" || f.timing.RaftHeartbeatTimeout != 2*time.Second || f.bootstrapExpect != 3 || !f.insecure {
		t.Errorf("file values not applied: bind %q heartbeat %s bootstrap-expect %d insecure %v",
			f.bind, f.timing.RaftHeartbeatTimeout, f.bootstrapExpect, f.insecure)
	}

	fs, f = newAgentFlagSet(io.Discard)
	if err := applyConfigFile(fs, map[string][]string{"join": {"a:1", "b:2"}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.join, []string{"a:1", "b:2"}) {
		t.Errorf("join %q, want every list item in order", f.join)
	}
}

func TestApplyConfigFileBadValues(t *testing.T) {
	cases := []struct {
		name, value string
	}{
		{"raft-leader-lease", "soon"},
		{"raft-port", "seven"},
		{"insecure", "maybe"},
		{"snapshot-threshold", "-1"},
		{"gossip-suspicion-mult", "1.5"},
	}
	for _, tc := range cases {
		fs, _ := newAgentFlagSet(io.Discard)
		err := applyConfigFile(fs, map[string][]string{tc.name: {tc.value}})
		if err == nil {
			t.Errorf("%s: %q was accepted", tc.name, tc.value)
			continue
		}
		if !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), `"`+tc.value+`"`) {
			t.Errorf("%s: %q: error %q should name the setting and quote the value", tc.name, tc.value, err)
		}
	}
}

// The config file and the flags are one vocabulary: every flag but config
// itself can be set from the file.
func TestConfigFileKeysAreFlagNames(t *testing.T) {
	fs, _ := newAgentFlagSet(io.Discard)
	fs.VisitAll(func(fl *flag.Flag) {
		in := fl.Name + ": " + fl.DefValue + "\n"
		if fl.DefValue == "" || fl.DefValue == "[]" {
			in = fl.Name + ": x\n"
		}
		got, err := parseConfigFile([]byte(in), fs)
		if fl.Name == "config" {
			if err == nil {
				t.Errorf("config is accepted as a setting of the config file")
			}
			return
		}
		if err != nil {
			t.Errorf("flag %s cannot be set from the file: %v", fl.Name, err)
			return
		}
		if _, ok := got[fl.Name]; !ok {
			t.Errorf("flag %s: parsed %q", fl.Name, got)
		}
	})
}

func FuzzParseConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"name: m30\ndata-dir: /var/lib/raftlb\nbind: 10.0.0.1\njoin: [10.0.0.2:7946]\n",
		"join:\n  - a:1\n  - b:2\nraft-leader-lease: 100ms\n",
		"bind: [10.0.0.1]\n",
		"name: &n a\nbind: *n\n",
		"<<: {name: a}\n",
		"name: a\n---\nname: b\n",
		"? [a]\n: b\n",
		"~\n",
		"join: [~, null, '']\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, _ := newAgentFlagSet(io.Discard)
		settings, err := parseConfigFile(data, fs)
		if err != nil {
			if settings != nil {
				t.Errorf("error %v with settings %q", err, settings)
			}
			return
		}
		for name, vals := range settings {
			fl := fs.Lookup(name)
			if fl == nil || name == "config" {
				t.Fatalf("returned setting %q is not an agent flag", name)
			}
			if _, repeatable := fl.Value.(*stringList); !repeatable && len(vals) != 1 {
				t.Fatalf("setting %q has %d values; only join may have several", name, len(vals))
			}
		}
		// Applying must not panic either; bad values are errors.
		_ = applyConfigFile(fs, settings)
	})
}

// TestNotifyArgv: --notify takes a program alone or, as a JSON array, with
// its arguments (the config file's YAML list becomes that array); no shell
// splits anything.
func TestNotifyArgv(t *testing.T) {
	fs, f := newAgentFlagSet(io.Discard)
	settings, err := parseConfigFile([]byte("notify:\n  - [/usr/bin/logger, -t, \"two words\"]\n"), fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--notify", "/usr/local/bin/page ops", "--notify", `["/bin/echo", "a b", "$HOME"]`}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, settings); err != nil {
		t.Fatal(err)
	}
	// The command line's --notify replaces the file's, as for every flag.
	want := [][]string{{"/usr/local/bin/page ops"}, {"/bin/echo", "a b", "$HOME"}}
	if !slices.EqualFunc(f.notify, want, slices.Equal) {
		t.Errorf("notify %q, want %q", f.notify, want)
	}
	fs, f = newAgentFlagSet(io.Discard)
	if err := applyConfigFile(fs, settings); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"/usr/bin/logger", "-t", "two words"}}; !slices.EqualFunc(f.notify, want, slices.Equal) {
		t.Errorf("notify from the file %q, want %q", f.notify, want)
	}
	var l argvList
	if err := l.Set("[\"/bin/true\", \"a\\u0000b\"]"); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("an argument with a NUL byte: %v", err)
	}
}
