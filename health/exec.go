package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// execPath is the whole PATH an exec check sees: the agent's own
// environment (secrets, proxies, a developer's PATH) is not passed on.
const execPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// maxStderr bounds what is kept of a check command's standard error; the
// error reports its first line.
const maxStderr = 4 << 10

// execWaitDelay bounds the wait for a killed command's output pipes, which
// a grandchild that left the process group could hold open.
const execWaitDelay = time.Second

// execChecker is keepalived's MISC_CHECK and ldirectord's
// checktype=external: run a command, exit status 0 means healthy.
type execChecker struct {
	argv []string
}

func newExecChecker(argv []string) (*execChecker, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("exec check needs a command")
	}
	return &execChecker{argv: append([]string(nil), argv...)}, nil
}

func (c *execChecker) Check(ctx context.Context, t Target) error {
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Dir = "/" // not the agent's working directory
	cmd.Env = []string{
		execPath,
		"RAFTLB_RS_ADDR=" + addrString(t.Addr),
		"RAFTLB_RS_PORT=" + strconv.Itoa(int(t.Addr.Port())),
		"RAFTLB_VIP=" + addrString(t.VIP),
		"RAFTLB_VIP_PORT=" + strconv.Itoa(int(t.VIP.Port())),
	}
	// Its own process group, so a timeout kills whatever the command
	// started (a shell script's curl) and not just the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = execWaitDelay
	stderr := &headBuffer{max: maxStderr}
	cmd.Stderr = stderr

	err := cmd.Run()
	if err == nil {
		return nil
	}
	var what string
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		what = "timed out; process group killed"
	case errors.As(err, &exitErr):
		what = exitErr.Error() // "exit status 1", "signal: segmentation fault"
	default:
		return fmt.Errorf("run %s: %w", c.argv[0], err)
	}
	if line := stderr.firstLine(); line != "" {
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

// headBuffer keeps the first max bytes written to it and discards the
// rest, so a chatty command cannot fill memory and never blocks on a full
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

// firstLine is the first non-blank line, trimmed and bounded.
func (b *headBuffer) firstLine() string {
	for line := range strings.Lines(b.buf.String()) {
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
