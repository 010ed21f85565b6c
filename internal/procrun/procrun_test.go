package procrun

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunExitStdinAndEnvironment(t *testing.T) {
	p := script(t, `cat; echo "env: $(env | sort | tr '\n' ' ')"; echo oops >&2; exit 3`)
	r := Run(context.Background(), Cmd{Argv: []string{p}, Stdin: []byte("action=off\nplug=1\n")})
	if r.ExitCode != 3 || r.TimedOut || r.Err != nil {
		t.Fatalf("result %+v, want exit 3", r)
	}
	if !strings.Contains(r.Tail, "action=off\nplug=1\n") || r.StderrHead != "oops\n" {
		t.Errorf("tail %q, stderr %q", r.Tail, r.StderrHead)
	}
	// Only the PATH given, and not the agent's own environment.
	if !strings.Contains(r.Tail, "env: PATH=/usr/sbin:/usr/bin:/sbin:/bin PWD=/ SHLVL=") && !strings.Contains(r.Tail, "env: PATH=/usr/sbin:/usr/bin:/sbin:/bin PWD=/") {
		t.Errorf("environment %q", r.Tail)
	}
	if strings.Contains(r.Tail, "HOME=") {
		t.Errorf("the agent's environment leaked: %q", r.Tail)
	}
}

// TestRunTimeoutKillsTheGroup: a program that started children is killed
// with them when the timeout comes.
func TestRunTimeoutKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	p := script(t, `sleep 300 & echo $! > `+pidFile+`; wait`)
	start := time.Now()
	r := Run(context.Background(), Cmd{Argv: []string{p}, Timeout: 200 * time.Millisecond})
	if !r.TimedOut || r.ExitCode != -1 {
		t.Fatalf("result %+v, want a timeout", r)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Run took %s", time.Since(start))
	}
	testkit.WaitGone(t, pidFile, "the child")
}

// TestRunBoundsOutput: megabytes of output, binary included, are kept to
// the bound, the end of it.
func TestRunBoundsOutput(t *testing.T) {
	p := script(t, `head -c 3000000 /dev/urandom; printf 'THE END'`)
	r := Run(context.Background(), Cmd{Argv: []string{p}, Keep: 1024})
	if r.ExitCode != 0 || len(r.Tail) != 1024 || !strings.HasSuffix(r.Tail, "THE END") {
		t.Fatalf("exit %d, tail of %d bytes ending %q", r.ExitCode, len(r.Tail), r.Tail[max(len(r.Tail)-10, 0):])
	}
}

func TestRunCannotStart(t *testing.T) {
	r := Run(context.Background(), Cmd{Argv: []string{"/nonexistent/fence_x"}})
	if r.Err == nil || r.ExitCode != -1 {
		t.Fatalf("result %+v, want a start error", r)
	}
	if r := Run(context.Background(), Cmd{}); r.Err == nil {
		t.Fatal("an empty argv ran")
	}
}
