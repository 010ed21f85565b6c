//go:build linux

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agent is one node: how to start it and, while it runs, its process.
type agent struct {
	name            string
	ip              string
	raftPort        int
	gossipPort      int
	dataDir         string
	api             string // unix:///...
	logPath         string
	extra           []string // further flags
	keyFile         string
	tlsDir          string
	bootstrapExpect int

	proc *process // nil until started
}

// process is one run of an agent; a restart gets a new one.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's result, set before exited is closed
}

// addAgent defines agent n<host> at 127.0.<block>.<host> with free ports
// and a TLS directory of its own issued by the CA in caDir (as `raftlb
// tls cert --out` makes it: never the CA's key); it does not start it.
func (c *cluster) addAgent(host int, keyFile, caDir string, bootstrapExpect int) *agent {
	c.t.Helper()
	name := fmt.Sprintf("n%d", host)
	ip := fmt.Sprintf("127.0.%d.%d", c.block, host)
	tlsDir := filepath.Join(c.dir, name+"-tls")
	c.mustRaftlb("tls", "cert", "--dir", caDir, "--name", name, "--ip", ip, "--out", tlsDir)
	raftPort, gossipPort := freePorts(c.t, ip)
	a := &agent{
		name: name, ip: ip, raftPort: raftPort, gossipPort: gossipPort,
		dataDir: filepath.Join(c.dir, name), api: "unix://" + filepath.Join(c.sockDir, name+".sock"),
		logPath: filepath.Join(c.dir, name+".log"),
		keyFile: keyFile, tlsDir: tlsDir, bootstrapExpect: bootstrapExpect,
	}
	c.agents = append(c.agents, a)
	return a
}

// freePorts picks a Raft port and a gossip port on ip. Gossip needs the
// same port for TCP and UDP, so a TCP port is kept only if UDP can bind it
// too. The ports are released before the agent binds them, which is safe
// enough because nothing else uses this test's address.
func freePorts(t testing.TB, ip string) (raftPort, gossipPort int) {
	t.Helper()
	raftLn, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("pick a raft port on %s: %v", ip, err)
	}
	defer raftLn.Close()
	for range 20 {
		tcp, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("pick a gossip port on %s: %v", ip, err)
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		tcp.Close()
		if err == nil {
			udp.Close()
			return raftLn.Addr().(*net.TCPAddr).Port, port
		}
	}
	t.Fatalf("no port on %s is free for both TCP and UDP", ip)
	return 0, 0
}

// start runs the agent with its data directory; a restarted agent gets
// exactly the same flags, so it finds its cluster from its own state. The
// log file is appended to, so a restart's log follows the first run's.
func (c *cluster) start(a *agent) {
	c.t.Helper()
	args := []string{
		"agent", "--name", a.name, "--data-dir", a.dataDir, "--bind", a.ip,
		"--raft-port", strconv.Itoa(a.raftPort), "--gossip-port", strconv.Itoa(a.gossipPort),
		"--api", a.api, "--bootstrap-expect", strconv.Itoa(a.bootstrapExpect),
		"--dataplane", c.dataplaneOr("none"), "--key-file", a.keyFile, "--tls-dir", a.tlsDir,
	}
	args = append(args, a.extra...)
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("open log of %s: %v", a.name, err)
	}
	fmt.Fprintf(logf, "=== %s raftlb %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(raftlbBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (a timeout panic, a kill), its agents die
	// with it instead of lingering on the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start agent %s: %v", a.name, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	a.proc = p
}

// running reports whether the agent's process is alive (or stopped).
func (a *agent) running() bool {
	if a.proc == nil {
		return false
	}
	select {
	case <-a.proc.exited:
		return false
	default:
		return true
	}
}

// pid is the running agent's process ID.
func (a *agent) pid() int { return a.proc.cmd.Process.Pid }

// waitAPI waits until the agent answers `raftlb status`, so a following
// `raftlb join` does not race the agent's start.
func (c *cluster) waitAPI(a *agent) {
	c.t.Helper()
	c.waitFor(a.name+"'s admin API to answer", changeTimeout, func() error {
		if !a.running() {
			// It will not come back: say so now rather than at the deadline.
			c.t.Fatalf("agent %s exited before its admin API answered: %v", a.name, a.proc.err)
		}
		_, err := c.status(a)
		return err
	})
}

// signal sends sig to the agent's process.
func (c *cluster) signal(a *agent, sig syscall.Signal) {
	c.t.Helper()
	if err := a.proc.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("send %v to %s (pid %d): %v", sig, a.name, a.pid(), err)
	}
}

// kill is `kill -9`: the agent gets no chance to hand anything over.
func (c *cluster) kill(a *agent) {
	c.t.Helper()
	c.signal(a, syscall.SIGKILL)
	c.waitExit(a)
}

// waitExit waits for the agent's process to end and returns its exit code
// (-1 if a signal ended it).
func (c *cluster) waitExit(a *agent) int {
	c.t.Helper()
	select {
	case <-a.proc.exited:
		return a.proc.cmd.ProcessState.ExitCode()
	case <-time.After(changeTimeout):
		c.t.Fatalf("agent %s (pid %d) still running after %s", a.name, a.pid(), changeTimeout)
		return 0
	}
}

// killAll kills every agent still running, stopped ones included (SIGKILL
// ends a SIGSTOPped process too), and reaps it.
func (c *cluster) killAll() {
	for _, a := range c.agents {
		if a.running() {
			_ = a.proc.cmd.Process.Kill()
			<-a.proc.exited
		}
	}
}

// dumpLogsIfFailed prints the tail of every agent's log after a failure:
// the CLI's view alone rarely says why a cluster did not converge.
func (c *cluster) dumpLogsIfFailed() {
	if !c.t.Failed() {
		return
	}
	for _, a := range c.agents {
		data, err := os.ReadFile(a.logPath)
		if err != nil {
			c.t.Logf("log of %s: %v", a.name, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		c.t.Logf("--- log of %s (%s), last %d lines:\n%s", a.name, a.ip, len(lines), strings.Join(lines, "\n"))
	}
}
