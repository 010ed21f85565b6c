//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Loopback blocks, one per cluster: agent i binds 127.0.<block>.i, so tests
// running in parallel never share an address, and a failure's logs name
// addresses that belong to one test only.
const (
	blockStatus = 11 + iota
	blockDCKilled
	blockApply
	blockRestart
	blockLeave
	blockForeign
	blockCutOff
	blockSpec
	blockMaintenance
	blockRotation
	blockPrograms
	blockEvents
	blockMetrics
	blockPage
	blockSystemd
	blockMetricsTLS
	blockSecrets
	blockBench = 50
)

// Deadlines for conditions. They are generous because a 2-core machine
// running two clusters and a stream of CLI processes is slow; a healthy
// cluster meets them in a fraction of the time, and waits return as soon as
// it does. They bound a hang, they do not measure anything.
const (
	formTimeout   = 20 * time.Second // bootstrap and registration of every node
	changeTimeout = 15 * time.Second // failover, rejoin, replication, exit
	pollInterval  = 20 * time.Millisecond
	// cliTimeout is above `raftlb join`'s own 30 s default, so the CLI
	// always gives up first and reports why.
	cliTimeout = 45 * time.Second
	// logTailLines bounds how much of each agent's log a failure prints.
	logTailLines = 300
)

// cluster is a set of raftlb agents running as child processes, with their
// gossip key, CA and certificates, driven through the raftlb CLI.
type cluster struct {
	t       testing.TB
	block   int
	dir     string // key, certificates, data directories, logs
	sockDir string // admin sockets, see newCluster
	keyFile string
	tlsDir  string
	agents  []*agent
	// dataplane is the agents' --dataplane; "" is none.
	dataplane string
}

// statusView is the part of `raftlb status --json` the tests read. It is a
// local type on purpose: the JSON keys are the CLI's contract, and decoding
// into them checks the contract rather than the Go types behind it.
type statusView struct {
	Node            string `json:"node"`
	DC              string `json:"dc"`
	Term            uint64 `json:"term"`
	Quorum          bool   `json:"quorum"`
	Stale           bool   `json:"stale"`
	Warning         string `json:"warning"`
	SpecVersion     uint64 `json:"spec_version"`
	NodesConfigured int    `json:"nodes_configured"`
	Nodes           []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Role   string `json:"role"`
	} `json:"nodes"`
	Services []struct {
		VIP string `json:"vip"`
	} `json:"services"`
	Credentials struct {
		GossipEncryptsWith string   `json:"gossip_encrypts_with"`
		GossipAccepts      []string `json:"gossip_accepts"`
		CertSerial         string   `json:"cert_serial"`
	} `json:"credentials"`
}

// node returns the line for name, and whether status lists it.
func (s statusView) node(name string) (status, role string, listed bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n.Status, n.Role, true
		}
	}
	return "", "", false
}

// cliResult is one finished run of the raftlb CLI.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("`raftlb %s` exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// startCluster starts n agents that bootstrap together, joins agents 2..n
// to agent 1 with `raftlb join`, and waits until every agent agrees on a DC
// and has all n nodes online and configured.
func startCluster(t testing.TB, block, n int) *cluster {
	t.Helper()
	return startClusterWith(t, block, n, "")
}

// startClusterWith is startCluster with the agents' --dataplane ("" is
// none; fake runs the whole director against in-memory fakes).
func startClusterWith(t testing.TB, block, n int, dataplane string) *cluster {
	t.Helper()
	return startClusterExtra(t, block, n, dataplane, nil)
}

// startClusterExtra is startClusterWith with further flags for some
// agents (by name).
func startClusterExtra(t testing.TB, block, n int, dataplane string, extra map[string][]string) *cluster {
	t.Helper()
	c := newCluster(t, block)
	c.dataplane = dataplane
	for i := 1; i <= n; i++ {
		a := c.addAgent(i, c.keyFile, c.tlsDir, n)
		a.extra = extra[a.name]
	}
	for _, a := range c.agents {
		c.start(a)
	}
	for _, a := range c.agents {
		c.waitAPI(a)
	}
	for _, a := range c.agents[1:] {
		if r := c.join(a, c.agents[0]); r.code != 0 {
			t.Fatalf("join %s to %s: %s", a.name, c.agents[0].name, r)
		}
	}
	c.waitFor(fmt.Sprintf("a %d-node cluster to form", n), formTimeout, func() error {
		_, err := c.agreed(c.agents, n, n)
		return err
	})
	return c
}

// newCluster creates a gossip key and a CA; agents are added with
// addAgent. Every agent process is killed when the test ends, and its log is
// printed if the test failed.
func newCluster(t testing.TB, block int) *cluster {
	t.Helper()
	if raftlbBin == "" {
		t.Fatal("the raftlb binary was not built: TestMain did not run")
	}
	dir := t.TempDir()
	// Unix socket paths are limited to 108 bytes and t.TempDir's paths
	// grow with the test name, so the sockets live in a short directory.
	sockDir, err := os.MkdirTemp("", "rlb-")
	if err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	c := &cluster{
		t: t, block: block, dir: dir, sockDir: sockDir,
		keyFile: filepath.Join(dir, "gossip.key"), tlsDir: filepath.Join(dir, "tls"),
	}
	c.mustRaftlb("keygen", "-o", c.keyFile)
	c.mustRaftlb("tls", "init", "--dir", c.tlsDir)
	// Cleanups run last-registered first: kill the agents, then print
	// their complete logs.
	t.Cleanup(c.dumpLogsIfFailed)
	t.Cleanup(c.killAll)
	return c
}

// raftlb runs the CLI. An error means it could not run at all or did not
// finish in time; a non-zero exit is a result, not an error.
func (c *cluster) raftlb(args ...string) (cliResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, raftlbBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("raftlb %s: no answer within %s", strings.Join(args, " "), cliTimeout)
	case err != nil && !errors.As(err, &exit):
		return r, fmt.Errorf("run raftlb %s: %w", strings.Join(args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r, nil
}

// run is raftlb for commands whose failure to run ends the test; the exit
// code is still the caller's to check.
func (c *cluster) run(args ...string) cliResult {
	c.t.Helper()
	r, err := c.raftlb(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// mustRaftlb runs a setup command that has to succeed.
func (c *cluster) mustRaftlb(args ...string) cliResult {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatal(r)
	}
	return r
}

// join is `raftlb join` on a's agent, pointing at target's gossip port.
func (c *cluster) join(a, target *agent) cliResult {
	c.t.Helper()
	return c.run("join", "--api", a.api, net.JoinHostPort(target.ip, strconv.Itoa(target.gossipPort)))
}

// apply is `raftlb apply -f file` on a's agent.
func (c *cluster) apply(a *agent, file string) cliResult {
	c.t.Helper()
	return c.run("apply", "--api", a.api, "-f", file)
}

// status is `raftlb status --json` on a's agent, decoded.
func (c *cluster) status(a *agent) (statusView, error) {
	r, err := c.raftlb("status", "--api", a.api, "--json")
	if err != nil {
		return statusView{}, err
	}
	// 0 ok, 1 degraded, 2 critical: each still prints the view.
	if r.code > 2 {
		return statusView{}, fmt.Errorf("status of %s: %s", a.name, r)
	}
	var st statusView
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		return statusView{}, fmt.Errorf("decode `raftlb status --json` of %s: %w\n%s", a.name, err, r.stdout)
	}
	return st, nil
}

// mustStatus is status for an agent that has to answer.
func (c *cluster) mustStatus(a *agent) statusView {
	c.t.Helper()
	st, err := c.status(a)
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

// statusText is the human `raftlb status` of a's agent.
func (c *cluster) statusText(a *agent) string {
	c.t.Helper()
	r := c.run("status", "--api", a.api)
	if r.code > 2 {
		c.t.Fatal(r)
	}
	return r.stdout
}

// agreed checks that every agent in view answers status with quorum, names
// the same DC, lists exactly `online` nodes as online and exactly one node
// with role DC (that DC), and has `configured` nodes configured. It returns
// the DC's name.
func (c *cluster) agreed(view []*agent, online, configured int) (string, error) {
	dc := ""
	for _, a := range view {
		st, err := c.status(a)
		if err != nil {
			return "", err
		}
		if !st.Quorum || st.DC == "" {
			return "", fmt.Errorf("%s: no DC with quorum (dc %q, quorum %v, warning %q)", a.name, st.DC, st.Quorum, st.Warning)
		}
		if dc == "" {
			dc = st.DC
		} else if st.DC != dc {
			return "", fmt.Errorf("%s says the DC is %s, %s says %s", view[0].name, dc, a.name, st.DC)
		}
		if st.NodesConfigured != configured {
			return "", fmt.Errorf("%s: %d nodes configured, want %d", a.name, st.NodesConfigured, configured)
		}
		nOnline, dcs := 0, 0
		for _, n := range st.Nodes {
			if n.Status == "online" {
				nOnline++
			}
			if n.Role == "DC" {
				dcs++
				if n.Name != dc {
					return "", fmt.Errorf("%s: node %s has role DC, but the DC is %s", a.name, n.Name, dc)
				}
			}
		}
		if nOnline != online || dcs != 1 {
			return "", fmt.Errorf("%s: %d nodes online and %d with role DC, want %d and 1: %+v", a.name, nOnline, dcs, online, st.Nodes)
		}
	}
	return dc, nil
}

// specVersions returns every agent's spec_version.
func (c *cluster) specVersions(view []*agent) ([]uint64, error) {
	var vs []uint64
	for _, a := range view {
		st, err := c.status(a)
		if err != nil {
			return nil, err
		}
		vs = append(vs, st.SpecVersion)
	}
	return vs, nil
}

// sameSpecVersion checks that every agent in view has spec_version want.
func (c *cluster) sameSpecVersion(view []*agent, want uint64) error {
	vs, err := c.specVersions(view)
	if err != nil {
		return err
	}
	for i, v := range vs {
		if v != want {
			return fmt.Errorf("%s has spec_version %d, want %d (all: %v)", view[i].name, v, want, vs)
		}
	}
	return nil
}

// byName returns the agent called name.
func (c *cluster) byName(name string) *agent {
	c.t.Helper()
	for _, a := range c.agents {
		if a.name == name {
			return a
		}
	}
	c.t.Fatalf("no agent named %q", name)
	return nil
}

// others returns the agents other than the given ones.
func (c *cluster) others(not ...*agent) []*agent {
	var out []*agent
	for _, a := range c.agents {
		if !slices.Contains(not, a) {
			out = append(out, a)
		}
	}
	return out
}

// waitFor polls check until it returns nil, and fails the test with
// check's last complaint if that takes longer than timeout.
func (c *cluster) waitFor(what string, timeout time.Duration, check func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: still not true after %s: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// writeFile writes a test input file and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	return path
}

func (c *cluster) dataplaneOr(def string) string {
	if c.dataplane == "" {
		return def
	}
	return c.dataplane
}
