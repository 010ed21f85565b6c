//go:build lab

package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-running process started in a namespace with Lab.Start:
// an agent, a service, a probe. Its stdout and stderr go to a log file in
// the test's LogDir, which reaches the host; the lab kills it when the
// test ends.
type Proc struct {
	Name string // the log's name: LogDir/NAME.log
	NS   string
	Log  string

	cmd    *exec.Cmd
	offset int64 // where this run's output starts in Log
	done   chan struct{}
	err    error // the exit status, once done is closed
}

// Start runs args in namespace ns in the background. Starting the same
// name again (an agent restarted in a scenario) appends to the same log,
// after a header line.
func (l *Lab) Start(ns, name string, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("lab: Start: no command")
	}
	path := filepath.Join(l.logDir, name+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	argv := nsArgv(ns, args)
	fmt.Fprintf(f, "=== %s start in %s: %s\n", time.Now().Format("15:04:05.000"), nsName(ns), strings.Join(args, " "))
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that Kill also gets whatever it spawned
	// (fencing scripts, health-check commands). `ip netns exec` execs the
	// command, so the pid is the command's own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	p := &Proc{Name: name, NS: ns, Log: path, cmd: cmd, offset: off, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func nsName(ns string) string {
	if ns == "" {
		return "the VM's namespace"
	}
	return ns
}

// Pid is the process id, for scenarios that kill -9 an agent by hand.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status once Done is closed (nil for exit 0).
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("still running")
	}
}

// Signal sends sig to the process's group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// status.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v", p.Name, timeout)
	}
}

// Stop asks the process to exit (SIGTERM), as systemd would, and kills it
// if it has not after timeout. It returns the exit status; dying of the
// SIGTERM itself counts as a clean stop.
func (p *Proc) Stop(timeout time.Duration) error {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s: did not exit within %v of SIGTERM; killed", p.Name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.err
}

// Kill kills the process's group with SIGKILL, as a crash or kill -9
// would, and waits for the process to be gone. The group is signalled even
// if the process has exited: what it spawned may still run. A process that
// outlives SIGKILL (stuck in the kernel) is reported, not waited on forever.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
		fmt.Fprintf(os.Stderr, "lab: %s (pid %d) still alive %v after SIGKILL; its kernel stack:\n%s\n",
			p.Name, p.Pid(), killWait, kernelStack(p.Pid()))
	}
}

// killWait bounds how long Kill waits for a SIGKILLed process to go.
const killWait = 30 * time.Second

// kernelStack is where in the kernel pid is stuck, for a report.
func kernelStack(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Output is what this run of the process has written so far.
func (p *Proc) Output() (string, error) {
	f, err := os.Open(p.Log)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(p.offset, io.SeekStart); err != nil {
		return "", err
	}
	out, err := io.ReadAll(f)
	return string(out), err
}

// WaitOutput waits until the process has written s (a readiness line such
// as raftlb-lab's "serving"), failing early if it exits first.
func (p *Proc) WaitOutput(s string, timeout time.Duration) error {
	return Eventually(timeout, func() (bool, error) {
		out, err := p.Output()
		if err != nil {
			return false, err
		}
		if strings.Contains(out, s) {
			return true, nil
		}
		select {
		case <-p.done:
			return false, fmt.Errorf("%s exited (%v) before writing %q; its log:\n%s", p.Name, p.err, s, out)
		default:
			return false, fmt.Errorf("%s has not written %q; its log:\n%s", p.Name, s, out)
		}
	})
}

// ProbeReport is the probe's report (see report.go).
type ProbeReport = Report

// Reporter is a raftlb-lab command running in the client namespace that
// writes a JSON report of type R when it ends: a probe or an ARP watch.
type Reporter[R any] struct {
	*Proc
	Out string // the JSON report, in LogDir
}

// Probe is a raftlb-lab probe; Hold holds long-lived connections through
// the VIP; ARPWatch is the client-side judge of who answers ARP for the
// VIP.
type (
	Probe    = Reporter[ProbeReport]
	Hold     = Reporter[HoldReport]
	ARPWatch = Reporter[ARPReport]
)

// startReporter starts a raftlb-lab command that writes its report to
// LogDir/NAME.json, and waits for its "started" line.
func startReporter[R any](l *Lab, name, started string, args ...string) (*Reporter[R], error) {
	out := filepath.Join(l.logDir, name+".json")
	p, err := l.Start(Client, name, append([]string{l.Bin("raftlb-lab")}, append(args, "--out", out)...)...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitOutput(started, 30*time.Second); err != nil {
		return nil, err
	}
	return &Reporter[R]{Proc: p, Out: out}, nil
}

// StartProbe starts raftlb-lab probe against target from the client
// namespace. flags are probe's (--interval, --timeout, --duration, …);
// without --duration it probes until Stop.
func (l *Lab) StartProbe(name, target string, flags ...string) (*Probe, error) {
	args := []string{"probe", "--target", target}
	if !hasFlag(flags, "duration") {
		args = append(args, "--until-signal")
	}
	return startReporter[ProbeReport](l, name, "probing", append(args, flags...)...)
}

// StartHold starts raftlb-lab hold against target (the real servers run
// serve --echo) from the client namespace, and returns once every
// connection is established and greeted. flags are hold's (--conns,
// --interval, --timeout, --duration, …); without --duration it holds until
// Stop.
func (l *Lab) StartHold(name, target string, flags ...string) (*Hold, error) {
	args := []string{"hold", "--target", target}
	if !hasFlag(flags, "duration") {
		args = append(args, "--until-signal")
	}
	return startReporter[HoldReport](l, name, "holding", append(args, flags...)...)
}

// StartARPWatch starts the ARP judge for vip in the client namespace,
// asking every 20 ms until Stop (or for --duration, then Wait).
func (l *Lab) StartARPWatch(name, vip string, flags ...string) (*ARPWatch, error) {
	return startReporter[ARPReport](l, name, "watching ARP", append([]string{"arpwatch", "--vip", vip, "--interval", "20ms"}, flags...)...)
}

// Wait waits for a command with a --duration to finish and reads its
// report.
func (r *Reporter[R]) Wait(timeout time.Duration) (R, error) {
	if err := r.Proc.Wait(timeout); err != nil {
		var zero R
		return zero, err
	}
	return r.Report()
}

// Stop ends the command (it writes its report on SIGTERM) and reads the
// report.
func (r *Reporter[R]) Stop(timeout time.Duration) (R, error) {
	if err := r.Proc.Stop(timeout); err != nil {
		var zero R
		return zero, err
	}
	return r.Report()
}

// Report reads the finished command's report.
func (r *Reporter[R]) Report() (R, error) {
	var rep R
	data, err := os.ReadFile(r.Out)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", r.Out, err)
	}
	return rep, nil
}

func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		f = strings.TrimLeft(f, "-")
		if f == name || strings.HasPrefix(f, name+"=") {
			return true
		}
	}
	return false
}
