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
	"time"
	"unicode/utf8"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/procrun"
)

// Config sets up a Runner. Every field may be left zero.
type Config struct {
	Logger *slog.Logger
	// Path is where agents named without a slash are looked for (default
	// /usr/sbin:/usr/bin:/sbin:/bin, where Debian's fence-agents live).
	Path string
	// ReadFile reads a secret parameter's file (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
}

// Runner runs fence agents.
type Runner struct {
	logger   *slog.Logger
	path     []string
	readFile func(string) ([]byte, error)

	mu      sync.Mutex
	rnd     *rand.Rand
	hostArg map[string]string // agent path → "plug", "port" or "" (none), from its metadata
}

// NewRunner returns a Runner.
func NewRunner(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Path == "" {
		cfg.Path = "/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if cfg.ReadFile == nil {
		cfg.ReadFile = os.ReadFile
	}
	return &Runner{
		logger: cfg.Logger.With("component", "fencing"), path: filepath.SplitList(cfg.Path), readFile: cfg.ReadFile,
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
func (r *Runner) Fence(ctx context.Context, f fsm.Fencing, node, action string) Outcome {
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
func (r *Runner) delay(ctx context.Context, d fsm.FenceDevice) bool {
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
func (r *Runner) try(ctx context.Context, d fsm.FenceDevice, node, action string, attempts *int) result {
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
func (r *Runner) Status(ctx context.Context, d fsm.FenceDevice, node string) (bool, error) {
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
func (r *Runner) Monitor(ctx context.Context, d fsm.FenceDevice) error {
	return r.call(ctx, d, "", "monitor").err
}

// Validate runs d's validate-all action: are its options right?
func (r *Runner) Validate(ctx context.Context, d fsm.FenceDevice) error {
	return r.call(ctx, d, "", "validate-all").err
}

// call runs one action of d for node ("" for a device-wide action).
func (r *Runner) call(ctx context.Context, d fsm.FenceDevice, node, action string) result {
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
	res := procrun.Run(ctx, procrun.Cmd{Argv: []string{agent}, Stdin: []byte(strings.Join(lines, "\n") + "\n"), Timeout: d.Timeout, Keep: fsm.MaxFenceOutput})
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

// resolve finds the agent's program: an absolute path as it is, a name on
// the search path.
func (r *Runner) resolve(agent string) (string, error) {
	if filepath.IsAbs(agent) {
		return agent, nil
	}
	for _, dir := range r.path {
		p := filepath.Join(dir, agent)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("fence agent %s: %w (looked in %s; is fence-agents installed?)", agent, exec.ErrNotFound, strings.Join(r.path, ":"))
}

// options are d's parameters with secrets read from their files, and the
// secret values, to mask them in anything shown.
func (r *Runner) options(d fsm.FenceDevice) (map[string]string, []string, error) {
	opts := map[string]string{}
	var secrets []string
	for k, p := range d.Params {
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
	res := procrun.Run(ctx, procrun.Cmd{Argv: []string{agent}, Stdin: []byte("action=metadata\n"), Timeout: min(timeout, 30*time.Second), Keep: 1 << 20})
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
	if len(s) > fsm.MaxFenceOutput {
		s = s[len(s)-fsm.MaxFenceOutput:]
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
