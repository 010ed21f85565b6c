package fencing

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/raftlb/raftlb/internal/procrun"
	"github.com/raftlb/raftlb/spec"
)

// Config sets up a Runner. Every field may be left zero.
type Config struct {
	Logger *slog.Logger
	// Dirs are the directories fence agents may come from, the node's
	// own setting (the agent's --fence-agent-dir; default /usr/sbin, where
	// Debian's fence-agents installs them): a device's agent runs only if
	// it is a program named fence_* directly in one of them, named by its
	// name or its absolute path (procrun.Allow).
	Dirs []string
	// SecretDirs are the directories a device's {file: …} options may be
	// read from (the agent's --fence-secret-dir; default
	// /etc/raftlb/secrets): the DC sends what it reads to the device, so a
	// spec must not name any file.
	SecretDirs []string
	// ReadFile reads a secret parameter's file (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
	// User runs the fence agents (the agent's --fence-user); nil: the
	// agent's own user (root, as Pacemaker runs them). Agents that talk to
	// a device over the network (fence_ipmilan, fence_apc, fence_virsh,
	// …) need no root; fence_scsi and fence_sbd do. Secret files are read
	// by the agent itself and reach the program on its stdin.
	User *syscall.Credential
}

// Runner runs fence agents.
type Runner struct {
	logger   *slog.Logger
	allow    procrun.Allow
	secrets  []string
	readFile func(string) ([]byte, error)
	user     *syscall.Credential

	mu      sync.Mutex
	rnd     *rand.Rand
	hostArg map[string]string // agent path → "plug", "port" or "" (none), from its metadata
}

// NewRunner returns a Runner.
func NewRunner(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Dirs) == 0 {
		cfg.Dirs = []string{DefaultAgentDir}
	}
	if len(cfg.SecretDirs) == 0 {
		cfg.SecretDirs = []string{DefaultSecretDir}
	}
	if cfg.ReadFile == nil {
		cfg.ReadFile = os.ReadFile
	}
	return &Runner{
		logger: cfg.Logger.With("component", "fencing"), readFile: cfg.ReadFile, user: cfg.User,
		allow:   procrun.Allow{What: "fence agents", Flag: "--fence-agent-dir", Dirs: slices.Clone(cfg.Dirs), Prefix: "fence_"},
		secrets: slices.Clone(cfg.SecretDirs),
		rnd:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))),
		hostArg: map[string]string{},
	}
}

// Outcome is how a fencing went.
type Outcome struct {
	Success bool
	// Level is the level that succeeded, or the last one tried; Device
	// the device that last ran.
	Level  int
	Device string
	// Attempts counts every run of a fencing action, all levels and
	// retries.
	Attempts int
	ExitCode int
	Duration time.Duration
	// Output is the end of the last run's output, bounded, secrets
	// masked.
	Output string
	// Err says why it failed.
	Err error
}

// Fence fences node with f's devices, level by level. action overrides
// the devices' own (off or reboot) when not empty.
func (r *Runner) Fence(ctx context.Context, f spec.Fencing, node, action string) Outcome {
	start := time.Now()
	levels := f.LevelsFor(node)
	out := Outcome{ExitCode: -1}
	if len(levels) == 0 {
		out.Err = fmt.Errorf("no fence device fences %s", node)
		return out
	}
	var failures []string
	for i, level := range levels {
		out.Level = i + 1
		ok := true
		for _, d := range level {
			act := cmp(action, d.Action)
			out.Device = d.Name
			if !r.delay(ctx, d) {
				out.Err, out.Duration = ctx.Err(), time.Since(start)
				return out
			}
			res := r.try(ctx, d, node, act, &out.Attempts)
			out.ExitCode, out.Output = res.code, res.output
			if res.err != nil {
				failures = append(failures, fmt.Sprintf("level %d device %s: %v", i+1, d.Name, res.err))
				r.logger.Error("fence device failed", "node", node, "level", i+1, "device", d.Name, "action", act, "err", res.err)
				ok = false
				break
			}
			r.logger.Info("fence device succeeded", "node", node, "level", i+1, "device", d.Name, "action", act)
		}
		if ok {
			out.Success, out.Duration = true, time.Since(start)
			return out
		}
		if ctx.Err() != nil {
			break
		}
	}
	out.Duration = time.Since(start)
	out.Err = fmt.Errorf("fencing %s failed: %s", node, strings.Join(failures, "; "))
	return out
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// delay waits the device's random delay (against fence races: two sides
// of a split fencing each other at once).
func (r *Runner) delay(ctx context.Context, d spec.FenceDevice) bool {
	if d.DelayMax <= 0 {
		return ctx.Err() == nil
	}
	r.mu.Lock()
	wait := d.DelayMin + time.Duration(r.rnd.Int64N(int64(d.DelayMax-d.DelayMin)+1))
	r.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type result struct {
	code   int
	output string
	err    error
}

// try runs the fencing action on d, with its retries.
func (r *Runner) try(ctx context.Context, d spec.FenceDevice, node, action string, attempts *int) result {
	var res result
	for n := 0; n <= d.Retries; n++ {
		*attempts++
		res = r.call(ctx, d, node, action)
		if res.err == nil || ctx.Err() != nil {
			return res
		}
	}
	return res
}

// Status asks d whether node is on: true for exit 0, false for 2, an
// error for anything else.
func (r *Runner) Status(ctx context.Context, d spec.FenceDevice, node string) (bool, error) {
	res := r.call(ctx, d, node, "status")
	switch {
	case res.err == nil:
		return true, nil
	case res.code == 2:
		return false, nil
	}
	return false, res.err
}

// Monitor runs d's monitor action: is the device itself reachable?
func (r *Runner) Monitor(ctx context.Context, d spec.FenceDevice) error {
	return r.call(ctx, d, "", "monitor").err
}

// Validate runs d's validate-all action: are its options right?
func (r *Runner) Validate(ctx context.Context, d spec.FenceDevice) error {
	return r.call(ctx, d, "", "validate-all").err
}

// call runs one action of d for node ("" for a device-wide action).
func (r *Runner) call(ctx context.Context, d spec.FenceDevice, node, action string) result {
	agent, err := r.resolve(d.Agent)
	if err != nil {
		return result{code: -1, err: err}
	}
	opts, secrets, err := r.options(d)
	if err != nil {
		return result{code: -1, err: err}
	}
	lines := []string{"action=" + action}
	if node != "" {
		lines = append(lines, "nodename="+node)
		if arg := r.hostArgument(ctx, agent, d.Timeout); arg != "" {
			lines = append(lines, arg+"="+d.Plug(node))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		lines = append(lines, k+"="+opts[k])
	}
	res := procrun.Run(ctx, procrun.Cmd{Argv: []string{agent}, Stdin: []byte(strings.Join(lines, "\n") + "\n"), Timeout: d.Timeout, Keep: spec.MaxFenceOutput, User: r.user})
	out := mask(res.Tail, secrets)
	switch {
	case res.Err != nil:
		return result{code: -1, output: out, err: res.Err}
	case res.TimedOut:
		return result{code: -1, output: out, err: fmt.Errorf("%s %s: no answer within %s; process group killed", d.Agent, action, d.Timeout)}
	case res.ExitCode != 0:
		return result{code: res.ExitCode, output: out, err: fmt.Errorf("%s %s: exit status %d%s", d.Agent, action, res.ExitCode, lastLine(out))}
	}
	return result{code: 0, output: out}
}

// DefaultAgentDir is where Debian's fence-agents installs the agents;
// DefaultSecretDir where a node keeps the files of fence options.
const (
	DefaultAgentDir  = "/usr/sbin"
	DefaultSecretDir = "/etc/raftlb/secrets"
)

// resolve finds the agent's program, an absolute path as it is, a name in
// the allowed directories, and checks that this node lets it run.
func (r *Runner) resolve(agent string) (string, error) {
	path := agent
	if !filepath.IsAbs(agent) {
		path = ""
		for _, dir := range r.allow.Dirs {
			if p := filepath.Join(dir, agent); fileExists(p) {
				path = p
				break
			}
		}
		if path == "" {
			return "", fmt.Errorf("fence agent %s: %w (looked in %s; is fence-agents installed?)", agent, exec.ErrNotFound, strings.Join(r.allow.Dirs, ", "))
		}
	}
	if err := r.allow.Check(path); err != nil {
		return "", fmt.Errorf("fence agent: %w", err)
	}
	if r.user != nil {
		if err := procrun.RunnableBy(path, r.user, "--fence-user"); err != nil {
			return "", fmt.Errorf("fence agent: %w", err)
		}
	}
	return path, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// CheckDevice says why d may not run on this node, or nil: its agent, its
// options, the files they are read from. The DC asks every node before it
// commits a spec's fence devices.
func (r *Runner) CheckDevice(d spec.FenceDevice) error {
	if _, err := r.resolve(d.Agent); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(d.Params)) {
		if err := r.checkParam(k, d.Params[k]); err != nil {
			return err
		}
	}
	return nil
}

// checkParam refuses an option this node does not pass: a dangerous one
// (spec.DangerousFenceParam), or a file outside the secret directories.
func (r *Runner) checkParam(k string, p spec.FenceParam) error {
	if spec.DangerousFenceParam(k) {
		return fmt.Errorf("option %s: not passed to fence agents (it could run or write anything as root)", k)
	}
	if p.File != "" && !slices.Contains(r.secrets, filepath.Dir(p.File)) {
		return fmt.Errorf("option %s: %s is not in a directory this node reads fence secrets from (--fence-secret-dir %s)", k, p.File, strings.Join(r.secrets, ", "))
	}
	return nil
}

// options are d's parameters with secrets read from their files, and the
// secret values, to mask them in anything shown.
func (r *Runner) options(d spec.FenceDevice) (map[string]string, []string, error) {
	opts := map[string]string{}
	var secrets []string
	for k, p := range d.Params {
		if err := r.checkParam(k, p); err != nil {
			return nil, nil, fmt.Errorf("device %s: %w", d.Name, err)
		}
		if p.File == "" {
			opts[k] = p.Value
			continue
		}
		b, err := r.readFile(p.File)
		if err != nil {
			// The error names the file, never its content.
			return nil, nil, fmt.Errorf("device %s: option %s: %w", d.Name, k, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if strings.ContainsAny(v, "\n\r\x00") {
			return nil, nil, fmt.Errorf("device %s: option %s: %s holds more than one line", d.Name, k, p.File)
		}
		opts[k] = v
		if v != "" {
			secrets = append(secrets, v)
		}
	}
	return opts, secrets, nil
}

// hostArgument is the option the agent takes the node to fence in: plug
// or port, as its metadata lists them (Pacemaker's pcmk_host_argument), or
// none. Asked once per agent.
func (r *Runner) hostArgument(ctx context.Context, agent string, timeout time.Duration) string {
	r.mu.Lock()
	arg, known := r.hostArg[agent]
	r.mu.Unlock()
	if known {
		return arg
	}
	res := procrun.Run(ctx, procrun.Cmd{Argv: []string{agent}, Stdin: []byte("action=metadata\n"), Timeout: min(timeout, 30*time.Second), Keep: 1 << 20, User: r.user})
	names, err := parameterNames([]byte(res.Tail))
	switch {
	case res.ExitCode != 0 || err != nil:
		// Most agents take plug (fencing.py accepts port as its alias).
		r.logger.Warn("fence agent metadata unreadable; passing the node as plug", "agent", agent, "exit", res.ExitCode, "err", err)
		arg = "plug"
	case slices.Contains(names, "plug"):
		arg = "plug"
	case slices.Contains(names, "port"):
		arg = "port"
	}
	r.mu.Lock()
	r.hostArg[agent] = arg
	r.mu.Unlock()
	return arg
}

// parameterNames lists the parameters of an agent's metadata
// (<resource-agent><parameters><parameter name="…">).
func parameterNames(meta []byte) ([]string, error) {
	var doc struct {
		XMLName    xml.Name `xml:"resource-agent"`
		Parameters struct {
			Parameter []struct {
				Name string `xml:"name,attr"`
			} `xml:"parameter"`
		} `xml:"parameters"`
	}
	if err := xml.Unmarshal(meta, &doc); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var names []string
	for _, p := range doc.Parameters.Parameter {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("metadata lists no parameters")
	}
	return names, nil
}

// mask replaces every secret in s, and makes s valid UTF-8 (an agent may
// print binary).
func mask(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, "******")
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if len(s) > spec.MaxFenceOutput {
		s = s[len(s)-spec.MaxFenceOutput:]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}

// lastLine is ": " and the last non-blank line of out, or "".
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			if len(l) > 200 {
				l = strings.ToValidUTF8(l[:200], "") + "…"
			}
			return ": " + l
		}
	}
	return ""
}
