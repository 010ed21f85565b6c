// Package procrun runs the programs an operator's spec names — health
// checks, fence agents — the one way raftlb runs anything: no shell, a
// fixed working directory and environment, a process group of its own that
// a timeout kills whole (a script's children included), and output kept
// within bounds however much the program writes.
package procrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// DefaultPath is the whole PATH a program sees unless told otherwise: the
// agent's own environment (secrets, proxies, a developer's PATH) is not
// passed on.
const DefaultPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// waitDelay bounds the wait for a killed program's output pipes, which a
// grandchild that left the process group could hold open.
const waitDelay = time.Second

// Cmd is one run.
type Cmd struct {
	Argv []string
	// Env is the program's whole environment; nil means DefaultPath only.
	Env []string
	// Stdin is written to the program's standard input, then closed.
	Stdin []byte
	// Timeout ends the run (and kills the group) if the program is not
	// done by then; 0 means only ctx does.
	Timeout time.Duration
	// User, when set, runs the program as this user and group (with no
	// supplementary groups) instead of the agent's own.
	User *syscall.Credential
	// Keep bounds the output kept: the first Keep bytes of standard
	// error, and the last Keep bytes of standard output and error
	// together. Default 4 KiB.
	Keep int
}

// Result is what a run came to.
type Result struct {
	// ExitCode is the program's exit status; -1 when it did not exit by
	// itself (killed, timed out, never started).
	ExitCode int
	// TimedOut says the timeout (or ctx) ended the run.
	TimedOut bool
	// StderrHead is the start of standard error; Tail the end of standard
	// output and error as they interleaved.
	StderrHead string
	Tail       string
	// Err says why the program could not be started.
	Err error
}

// Run runs c and waits for it.
func Run(ctx context.Context, c Cmd) Result {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return Result{ExitCode: -1, Err: errors.New("no program to run")}
	}
	if c.Keep <= 0 {
		c.Keep = 4 << 10
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = "/" // not the agent's working directory
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{DefaultPath}
	}
	cmd.Stdin = bytes.NewReader(c.Stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.User}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = waitDelay
	tail := &tailBuffer{max: c.Keep}
	head := &headBuffer{max: c.Keep}
	cmd.Stdout = tail
	cmd.Stderr = multi{head, tail}
	err := cmd.Run()
	r := Result{ExitCode: -1, StderrHead: head.buf.String(), Tail: tail.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.TimedOut = true
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &exitErr):
		r.ExitCode = exitErr.ExitCode() // -1 for a signal
	default:
		r.Err = fmt.Errorf("run %s: %w", c.Argv[0], err)
	}
	return r
}

type multi []interface{ Write([]byte) (int, error) }

func (m multi) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

// headBuffer keeps the first max bytes written to it and discards the
// rest, so a chatty program cannot fill memory and never blocks on a full
// pipe.
type headBuffer struct {
	max int
	buf bytes.Buffer
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it. Standard output and
// error are copied into it by two goroutines.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
