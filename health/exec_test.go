package health

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// script writes an executable shell script into a fresh directory.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

var execTarget = Target{
	Addr: netip.MustParseAddrPort("172.95.69.30:3128"),
	VIP:  netip.MustParseAddrPort("172.95.69.100:3128"),
}

func execCheck(argv ...string) spec.HealthCheck {
	return spec.HealthCheck{Type: spec.CheckExec, Command: argv}
}

func TestExecCheckExitStatus(t *testing.T) {
	ok := script(t, "exit 0\n")
	wantErr(t, "exit 0", check(t, execCheck(ok), execTarget), "")

	fail := script(t, "echo >&2\necho '  backend says no  ' >&2\necho second line >&2\nexit 3\n")
	err := check(t, execCheck(fail), execTarget)
	if err == nil || err.Error() != "exit status 3: backend says no" {
		t.Errorf("exit 3: %v, want %q", err, "exit status 3: backend says no")
	}

	quiet := script(t, "exit 1\n")
	if err := check(t, execCheck(quiet), execTarget); err == nil || err.Error() != "exit status 1" {
		t.Errorf("exit 1 without stderr: %v, want %q", err, "exit status 1")
	}

	// A chatty command: the quoted line is bounded, the rest discarded.
	chatty := script(t, "head -c 100000 /dev/zero | tr '\\0' x >&2\nexit 1\n")
	err = check(t, execCheck(chatty), execTarget)
	if err == nil || len(err.Error()) > 300 || !strings.HasPrefix(err.Error(), "exit status 1: xxx") {
		t.Errorf("chatty command: %d-byte error %.80q…", len(err.Error()), err)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	wantErr(t, "missing command", check(t, execCheck(missing), execTarget), "no such file or directory")
}

func TestExecCheckEnvironmentAndArguments(t *testing.T) {
	t.Setenv("RAFTLB_LEAK_TEST", "leaked")
	out := filepath.Join(t.TempDir(), "out")
	s := script(t, `{ env; echo "arg1=$1"; echo "arg2=$2"; echo "pwd=$(pwd)"; } > "$3"`+"\n")
	if err := check(t, execCheck(s, "a b", "$HOME", out), execTarget); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, want := range []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"RAFTLB_RS_ADDR=172.95.69.30",
		"RAFTLB_RS_PORT=3128",
		"RAFTLB_VIP=172.95.69.100",
		"RAFTLB_VIP_PORT=3128",
		"arg1=a b",   // no shell splitting
		"arg2=$HOME", // no shell expansion
		"pwd=/",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("the command did not see %q:\n%s", want, data)
		}
	}
	for _, line := range lines {
		if strings.HasPrefix(line, "RAFTLB_LEAK_TEST=") || strings.HasPrefix(line, "HOME=") {
			t.Errorf("the agent's environment leaked into the command: %q", line)
		}
	}
}

func TestExecCheckTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The shell starts a grandchild and waits: killing only the shell
	// would leave the sleep running.
	s := script(t, `echo "waiting for the backend" >&2
sleep 300 &
echo $! > "$1"
wait
`)
	c, err := NewChecker(execCheck(s, pidFile), testkit.DialContext(t), allowing(execCheck(s)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = c.Check(ctx, execTarget)
	if err == nil || err.Error() != "timed out; process group killed: waiting for the backend" {
		t.Fatalf("sleeping command: %v, want a timeout with the stderr line", err)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the check returned before its deadline: %v", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not start its grandchild within the timeout: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	// The grandchild is killed with its group; it may linger as a zombie
	// until init reaps it.
	testkit.WaitFor(t, "the grandchild "+strconv.Itoa(pid)+" killed with the check's process group", func() bool { return !alive(pid) })
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...; comm may contain spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestExecCheckOnlyFromAllowedDirectories: the node's policy decides,
// on every run: a program outside the allowed directories, one that
// group or others may write, or any program on a node that allows none,
// is not run, and the error says why.
func TestExecCheckOnlyFromAllowedDirectories(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	s := script(t, `touch "$1"`+"\n")
	run := func(policy *Exec) error {
		c, err := NewChecker(execCheck(s, marker), testkit.DialContext(t), policy)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		return c.Check(ctx, execTarget)
	}
	wantErr(t, "no directory allowed", run(NewExec(nil, nil, 0)), "this node allows no exec checks (the agent's --exec-dir DIR")
	wantErr(t, "no policy at all", run(nil), "this node allows no exec checks")
	wantErr(t, "another directory", run(NewExec([]string{t.TempDir()}, nil, 0)), "is not in a directory this node allows for exec checks (--exec-dir")
	if err := os.Chmod(s, 0o757); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "writable by others", run(NewExec([]string{filepath.Dir(s)}, nil, 0)), "is writable by group or others (mode 0757)")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a refused program ran")
	}
	if err := os.Chmod(s, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(NewExec([]string{filepath.Dir(s)}, nil, 0)); err != nil {
		t.Fatalf("the allowed program: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the allowed program did not run: %v", err)
	}
}

// TestExecCheckRunsAsTheConfiguredUser: with a user set, the program runs
// with its uid and gid, not the agent's (root here).
func TestExecCheckRunsAsTheConfiguredUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	// The user must reach the program: a directory open to all.
	dir, err := os.MkdirTemp("", "raftlb-exec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(s, []byte("#!/bin/sh\necho \"$(id -u):$(id -g)\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := NewChecker(execCheck(s), testkit.DialContext(t), NewExec([]string{dir}, &syscall.Credential{Uid: 65534, Gid: 65534}, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	wantErr(t, "as nobody", c.Check(ctx, execTarget), "exit status 1: 65534:65534")
}

// TestExecChecksAreCapped: with one slot, a second check does not start
// while the first runs, and says so when its timeout comes.
func TestExecChecksAreCapped(t *testing.T) {
	gate, started := filepath.Join(t.TempDir(), "gate"), filepath.Join(t.TempDir(), "started")
	slow := script(t, `touch "$2"; while [ ! -e "$1" ]; do sleep 0.01; done`+"\n")
	policy := NewExec([]string{filepath.Dir(slow)}, nil, 1)
	first, err := NewChecker(execCheck(slow, gate, started), testkit.DialContext(t), policy)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		done <- first.Check(ctx, execTarget)
	}()
	testkit.WaitFor(t, "the first check running", func() bool { _, err := os.Stat(started); return err == nil })
	second, err := NewChecker(execCheck(slow, gate, started), testkit.DialContext(t), policy)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	wantErr(t, "second check", second.Check(ctx, execTarget), "1 exec checks were already running on this node")
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("the first check: %v", err)
	}
}

// TestRefusedCheckKeepsTheServersState: a check this node will not run
// says nothing about the server: it stays up (as a new DC keeps the
// servers it inherits), no change is reported, and its state says why it
// is not checked.
func TestRefusedCheckKeepsTheServersState(t *testing.T) {
	s := script(t, "exit 1\n") // would fail, were it run
	var changes atomic.Int32
	m := NewMonitor(MonitorConfig{Logger: testkit.Discard(), Exec: NewExec(nil, nil, 0), OnChange: func(Key, State) { changes.Add(1) }})
	t.Cleanup(m.Stop)
	k := Key{Server: execTarget.Addr}
	hc := execCheck(s)
	hc.Interval, hc.Timeout, hc.Rise, hc.Fall, hc.OnFail = 10*time.Millisecond, time.Second, 1, 1, spec.OnFailRemove
	m.Set(map[Key]Spec{k: {Check: hc, Target: execTarget}})
	testkit.WaitFor(t, "the refusal in the server's state", func() bool {
		return strings.HasPrefix(m.States()[k].LastError, "not run: ")
	})
	if st := m.States()[k]; !st.Up || changes.Load() != 0 {
		t.Errorf("state %+v after %d changes, want it up and unchanged", st, changes.Load())
	}
}

// TestPermitChecksTheExecUser: a program the exec user could not reach is
// refused up front, not run to fail as a down server.
func TestPermitChecksTheExecUser(t *testing.T) {
	s := script(t, "exit 0\n") // in a 0700 directory of the test's user
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	if os.Geteuid() == 65534 {
		t.Skip("runs as nobody")
	}
	err := NewExec([]string{filepath.Dir(s)}, nobody, 0).Permit(s)
	if err == nil || !strings.Contains(err.Error(), "uid 65534 (the agent's --exec-user) cannot enter directory") {
		t.Errorf("a program in a private directory for nobody: %v", err)
	}
	if err := NewExec([]string{filepath.Dir(s)}, nil, 0).Permit(s); err != nil {
		t.Errorf("the same program as the agent's user: %v", err)
	}
}
