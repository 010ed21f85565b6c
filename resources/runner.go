package resources

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftlb/raftlb/internal/procrun"
	"github.com/raftlb/raftlb/spec"
)

// Action is what a resource is asked to do.
type Action string

// The actions raftlb runs (OCF's names).
const (
	Start   Action = "start"
	Stop    Action = "stop"
	Monitor Action = "monitor"
)

// The OCF exit codes raftlb tells apart; anything else is a failure.
const (
	OCFSuccess    = 0
	OCFNotRunning = 7
)

// DefaultOCFRoot is where Debian's resource-agents installs the agents.
const DefaultOCFRoot = "/usr/lib/ocf"

// maxOutput is how much of an action's output is kept for logs and status.
const maxOutput = 2 << 10

// Config is a node's own say over the spec's resources.
type Config struct {
	Logger *slog.Logger
	// Node is this node's name, passed to every run.
	Node string
	// OCFRoot is OCF_ROOT: agents run from OCFRoot/resource.d/PROVIDER
	// only. Empty means DefaultOCFRoot.
	OCFRoot string
	// HookDirs are the directories a command may come from (the agent's
	// --hook-dir); none allows no command.
	HookDirs []string
}

// Runner runs one resource action at a time, as the caller orders.
type Runner struct {
	cfg Config
}

// NewRunner returns a runner for cfg.
func NewRunner(cfg Config) *Runner {
	if cfg.OCFRoot == "" {
		cfg.OCFRoot = DefaultOCFRoot
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg}
}

// Result is what one action came to.
type Result struct {
	Code     int // the exit status; -1 when the program did not exit by itself
	TimedOut bool
	Output   string // the end of its output
	Took     time.Duration
	Err      error // nil: success (for monitor: running; exit 7 is "not running")
}

// program is the argv that runs r (without the action).
func (x *Runner) program(r spec.Resource) ([]string, error) {
	if provider, typ, ok := r.OCF(); ok {
		return []string{filepath.Join(x.cfg.OCFRoot, "resource.d", provider, typ)}, nil
	}
	if len(r.Command) == 0 {
		return nil, fmt.Errorf("resource %s: neither an OCF agent nor a command", r.Name)
	}
	return r.Command, nil
}

// allow is the node's rule for r's program.
func (x *Runner) allow(r spec.Resource) procrun.Allow {
	if provider, _, ok := r.OCF(); ok {
		return procrun.Allow{What: "OCF resource agents", Flag: "--ocf-root", Dirs: []string{filepath.Join(x.cfg.OCFRoot, "resource.d", provider)}}
	}
	return procrun.Allow{What: "resource hooks", Flag: "--hook-dir", Dirs: x.cfg.HookDirs}
}

// Check says why r's program may not run on this node, or nil: an OCF
// agent must be in the node's OCF root, a command in one of its hook
// directories, both owned and writable by root only.
func (x *Runner) Check(r spec.Resource) error {
	argv, err := x.program(r)
	if err != nil {
		return err
	}
	if err := x.allow(r).Check(argv[0]); err != nil {
		if _, _, ok := r.OCF(); ok {
			return fmt.Errorf("resource %s (%s): %w", r.Name, r.Agent, err)
		}
		return fmt.Errorf("resource %s: %w", r.Name, err)
	}
	return nil
}

// Run runs action on r within the action's timeout (a monitor that
// recurs says its interval), and says how it went. ctx ends the run early
// (the process group killed) only when it is cancelled.
func (x *Runner) Run(ctx context.Context, r spec.Resource, action Action) Result {
	res := Result{Code: -1}
	if err := x.Check(r); err != nil {
		res.Err = err
		return res
	}
	argv, _ := x.program(r)
	timeout := r.StartTimeout
	switch action {
	case Stop:
		timeout = r.StopTimeout
	case Monitor:
		timeout = r.MonitorTimeout
	}
	cmd := procrun.Cmd{Timeout: timeout, Keep: maxOutput}
	if provider, typ, ok := r.OCF(); ok {
		cmd.Argv = append(argv, string(action))
		cmd.Env = x.ocfEnv(r, provider, typ, action, timeout)
	} else {
		cmd.Argv = append(append([]string{}, argv...), string(action))
		cmd.Env = []string{procrun.DefaultPath, "RAFTLB_NODE=" + x.cfg.Node, "RAFTLB_RESOURCE=" + r.Name,
			"RAFTLB_ACTION=" + string(action), "RAFTLB_TIMEOUT_MS=" + strconv.FormatInt(timeout.Milliseconds(), 10)}
	}
	start := time.Now()
	out := procrun.Run(ctx, cmd)
	res.Took, res.Code, res.TimedOut, res.Output = time.Since(start), out.ExitCode, out.TimedOut, strings.TrimSpace(out.Tail)
	what := fmt.Sprintf("resource %s: %s %s", r.Name, r.Kind(), action)
	switch {
	case out.Err != nil:
		res.Err = fmt.Errorf("%s: %w", what, out.Err)
	case out.TimedOut:
		res.Err = fmt.Errorf("%s: no answer within %s; process group killed", what, timeout)
	case out.ExitCode == OCFSuccess:
	case out.ExitCode == OCFNotRunning && action == Stop:
		// Stopping what is not running has succeeded (Pacemaker reads
		// a stop's "not running" the same way).
	case out.ExitCode == OCFNotRunning && action == Monitor:
		res.Err = fmt.Errorf("%s: not running (exit 7)", what)
	default:
		res.Err = fmt.Errorf("%s: exit status %d (%s)%s", what, out.ExitCode, ocfCodeName(out.ExitCode), lastLine(res.Output))
	}
	return res
}

// ocfEnv is the environment Pacemaker gives an OCF agent, and no more.
func (x *Runner) ocfEnv(r spec.Resource, provider, typ string, action Action, timeout time.Duration) []string {
	interval := time.Duration(0)
	if action == Monitor {
		interval = r.MonitorInterval
	}
	env := []string{
		procrun.DefaultPath,
		"OCF_ROOT=" + x.cfg.OCFRoot,
		"OCF_FUNCTIONS_DIR=" + filepath.Join(x.cfg.OCFRoot, "lib", "heartbeat"),
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=1",
		"OCF_RESOURCE_INSTANCE=" + r.Name,
		"OCF_RESOURCE_TYPE=" + typ,
		"OCF_RESOURCE_PROVIDER=" + provider,
		"OCF_RESKEY_CRM_meta_timeout=" + strconv.FormatInt(timeout.Milliseconds(), 10),
		"OCF_RESKEY_CRM_meta_interval=" + strconv.FormatInt(interval.Milliseconds(), 10),
		"OCF_RESKEY_CRM_meta_on_node=" + x.cfg.Node,
	}
	for k, v := range r.Params {
		env = append(env, "OCF_RESKEY_"+k+"="+v)
	}
	return env
}

// ocfCodeName names an OCF exit code.
func ocfCodeName(code int) string {
	switch code {
	case 1:
		return "generic error"
	case 2:
		return "invalid argument"
	case 3:
		return "unimplemented"
	case 4:
		return "insufficient privileges"
	case 5:
		return "not installed"
	case 6:
		return "not configured"
	case 7:
		return "not running"
	}
	return "failure"
}

// lastLine is ": LINE" for the last line of out, or "".
func lastLine(out string) string {
	if out == "" {
		return ""
	}
	lines := strings.Split(out, "\n")
	return ": " + strings.TrimSpace(lines[len(lines)-1])
}
