package fencing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// agent writes a fence agent script: it saves its stdin to DIR/stdin.N (N
// counts the runs), answers metadata with the given parameter names, and
// then runs body.
func agent(t *testing.T, params []string, body string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	var meta strings.Builder
	meta.WriteString(`<?xml version="1.0" ?><resource-agent name="fence_test"><parameters>`)
	for _, p := range params {
		fmt.Fprintf(&meta, `<parameter name="%s" unique="0" required="0"/>`, p)
	}
	meta.WriteString(`</parameters></resource-agent>`)
	path = filepath.Join(dir, "fence_test")
	script := fmt.Sprintf(`#!/bin/sh
in=$(cat)
case "$in" in action=metadata*) echo '%s'; exit 0;; esac
n=$(($(cat %[2]s/runs 2>/dev/null || echo 0) + 1)); echo $n > %[2]s/runs
printf '%%s\n' "$in" > %[2]s/stdin.$n
%[3]s
`, meta.String(), dir, body)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// runnerFor is a Runner that allows the directories of f's agents.
func runnerFor(f spec.Fencing) *Runner {
	var dirs, secrets []string
	for _, d := range f.Devices {
		if filepath.IsAbs(d.Agent) && !slices.Contains(dirs, filepath.Dir(d.Agent)) {
			dirs = append(dirs, filepath.Dir(d.Agent))
		}
		for _, p := range d.Params {
			if p.File != "" {
				secrets = append(secrets, filepath.Dir(p.File))
			}
		}
	}
	return NewRunner(Config{Dirs: dirs, SecretDirs: secrets})
}

func device(name, path string, hosts map[string]string) spec.FenceDevice {
	return spec.FenceDevice{Name: name, Agent: path, Hosts: hosts, Action: spec.FenceReboot, Timeout: 10 * time.Second}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func runs(t *testing.T, dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// TestFenceSendsTheProtocol: key=value lines on stdin — the action, the
// node's name, its plug under the host argument the metadata names, the
// device's options with the secret read from its file — and the secret
// never in what comes back.
func TestFenceSendsTheProtocol(t *testing.T) {
	path, dir := agent(t, []string{"action", "plug", "ipaddr", "password"}, `echo "Success: Rebooted with password hunter2"; exit 0`)
	secret := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := device("ipmi", path, map[string]string{"m30": "7"})
	d.Params = map[string]spec.FenceParam{"ipaddr": {Value: "10.0.0.30"}, "password": {File: secret}}
	out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
	if !out.Success || out.Level != 1 || out.Device != "ipmi" || out.Attempts != 1 || out.ExitCode != 0 {
		t.Fatalf("outcome %+v", out)
	}
	if want := "action=reboot\nnodename=m30\nplug=7\nipaddr=10.0.0.30\npassword=hunter2\n"; read(t, filepath.Join(dir, "stdin.1")) != want {
		t.Errorf("stdin %q, want %q", read(t, filepath.Join(dir, "stdin.1")), want)
	}
	if strings.Contains(out.Output, "hunter2") || !strings.Contains(out.Output, "******") {
		t.Errorf("the secret is not masked: %q", out.Output)
	}
}

// TestHostArgumentFromMetadata: port for an agent that lists only port;
// nothing for one that lists neither (fence_dummy ignores plug).
func TestHostArgumentFromMetadata(t *testing.T) {
	for _, tc := range []struct {
		params []string
		want   string
	}{
		{[]string{"action", "port"}, "action=off\nnodename=m30\nport=m30\n"},
		{[]string{"action", "status_file"}, "action=off\nnodename=m30\n"},
	} {
		path, dir := agent(t, tc.params, `exit 0`)
		d := device("d", path, map[string]string{"m30": ""})
		if out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", spec.FenceOff); !out.Success {
			t.Fatalf("%v: %+v", tc.params, out)
		}
		if got := read(t, filepath.Join(dir, "stdin.1")); got != tc.want {
			t.Errorf("%v: stdin %q, want %q", tc.params, got, tc.want)
		}
	}
}

// TestTimeoutIsAFailureAndKillsTheGroup: an agent that hangs past the
// device's timeout fails, and its children die with it.
func TestTimeoutIsAFailureAndKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	path, _ := agent(t, []string{"plug"}, `sleep 300 & echo $! > `+pidFile+`; wait`)
	d := device("slow", path, map[string]string{"m30": ""})
	d.Timeout = time.Second
	// A guard far beyond the device's timeout: if it is what ends the run,
	// the device's timeout was not applied.
	guard, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(guard, spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
	if guard.Err() != nil {
		t.Fatalf("the test's guard ended the agent, not the device's 1s timeout: %+v", out)
	}
	if out.Success || out.Err == nil || !strings.Contains(out.Err.Error(), "no answer within 1s") || out.Attempts != d.Retries+1 {
		t.Fatalf("outcome %+v, want a failure for the timeout after %d attempts", out, d.Retries+1)
	}
	testkit.WaitGone(t, pidFile, "the agent's child")
}

// TestRetriesThenSuccess: a device that fails twice and then succeeds is a
// success after three attempts, within its two retries.
func TestRetriesThenSuccess(t *testing.T) {
	path, dir := agent(t, []string{"plug"}, `[ "$n" -ge 3 ] && exit 0; echo "Failed: Unable to connect" >&2; exit 1`)
	d := device("flaky", path, map[string]string{"m30": ""})
	d.Retries = 2
	out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
	if !out.Success || out.Attempts != 3 || runs(t, dir) != 3 {
		t.Fatalf("outcome %+v after %d runs, want success on the third", out, runs(t, dir))
	}
	d.Retries = 1
	_ = os.Remove(filepath.Join(dir, "runs"))
	if out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", ""); out.Success || out.ExitCode != 1 || !strings.Contains(out.Err.Error(), "Unable to connect") {
		t.Fatalf("with one retry: %+v, want a failure saying why", out)
	}
}

// TestLevels: level 1's devices must all succeed; when one fails, level 2
// is tried; a level is not tried past its first failed device.
func TestLevels(t *testing.T) {
	okPath, okDir := agent(t, []string{"plug"}, `exit 0`)
	badPath, badDir := agent(t, []string{"plug"}, `exit 1`)
	lastPath, lastDir := agent(t, []string{"plug"}, `exit 0`)
	bad := device("b", badPath, map[string]string{"m30": ""})
	bad.Retries = 2
	f := spec.Fencing{
		Devices: []spec.FenceDevice{
			device("a", okPath, map[string]string{"m30": ""}),
			bad,
			device("c", lastPath, map[string]string{"m30": ""}),
		},
		Levels: map[string][][]string{"m30": {{"b", "a"}, {"a", "c"}}},
	}
	out := runnerFor(f).Fence(context.Background(), f, "m30", "")
	if !out.Success || out.Level != 2 || out.Device != "c" {
		t.Fatalf("outcome %+v, want success at level 2 with c", out)
	}
	if runs(t, badDir) != 3 || runs(t, okDir) != 1 || runs(t, lastDir) != 1 {
		t.Errorf("runs: b %d (want 3: two retries), a %d (want 1: level 1 stopped at b), c %d", runs(t, badDir), runs(t, okDir), runs(t, lastDir))
	}
	f.Levels["m30"] = [][]string{{"b"}}
	if out := runnerFor(f).Fence(context.Background(), f, "m30", ""); out.Success || out.Level != 1 {
		t.Fatalf("one failing level: %+v", out)
	}
	if out := runnerFor(f).Fence(context.Background(), f, "m99", ""); out.Success || out.Err == nil || !strings.Contains(out.Err.Error(), "no fence device fences m99") {
		t.Fatalf("a node no device fences: %+v", out)
	}
}

// TestOutputIsBounded: megabytes of binary output come back as the last
// bytes, valid UTF-8, within the bound.
func TestOutputIsBounded(t *testing.T) {
	path, _ := agent(t, []string{"plug"}, `head -c 5000000 /dev/urandom; echo "Success: Powered OFF"`)
	f := spec.Fencing{Devices: []spec.FenceDevice{device("loud", path, map[string]string{"m30": ""})}}
	out := runnerFor(f).Fence(context.Background(), f, "m30", "")
	if !out.Success || len(out.Output) > spec.MaxFenceOutput || !strings.HasSuffix(out.Output, "Success: Powered OFF\n") {
		t.Fatalf("success %v, output of %d bytes ending %q", out.Success, len(out.Output), out.Output[max(0, len(out.Output)-30):])
	}
}

func TestStatusMonitorValidate(t *testing.T) {
	path, _ := agent(t, []string{"plug"}, `case "$in" in
*action=status*) case "$in" in *plug=on*) exit 0;; *plug=off*) exit 2;; *) exit 1;; esac;;
*action=monitor*) exit 0;;
*action=validate-all*) echo "Failed: bad ipaddr" >&2; exit 1;;
esac`)
	d := device("d", path, map[string]string{"m30": "on", "m40": "off", "m50": "broken"})
	r := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}})
	if on, err := r.Status(context.Background(), d, "m30"); !on || err != nil {
		t.Errorf("status of an on node: %v, %v", on, err)
	}
	if on, err := r.Status(context.Background(), d, "m40"); on || err != nil {
		t.Errorf("status of an off node (exit 2): %v, %v", on, err)
	}
	if _, err := r.Status(context.Background(), d, "m50"); err == nil {
		t.Error("status exit 1: no error")
	}
	if err := r.Monitor(context.Background(), d); err != nil {
		t.Errorf("monitor: %v", err)
	}
	if err := r.Validate(context.Background(), d); err == nil || !strings.Contains(err.Error(), "bad ipaddr") {
		t.Errorf("validate-all: %v, want the agent's complaint", err)
	}
}

func TestMissingAgentAndSecret(t *testing.T) {
	d := device("gone", "fence_nonexistent_raftlb", map[string]string{"m30": ""})
	if out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", ""); out.Success || !strings.Contains(out.Err.Error(), "fence-agents installed") {
		t.Errorf("a missing agent: %+v", out)
	}
	path, _ := agent(t, []string{"plug"}, `exit 0`)
	d = device("d", path, map[string]string{"m30": ""})
	d.Params = map[string]spec.FenceParam{"password": {File: "/nonexistent/pass"}}
	if out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", ""); out.Success || !strings.Contains(out.Err.Error(), "/nonexistent/pass") {
		t.Errorf("a missing secret file: %+v", out)
	}
}

// TestDebianFenceDummy is the conformance test against Debian's
// fence-agents (make test installs the package): fence_dummy's file type
// keeps the power state in a file, status answers 2 for off, type=fail
// fails, and a delay beyond the timeout is a failure.
func TestDebianFenceDummy(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/fence_dummy"); err != nil {
		t.Fatalf("Debian's fence-agents is not installed (/usr/sbin/fence_dummy: %v): make test installs it", err)
	}
	state := filepath.Join(t.TempDir(), "power")
	if err := os.WriteFile(state, []byte("on"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := spec.FenceDevice{Name: "dummy", Agent: "fence_dummy", Hosts: map[string]string{"m30": ""}, Action: spec.FenceOff, Timeout: 20 * time.Second,
		Params: map[string]spec.FenceParam{"type": {Value: "file"}, "status_file": {Value: state}}}
	r := NewRunner(Config{})
	if on, err := r.Status(context.Background(), d, "m30"); !on || err != nil {
		t.Fatalf("status before: on %v, %v", on, err)
	}
	out := r.Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
	if !out.Success || read(t, state) != "off" {
		t.Fatalf("off: %+v, power %q", out, read(t, state))
	}
	if on, err := r.Status(context.Background(), d, "m30"); on || err != nil {
		t.Errorf("status after off: on %v, %v (want exit 2: off)", on, err)
	}
	if err := r.Monitor(context.Background(), d); err != nil {
		t.Errorf("monitor: %v", err)
	}
	fail := d
	// type=fail never reaches "off": fence_dummy gives up after its
	// power_timeout, with exit 1, well within the device's timeout.
	fail.Params = map[string]spec.FenceParam{"type": {Value: "fail"}, "power_timeout": {Value: "2"}}
	fail.Retries = 0
	if out := r.Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{fail}}, "m30", ""); out.Success || out.ExitCode != 1 {
		t.Errorf("type=fail: %+v, want a failure with exit 1", out)
	}
	slow := d
	slow.Params = map[string]spec.FenceParam{"type": {Value: "file"}, "status_file": {Value: state}, "delay": {Value: "5"}}
	slow.Timeout, slow.Retries = 2*time.Second, 0
	if out := r.Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{slow}}, "m30", ""); out.Success || !strings.Contains(out.Err.Error(), "no answer within") {
		t.Errorf("a delay beyond the timeout: %+v, want a timeout failure", out)
	}
}

// TestAgentsOnlyFromAllowedDirectories: the node's setting decides which
// programs a spec's fence device may run (they get the spec's options on
// standard input as root): one outside the allowed directories, or not
// named fence_*, such as a shell, is not run.
func TestAgentsOnlyFromAllowedDirectories(t *testing.T) {
	path, dir := agent(t, []string{"plug"}, `exit 0`)
	d := device("d", path, map[string]string{"m30": ""})
	out := NewRunner(Config{}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
	if out.Success || out.Err == nil || !strings.Contains(out.Err.Error(), "is not in a directory this node allows for fence agents (--fence-agent-dir /usr/sbin)") {
		t.Errorf("an agent outside the allowed directories: %+v", out)
	}
	if runs(t, dir) != 0 {
		t.Error("the refused agent ran")
	}
	shell := NewRunner(Config{Dirs: []string{"/bin"}})
	if err := shell.CheckDevice(spec.FenceDevice{Agent: "/bin/sh"}); err == nil || !strings.Contains(err.Error(), "fence agents must be named fence_*") {
		t.Errorf("a shell as a fence agent: %v", err)
	}
	if err := NewRunner(Config{}).CheckDevice(spec.FenceDevice{Agent: "fence_dummy"}); err != nil {
		t.Errorf("Debian's fence_dummy in /usr/sbin: %v", err)
	}
	if err := NewRunner(Config{}).CheckDevice(spec.FenceDevice{Agent: "fence_nonesuch"}); err == nil || !strings.Contains(err.Error(), "looked in /usr/sbin") {
		t.Errorf("a missing agent: %v", err)
	}
}

// TestDangerousOptionsAndSecretFiles: options that would let a spec run or
// write anything as root are not passed, whatever the log holds, and a
// secret is read only from the node's secret directories: a spec cannot
// send the gossip key to a device it chose.
func TestDangerousOptionsAndSecretFiles(t *testing.T) {
	path, dir := agent(t, []string{"plug"}, `exit 0`)
	for _, k := range []string{"passwd_script", "ssh_path", "ssh_options", "debug", "openrc"} {
		d := device("d", path, map[string]string{"m30": ""})
		d.Params = map[string]spec.FenceParam{k: {Value: "touch /tmp/owned"}}
		out := runnerFor(spec.Fencing{Devices: []spec.FenceDevice{d}}).Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", "")
		if out.Success || out.Err == nil || !strings.Contains(out.Err.Error(), "option "+k+": not passed to fence agents") {
			t.Errorf("option %s: %+v", k, out)
		}
	}
	if runs(t, dir) != 0 {
		t.Error("an agent ran with a refused option")
	}
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := device("d", path, map[string]string{"m30": ""})
	d.Params = map[string]spec.FenceParam{"password": {File: key}}
	r := NewRunner(Config{Dirs: []string{dir}}) // the default secret directory
	if err := r.CheckDevice(d); err == nil || !strings.Contains(err.Error(), "is not in a directory this node reads fence secrets from (--fence-secret-dir /etc/raftlb/secrets)") {
		t.Errorf("a secret outside the secret directories: %v", err)
	}
	if out := r.Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{d}}, "m30", ""); out.Success || runs(t, dir) != 0 {
		t.Errorf("fenced with a secret read from outside: %+v", out)
	}
}

// TestFenceAgentsRunAsTheFenceUser: with a fence user the agent (its
// metadata query too) runs as that user, the secret still reaching it on
// stdin though the user could not read the file; an agent the user could
// not run is refused when the device is checked, not at fence time.
func TestFenceAgentsRunAsTheFenceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	dir, err := os.MkdirTemp("", "raftlb-fence-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fence_whoami")
	script := `#!/bin/sh
in=$(cat)
case "$in" in action=metadata*) echo '<resource-agent name="fence_whoami"><parameters><parameter name="plug"/></parameters></resource-agent>'; exit 0;; esac
echo "uid $(id -u) gid $(id -g)"
case "$in" in *password=hunter2*) echo "got the secret";; esac
exit 0
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "pass") // 0700 directory: nobody cannot read it
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := device("pdu", path, map[string]string{"m30": "3"})
	d.Params = map[string]spec.FenceParam{"password": {File: secret}}
	f := spec.Fencing{Devices: []spec.FenceDevice{d}}
	r := NewRunner(Config{Dirs: []string{dir}, SecretDirs: []string{filepath.Dir(secret)}, User: nobody})
	if err := r.CheckDevice(d); err != nil {
		t.Fatalf("a device the fence user can run: %v", err)
	}
	out := r.Fence(context.Background(), f, "m30", "")
	if !out.Success || !strings.Contains(out.Output, "uid 65534 gid 65534") || !strings.Contains(out.Output, "got the secret") {
		t.Errorf("outcome %+v, want the agent run as nobody with the secret on stdin", out)
	}

	private, _ := agent(t, nil, "exit 0") // in a 0700 directory
	pd := device("private", private, map[string]string{"m30": "3"})
	pr := NewRunner(Config{Dirs: []string{filepath.Dir(private)}, User: nobody})
	if err := pr.CheckDevice(pd); err == nil || !strings.Contains(err.Error(), "uid 65534 (the agent's --fence-user) cannot enter directory") {
		t.Errorf("an agent nobody cannot reach: %v, want it refused naming --fence-user", err)
	}
	if out := pr.Fence(context.Background(), spec.Fencing{Devices: []spec.FenceDevice{pd}}, "m30", ""); out.Success {
		t.Errorf("fenced with an agent the fence user cannot run: %+v", out)
	}
}
