package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// raftlb runs the command line and returns its exit code and output. A
// command that does not return in time fails the test instead of hanging
// it: that is what an agent started despite bad input would do.
func raftlb(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	done := make(chan int, 1)
	go func() { done <- run(args, &out, &errOut) }()
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("raftlb %q did not return within a minute (was an agent started?)", args)
	}
	return code, out.String(), errOut.String()
}

// wantExit runs args and checks the exit code and that stderr contains
// every fragment.
func wantExit(t *testing.T, want int, args []string, fragments ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := raftlb(t, args...)
	if code != want {
		t.Errorf("raftlb %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, stdout, stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(stderr, f) {
			t.Errorf("raftlb %q: stderr lacks %q:\n%s", args, f, stderr)
		}
	}
	return stdout, stderr
}

// shortDir returns a fresh directory whose paths fit in a unix socket
// address (108 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) < 80 {
		return dir
	}
	dir, err := os.MkdirTemp("", "rlb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// missingSocket is an --api address where nothing listens.
func missingSocket(t *testing.T) string {
	return "unix://" + filepath.Join(shortDir(t), "none.sock")
}

func TestNoArgumentsPrintsUsage(t *testing.T) {
	stdout, _ := wantExit(t, 2, nil, "Usage:", "raftlb agent", "raftlb tls cert")
	if stdout != "" {
		t.Errorf("usage went to stdout: %q", stdout)
	}
}

func TestUnknownCommand(t *testing.T) {
	wantExit(t, 2, []string{"frobnicate"}, `unknown command "frobnicate"`, "Usage:")
	// A flag where the command should be is not a command either.
	wantExit(t, 2, []string{"--name", "n1"}, `unknown command "--name"`)
}

func TestHelp(t *testing.T) {
	for _, h := range []string{"help", "-h", "--help", "-help"} {
		code, stdout, stderr := raftlb(t, h)
		if code != 0 {
			t.Errorf("raftlb %s: exit %d, want 0", h, code)
		}
		if !strings.Contains(stdout, "Usage:") || stderr != "" {
			t.Errorf("raftlb %s: want usage on stdout only; stdout %q, stderr %q", h, stdout, stderr)
		}
	}
}

func TestCommandHelp(t *testing.T) {
	for _, cmd := range []string{"agent", "join", "leave", "apply", "status", "keygen"} {
		code, _, stderr := raftlb(t, cmd, "-h")
		if code != 0 {
			t.Errorf("raftlb %s -h: exit %d, want 0", cmd, code)
		}
		if !strings.Contains(stderr, "Usage of raftlb "+cmd) {
			t.Errorf("raftlb %s -h: stderr lacks the flag list:\n%s", cmd, stderr)
		}
	}
	_, _, stderr := raftlb(t, "agent", "-h")
	for _, f := range []string{"-bind", "-data-dir", "-join", "-config", "-raft-leader-lease"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("agent -h does not list %s", f)
		}
	}
}
