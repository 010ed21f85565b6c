package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/raftlb/raftlb/internal/procrun"
)

// maxStderr bounds what is kept of a check command's standard error; the
// error reports its first line.
const maxStderr = 4 << 10

// Exec is how this node runs exec checks, set by its own configuration
// and never by the spec: the directories their programs may come from,
// the user they run as, and how many may run at once.
type Exec struct {
	Allow procrun.Allow
	// User runs the check programs; nil: the agent's own user.
	User  *syscall.Credential
	slots chan struct{}
}

// DefaultExecProcs is how many exec checks may run at once on a node
// unless its configuration says otherwise.
const DefaultExecProcs = 8

// NewExec returns the exec policy of a node: programs from dirs only
// (none: no exec check runs), as user (nil: the agent's user), at most
// maxProcs at once.
func NewExec(dirs []string, user *syscall.Credential, maxProcs int) *Exec {
	if maxProcs < 1 {
		maxProcs = DefaultExecProcs
	}
	return &Exec{
		Allow: procrun.Allow{What: "exec checks", Flag: "--exec-dir", Dirs: slices.Clone(dirs)},
		User:  user, slots: make(chan struct{}, maxProcs),
	}
}

// ErrNotRun says a check's program was not run (this node's policy
// refused it, or no slot came free in time): the probe says nothing about
// the server, which keeps its state.
var ErrNotRun = errors.New("not run")

// Permit says why this node would not run path as an exec check, or nil.
// A nil policy runs none.
func (e *Exec) Permit(path string) error {
	if e == nil {
		e = NewExec(nil, nil, 0)
	}
	if err := e.Allow.Check(path); err != nil {
		return err
	}
	if e.User != nil {
		return procrun.RunnableBy(path, e.User, "--exec-user")
	}
	return nil
}

// execChecker is keepalived's MISC_CHECK and ldirectord's
// checktype=external: run a command, exit status 0 means healthy.
type execChecker struct {
	argv   []string
	policy *Exec
}

func newExecChecker(argv []string, policy *Exec) (*execChecker, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("exec check needs a command")
	}
	if policy == nil {
		policy = NewExec(nil, nil, 0) // runs nothing
	}
	return &execChecker{argv: append([]string(nil), argv...), policy: policy}, nil
}

func (c *execChecker) Check(ctx context.Context, t Target) error {
	// The node's policy, checked on every run: the program may have
	// changed since the spec was applied.
	if err := c.policy.Permit(c.argv[0]); err != nil {
		return fmt.Errorf("%w: %w", ErrNotRun, err)
	}
	select {
	case c.policy.slots <- struct{}{}:
		defer func() { <-c.policy.slots }()
	case <-ctx.Done():
		return fmt.Errorf("%w: %d exec checks were already running on this node until the timeout (the agent's --exec-max-procs)", ErrNotRun, cap(c.policy.slots))
	}
	// No shell, its own process group (a timeout kills whatever the
	// command started, a shell script's curl too), and none of the
	// agent's environment but a fixed PATH.
	r := procrun.Run(ctx, procrun.Cmd{Argv: c.argv, Keep: maxStderr, User: c.policy.User, Env: []string{
		procrun.DefaultPath,
		"RAFTLB_RS_ADDR=" + addrString(t.Addr),
		"RAFTLB_RS_PORT=" + strconv.Itoa(int(t.Addr.Port())),
		"RAFTLB_VIP=" + addrString(t.VIP),
		"RAFTLB_VIP_PORT=" + strconv.Itoa(int(t.VIP.Port())),
	}})
	var what string
	switch {
	case r.Err != nil:
		return r.Err
	case r.TimedOut:
		what = "timed out; process group killed"
	case r.ExitCode == 0:
		return nil
	case r.ExitCode < 0:
		what = "killed by a signal"
	default:
		what = fmt.Sprintf("exit status %d", r.ExitCode)
	}
	if line := firstLine(r.StderrHead); line != "" {
		return fmt.Errorf("%s: %s", what, line)
	}
	return errors.New(what)
}

// addrString is ap's address, or empty for a missing one.
func addrString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ""
	}
	return ap.Addr().String()
}

// maxErrorLine bounds the stderr line quoted in an error.
const maxErrorLine = 200

// firstLine is the first non-blank line of s, trimmed and bounded.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(line) > maxErrorLine {
			line = strings.ToValidUTF8(line[:maxErrorLine], "") + "…"
		}
		return line
	}
	return ""
}
