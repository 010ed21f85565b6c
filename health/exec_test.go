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
	"testing"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
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

func execCheck(argv ...string) fsm.HealthCheck {
	return fsm.HealthCheck{Type: fsm.CheckExec, Command: argv}
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
	c, err := NewChecker(execCheck(s, pidFile), testkit.DialContext(t))
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
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running after the check timed out", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
