package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

// agentDirs is where an agent under test would put its state and socket;
// neither may exist after a refused start.
type agentDirs struct {
	data, sock string
}

func newAgentDirs(t *testing.T) agentDirs {
	dir := shortDir(t)
	return agentDirs{data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "api.sock")}
}

// args is a complete, valid command line for a control-plane-only trial
// agent on ephemeral ports; tests append the one mistake they check (the
// last value of a flag wins).
func (d agentDirs) args(extra ...string) []string {
	return append([]string{
		"agent", "--name", "n1", "--data-dir", d.data, "--bind", "127.0.0.1",
		"--api", "unix://" + d.sock, "--insecure", "--dataplane", "none",
		"--raft-port", "0", "--gossip-port", "0",
	}, extra...)
}

// nothingStarted checks that the agent created neither its data directory
// nor its socket.
func (d agentDirs) nothingStarted(t *testing.T) {
	t.Helper()
	for _, p := range []string{d.data, d.sock} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a refused start (%v): something was started", p, err)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentRefusesBadInput(t *testing.T) {
	cases := []struct {
		name  string
		extra []string
		want  []string // fragments of the message
	}{
		{"unknown flag", []string{"--frobnicate"}, []string{"flag provided but not defined: -frobnicate"}},
		{"bind not an IP", []string{"--bind", "10.0.0"}, []string{`--bind "10.0.0"`}},
		{"bind a host name", []string{"--bind", "m30.example"}, []string{`--bind "m30.example"`}},
		{"bind unspecified", []string{"--bind", "0.0.0.0"}, []string{"must be a specific IP address"}},
		{"bad dataplane", []string{"--dataplane", "xdp"}, []string{`--dataplane "xdp": want kernel, fake or none`}},
		{"relative api socket", []string{"--api", "unix://run/raftlb.sock"}, []string{"--api", "must be absolute"}},
		{"api port 0", []string{"--api", "127.0.0.1:0"}, []string{"--api", "port 0"}},
		{"api garbage", []string{"--api", "garbage"}, []string{"--api", "want unix:///path or IP:PORT"}},
		{"positional arguments", []string{"n2"}, []string{"agent takes no arguments", `"n2"`}},
		{"no secrets without insecure", []string{"--insecure=false"}, []string{"--key-file and --tls-dir are required", "--insecure"}},
		{"key file but no tls dir", []string{"--insecure=false", "--key-file", "/nonexistent/key"}, []string{"--key-file and --tls-dir are required"}},
		{"bad log level", []string{"--log-level", "loud"}, []string{`--log-level "loud"`}},
		{"join without port", []string{"--join", "10.0.0.2:7946", "--join", "10.0.0.3"}, []string{`--join "10.0.0.3": want HOST:GOSSIPPORT`}},
		{"lease not below heartbeat", []string{"--raft-leader-lease", "1s"}, []string{"leader lease 1s must be shorter than the heartbeat timeout"}},
		{"bad duration", []string{"--raft-heartbeat-timeout", "soon"}, []string{"raft-heartbeat-timeout", "soon"}},
		{"bad name", []string{"--name", "n1/../x"}, []string{"node name", "may only contain"}},
		{"no name", []string{"--name", ""}, []string{"node name"}},
		{"no data dir", []string{"--data-dir", ""}, []string{"a data directory is required"}},
		{"same ports", []string{"--raft-port", "7000", "--gossip-port", "7000"}, []string{"both 7000"}},
		{"missing config file", []string{"--config", "/nonexistent/raftlb.yaml"}, []string{"/nonexistent/raftlb.yaml"}},
		{"witness with a data plane", []string{"--witness", "--dataplane", "kernel"}, []string{"--witness runs without a data plane"}},
		{"bad vip lease", []string{"--vip-lease", "1500ms"}, []string{"--vip-lease", "whole seconds"}},
		{"arp lease below what it can carry", []string{"--arp-lease", "100ms"}, []string{"--arp-lease", "at least 300ms"}},
		{"arp lease past its backstop", []string{"--arp-lease", "3s"}, []string{"--arp-lease", "longer than the VIP lease 2s"}},
		{"watchdog timeout alone", []string{"--watchdog-timeout", "10s"}, []string{"--watchdog-timeout without --watchdog"}},
		{"watchdog timeout below the lease", []string{"--watchdog", "/dev/watchdog", "--watchdog-timeout", "1s"}, []string{"at least the VIP lease"}},
		{"watchdog relative", []string{"--watchdog", "watchdog"}, []string{"absolute path"}},
		{"insecure on a network address", []string{"--bind", "10.9.9.9"}, []string{"--insecure: --bind 10.9.9.9 is not loopback", "--insecure-netns"}},
		{"insecure in a namespace it is not in", []string{"--bind", "10.9.9.9", "--insecure-netns", "raftlb-nope"}, []string{`network namespace "raftlb-nope"`}},
		{"insecure namespace name with a slash", []string{"--bind", "10.9.9.9", "--insecure-netns", "../x"}, []string{"a namespace name"}},
		{"insecure netns without insecure", []string{"--insecure=false", "--key-file", "/k", "--tls-dir", "/t", "--insecure-netns", "x"}, []string{"--insecure-netns goes with --insecure"}},
		{"api on a network address", []string{"--api", "10.9.9.9:7000"}, []string{"--api 10.9.9.9:7000", "no authentication over TCP"}},
		{"api on loopback TCP without the flag", []string{"--api", "127.0.0.1:7000"}, []string{"--api 127.0.0.1:7000", "--api-tcp-loopback"}},
		{"relative notify program", []string{"--notify", "notify.sh"}, []string{"--notify", "notify.sh"}},
		{"relative notify program with arguments", []string{"--notify", `["notify.sh", "-v"]`}, []string{"--notify", "notify.sh"}},
		{"notify argv not JSON", []string{"--notify", `["/bin/true", -v]`}, []string{"flag -notify", "a JSON array of strings"}},
		{"notify argv empty", []string{"--notify", `[]`}, []string{"flag -notify", "an empty array"}},
		{"notify timeout zero", []string{"--notify-timeout", "0s"}, []string{"--notify-timeout 0s", "want 0 < timeout"}},
		{"notify queue zero", []string{"--notify-queue", "0"}, []string{"--notify-queue 0", "1 ≤ queue ≤ 10000"}},
		{"mail window too short", []string{"--smtp-relay", "127.0.0.1:25", "--mail-from", "a@example.org", "--mail-to", "b@example.org", "--mail-window", "10ms"}, []string{"--mail-window 10ms: want 1s to 1h"}},
		{"mail without a recipient", []string{"--smtp-relay", "127.0.0.1:25", "--mail-from", "a@example.org"}, []string{"--smtp-relay, --mail-from, --mail-to"}},
		{"relative ocf root", []string{"--ocf-root", "usr/lib/ocf"}, []string{`--ocf-root "usr/lib/ocf": want a clean absolute path`}},
		{"missing ocf root", []string{"--ocf-root", "/nonexistent/ocf"}, []string{"--ocf-root", "/nonexistent/ocf"}},
		{"relative hook dir", []string{"--hook-dir", "hooks"}, []string{"--hook-dir", "hooks"}},
		{"unknown fence user", []string{"--fence-user", "no-such-user-x"}, []string{"--fence-user", "no-such-user-x"}},
		{"exec max procs zero", []string{"--exec-max-procs", "0"}, []string{"--exec-max-procs 0: want 1 to 1024"}},
		{"sync id above a byte", []string{"--ipvs-sync-id", "256"}, []string{"--ipvs-sync-id 256: want 1 to 255"}},
		{"negative sync id", []string{"--ipvs-sync-id", "-1"}, []string{"--ipvs-sync-id -1: want 1 to 255"}},
		{"sync id without sync", []string{"--ipvs-sync=false", "--ipvs-sync-id", "5"}, []string{"--ipvs-sync-interface and --ipvs-sync-id go with --ipvs-sync"}},
		{"sync interface name too long", []string{"--ipvs-sync-interface", "averyverylongname"}, []string{`--ipvs-sync-interface "averyverylongname": an interface name has at most 15 characters`}},
		{"http mtls without http", []string{"--http-mtls"}, []string{"--http-mtls and --http-public go with --http"}},
		{"http on a network address", []string{"--http", "10.9.9.9:9647"}, []string{"--http 10.9.9.9:9647 is not loopback", "--http-mtls", "--http-public"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newAgentDirs(t)
			stdout, _ := wantExit(t, 2, d.args(tc.extra...), append([]string{"raftlb: usage: "}, tc.want...)...)
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			d.nothingStarted(t)
		})
	}
}

func TestAgentRefusesBadConfigFile(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{"unknown key", "name: n1\nbnid: 10.0.0.1\n", []string{`line 2: unknown setting "bnid"`}},
		{"config in config", "config: /etc/other.yaml\n", []string{`unknown setting "config"`}},
		{"list for a scalar", "bind:\n  - 10.0.0.1\n  - 10.0.0.2\n", []string{`"bind" takes one value, not a list`}},
		{"mapping for a value", "bind: {ip: 10.0.0.1}\n", []string{`"bind": want a value or a list of values`}},
		{"bad duration", "raft-heartbeat-timeout: soon\n", []string{"raft-heartbeat-timeout", `"soon"`}},
		{"bad number", "max-voters: seven\n", []string{"max-voters", `"seven"`}},
		{"two documents", "name: n1\n---\nname: n2\n", []string{"exactly one YAML document"}},
		{"not a mapping", "- name: n1\n", []string{"want a mapping"}},
		{"set twice", "name: n1\nname: n2\n", []string{`"name" is set twice`}},
		{"broken YAML", "name: [n1\n", []string{"config file"}},
		{"lease from the file", "raft-leader-lease: 1s\n", []string{"leader lease 1s must be shorter"}},
		{"join without port from the file", "join: [10.0.0.2]\n", []string{`--join "10.0.0.2"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newAgentDirs(t)
			cfg := writeFile(t, "raftlb.yaml", tc.file)
			wantExit(t, 2, d.args("--config", cfg), tc.want...)
			d.nothingStarted(t)
		})
	}
}

func TestAgentWithoutIPVS(t *testing.T) {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("this kernel has IPVS; the agent would start")
	}
	d := newAgentDirs(t)
	wantExit(t, 1, d.args("--dataplane", "kernel"), "modprobe ip_vs", "--dataplane none")
	d.nothingStarted(t)
}

func TestConfigFileFlagsOverride(t *testing.T) {
	cfg := writeFile(t, "raftlb.yaml", `# keys are the flag names
name: from-file
data-dir: /var/lib/raftlb
bind: 10.0.0.1
bootstrap-expect: 3
insecure: true
raft-heartbeat-timeout: 1s
raft-election-timeout: 1s
raft-leader-lease: 500ms
join:
  - 10.0.0.2:7946
  - m50.example:7946
`)
	f, err := parseAgentArgs([]string{"--config", cfg, "--name", "from-flag", "--raft-leader-lease", "200ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.name != "from-flag" {
		t.Errorf("name %q: the flag must override the file", f.name)
	}
	if f.timing.RaftLeaderLease != 200*time.Millisecond {
		t.Errorf("leader lease %s: the flag must override the file", f.timing.RaftLeaderLease)
	}
	if f.dataDir != "/var/lib/raftlb" || f.bind != "10.0.0.1" || f.bootstrapExpect != 3 || !f.insecure {
		t.Errorf("file settings not applied: data-dir %q bind %q bootstrap-expect %d insecure %v", f.dataDir, f.bind, f.bootstrapExpect, f.insecure)
	}
	if f.timing.RaftHeartbeatTimeout != time.Second || f.timing.RaftElectionTimeout != time.Second {
		t.Errorf("timings from the file not applied: %+v", f.timing)
	}
	if want := []string{"10.0.0.2:7946", "m50.example:7946"}; !slices.Equal(f.join, want) {
		t.Errorf("join %q, want the file's list %q", f.join, want)
	}
	// Defaults the file does not mention stay.
	if f.raftPort != 7947 || f.gossipPort != 7946 || f.dataplane != "kernel" {
		t.Errorf("defaults changed: raft-port %d gossip-port %d dataplane %q", f.raftPort, f.gossipPort, f.dataplane)
	}
}

// TestWitnessHasNoDataplane: --witness alone runs without a data plane.
func TestWitnessHasNoDataplane(t *testing.T) {
	f, err := parseAgentArgs([]string{"--witness", "--name", "tie"}, io.Discard)
	if err != nil || f.dataplane != "none" || !f.witness {
		t.Fatalf("--witness: %+v, %v; want a witness without a data plane", f, err)
	}
}

func TestConfigFileJoinFlagReplacesList(t *testing.T) {
	cfg := writeFile(t, "raftlb.yaml", "join: [10.0.0.2:7946, 10.0.0.3:7946]\n")
	f, err := parseAgentArgs([]string{"--config", cfg, "--join", "10.0.0.9:7946"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.9:7946"}; !slices.Equal(f.join, want) {
		t.Errorf("join %q, want only the command line's %q", f.join, want)
	}

	// A single join address may be written as a scalar.
	cfg = writeFile(t, "raftlb.yaml", "join: 10.0.0.2:7946\n")
	if f, err = parseAgentArgs([]string{"--config", cfg}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.2:7946"}; !slices.Equal(f.join, want) {
		t.Errorf("join %q, want %q", f.join, want)
	}
}

func TestConfigFileEmpty(t *testing.T) {
	for _, content := range []string{"", "# nothing set yet\n", "---\n"} {
		cfg := writeFile(t, "raftlb.yaml", content)
		f, err := parseAgentArgs([]string{"--config", cfg, "--name", "n1"}, io.Discard)
		if err != nil {
			t.Errorf("config %q: %v", content, err)
			continue
		}
		if f.name != "n1" || f.raftPort != 7947 {
			t.Errorf("config %q changed settings: %+v", content, f)
		}
	}
}

// TestAgentRunsAndLeaves starts a real single-node agent (control plane
// only, loopback, ephemeral ports), drives it with the client commands and
// checks that leave stops it and removes its socket.
func TestAgentRunsAndLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real agent")
	}
	d := newAgentDirs(t)
	logs := &testkit.LogBuffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- run(d.args("--bootstrap-expect", "1", "--log-level", "debug"), io.Discard, logs)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()
	apiAddr := "unix://" + d.sock

	// Wait until the agent answers and has elected itself DC.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, stdout, _ := raftlb(t, "status", "--api", apiAddr, "--json")
		var st struct {
			DC     string `json:"dc"`
			Quorum bool   `json:"quorum"`
		}
		if code == 0 && json.Unmarshal([]byte(stdout), &st) == nil && st.DC == "n1" && st.Quorum {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not become DC: last status exit %d: %s", code, stdout)
		}
		select {
		case code := <-exited:
			t.Fatalf("the agent exited early with %d", code)
		case <-tick.C:
		}
	}
	if fi, err := os.Lstat(d.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, %v; want mode 0600", fi, err)
	}

	services := writeFile(t, "services.yaml", servicesFile)
	stdout, _ := wantExit(t, 0, []string{"apply", "--api", apiAddr, "-f", services})
	if !strings.HasPrefix(stdout, "applied: spec version 1, 2 change(s):\n") {
		t.Errorf("apply: %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"status", "--api", apiAddr})
	for _, want := range []string{"Current DC: n1", "Health: OK", "Spec version: 1", "TCP  172.95.69.100:3128"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}

	wantExit(t, 0, []string{"leave", "--api", apiAddr})
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("the agent exited with %d after leave, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop after leave")
	}
	if _, err := os.Lstat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the admin socket is still there after the agent stopped: %v", err)
	}
	// The shutdown order (startAgent's), for an agent without a data plane.
	want := []string{"admin API", "DC duties", "director", "notifiers", "DC watch", "drain", "leave gossip", "agent context", "Raft and gossip", "SIGHUP handler"}
	if got := closedInOrder(logs.String()); !slices.Equal(got, want) {
		t.Errorf("the agent stopped in the order\n got %q\nwant %q", got, want)
	}
}

// TestInsecureAllowedInTheNamedNamespace: --insecure off loopback is
// accepted only when the agent runs in the network namespace named (here
// a name that resolves to this process's own namespace).
func TestInsecureAllowedInTheNamedNamespace(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/proc/self/ns/net", filepath.Join(dir, "ours")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err) // any other file is another inode
	}
	bind := netip.MustParseAddr("10.9.9.9")
	if err := insecureAllowed(bind, "ours", dir); err != nil {
		t.Errorf("in the namespace named: %v", err)
	}
	if err := insecureAllowed(bind, "other", dir); err == nil || !strings.Contains(err.Error(), "does not run in network namespace") {
		t.Errorf("in another: %v", err)
	}
	if err := insecureAllowed(netip.MustParseAddr("127.0.0.1"), "", dir); err != nil {
		t.Errorf("loopback: %v", err)
	}
}
