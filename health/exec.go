package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/internal/procrun"
)

// maxStderr bounds what is kept of a check command's standard error; the
// error reports its first line.
const maxStderr = 4 << 10

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
	// No shell, its own process group (a timeout kills whatever the
	// command started, a shell script's curl too), and none of the
	// agent's environment but a fixed PATH.
	r := procrun.Run(ctx, procrun.Cmd{Argv: c.argv, Keep: maxStderr, Env: []string{
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
