package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/status"
)

// fakeAgent stands in for a running node behind the real admin API.
type fakeAgent struct {
	mu       sync.Mutex
	status   status.Status
	applyErr error
	applied  []fsm.Spec
	joined   [][]string
	leaves   int
}

func (a *fakeAgent) Name() string { return a.Status().Node }

func (a *fakeAgent) Status() status.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

func (a *fakeAgent) ApplySpec(_ context.Context, spec fsm.Spec, _ uint64) (cluster.ApplyResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applyErr != nil {
		return cluster.ApplyResult{}, a.applyErr
	}
	a.applied = append(a.applied, spec)
	return cluster.ApplyResult{Version: uint64(len(a.applied)) + 2, Changed: len(a.applied) == 1}, nil
}

func (a *fakeAgent) Join(_ context.Context, addrs []string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.joined = append(a.joined, slices.Clone(addrs))
	return len(addrs), nil
}

func (a *fakeAgent) Leave(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leaves++
	return nil
}

// countingListener counts accepted connections: a client command that
// must not contact the agent leaves it at zero.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startAgent serves the admin API for agent on a unix socket and returns
// its --api address.
func startAgent(t *testing.T, agent *fakeAgent) (string, *countingListener) {
	t.Helper()
	path := filepath.Join(shortDir(t), "api.sock")
	inner, err := api.Listen(api.Addr{Unix: path})
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	srv := api.NewServer(agent, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "unix://" + path, ln
}

const servicesFile = `vips:
  - address: 172.95.69.100
services:
  - name: squid
    vip: 172.95.69.100
    port: 3128
    scheduler: rr
`

func TestClientCommandsWithoutAgent(t *testing.T) {
	services := writeFile(t, "services.yaml", servicesFile)
	for _, args := range [][]string{
		{"join", "--api", missingSocket(t), "10.0.0.2:7946"},
		{"apply", "--api", missingSocket(t), "-f", services},
		{"status", "--api", missingSocket(t)},
		{"status", "--api", missingSocket(t), "--json"},
		{"leave", "--api", missingSocket(t)},
	} {
		stdout, _ := wantExit(t, 1, args, "cannot reach the agent", "is `raftlb agent` running")
		if stdout != "" {
			t.Errorf("raftlb %q: stdout %q, want nothing", args, stdout)
		}
	}
}

func TestClientCommandsBadUsage(t *testing.T) {
	addr := missingSocket(t)
	services := writeFile(t, "services.yaml", servicesFile)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"apply", "--api", addr}, "apply needs exactly -f FILE"},
		{[]string{"apply", "--api", addr, "-f", services, services}, "apply needs exactly -f FILE"},
		{[]string{"join", "--api", addr}, "join needs at least one HOST:GOSSIPPORT"},
		{[]string{"join", "--api", addr, "10.0.0.2"}, `"10.0.0.2" is not HOST:GOSSIPPORT`},
		{[]string{"join", "--api", addr, "10.0.0.2:7946", "m50.example"}, `"m50.example" is not HOST:GOSSIPPORT`},
		{[]string{"join", "--api", "unix://relative.sock", "10.0.0.2:7946"}, "must be absolute"},
		{[]string{"status", "--api", addr, "extra"}, "status takes no arguments"},
		{[]string{"status", "--api", "127.0.0.1"}, "want unix:///path or IP:PORT"},
		{[]string{"leave", "--api", addr, "now"}, "leave takes no arguments"},
		{[]string{"leave", "--api", "127.0.0.1:0"}, "port 0"},
		{[]string{"status", "--frobnicate"}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		wantExit(t, 2, tc.args, "raftlb: usage: ", tc.want)
	}
}

func TestApplyInvalidFileIsCheckedLocally(t *testing.T) {
	agent := &fakeAgent{}
	addr, ln := startAgent(t, agent)
	bad := writeFile(t, "services.yaml", "vips: [{address: 10.0.0.1}]\nservices:\n  - vip: 10.0.0.2\n    port: 0\n")
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", bad},
		"rejected, nothing was changed",
		"services[0] (10.0.0.2:0/tcp).vip", "10.0.0.2 is not listed under vips",
		"services[0] (10.0.0.2:0/tcp).port",
	)
	broken := writeFile(t, "broken.yaml", "vips: [\n")
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", broken}, "rejected, nothing was changed", "yaml")
	if n := ln.accepted.Load(); n != 0 {
		t.Errorf("the agent was contacted %d times for invalid files", n)
	}

	// The same agent is reachable: a valid file does get there.
	good := writeFile(t, "good.yaml", servicesFile)
	wantExit(t, 0, []string{"apply", "--api", addr, "-f", good})
	if n := ln.accepted.Load(); n == 0 {
		t.Error("a valid file did not reach the agent")
	}
}

func TestApplyMissingFile(t *testing.T) {
	wantExit(t, 1, []string{"apply", "--api", missingSocket(t), "-f", filepath.Join(t.TempDir(), "nope.yaml")},
		"read services file", "nope.yaml")
}

func TestApply(t *testing.T) {
	agent := &fakeAgent{}
	addr, _ := startAgent(t, agent)
	services := writeFile(t, "services.yaml", servicesFile)

	stdout, _ := wantExit(t, 0, []string{"apply", "--api", addr, "-f", services})
	if stdout != "applied: spec version 3\n" {
		t.Errorf("stdout %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"apply", "--api", addr, "-f", services})
	if stdout != "unchanged: spec version 4\n" {
		t.Errorf("stdout %q", stdout)
	}
	want, err := fsm.ParseServices([]byte(servicesFile))
	if err != nil {
		t.Fatal(err)
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if len(agent.applied) != 2 || agent.applied[0].Services[0].Name != "squid" || agent.applied[0].VIPs[0].Address != want.VIPs[0].Address {
		t.Errorf("the agent got %+v", agent.applied)
	}
}

func TestApplyRefusedByAgent(t *testing.T) {
	agent := &fakeAgent{applyErr: fmt.Errorf("%w: spec is at version 8", cluster.ErrConflict)}
	addr, _ := startAgent(t, agent)
	services := writeFile(t, "services.yaml", servicesFile)
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", services}, "raftlb: apply: ", "spec changed since it was read")

	agent.mu.Lock()
	agent.applyErr = fmt.Errorf("forward: %w", cluster.ErrNoDC)
	agent.mu.Unlock()
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", services}, "no DC is elected")
}

func TestJoinCommand(t *testing.T) {
	agent := &fakeAgent{}
	addr, _ := startAgent(t, agent)
	stdout, _ := wantExit(t, 0, []string{"join", "--api", addr, "10.0.0.2:7946", "m50.example:7946"})
	if stdout != "joined: contacted 2 node(s)\n" {
		t.Errorf("stdout %q", stdout)
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if want := [][]string{{"10.0.0.2:7946", "m50.example:7946"}}; !slices.EqualFunc(agent.joined, want, slices.Equal) {
		t.Errorf("the agent was asked to join %q, want %q", agent.joined, want)
	}
}

func TestLeaveCommand(t *testing.T) {
	agent := &fakeAgent{}
	addr, _ := startAgent(t, agent)
	stdout, _ := wantExit(t, 0, []string{"leave", "--api", addr})
	if !strings.Contains(stdout, "left the cluster") {
		t.Errorf("stdout %q", stdout)
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if agent.leaves != 1 {
		t.Errorf("Leave called %d times, want once", agent.leaves)
	}
}

func TestStatusCommand(t *testing.T) {
	st := status.Status{
		Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Node: "n1", DC: "n2", Term: 7, Quorum: true,
		SpecVersion: 4, NodesConfigured: 1,
		Nodes: []cluster.NodeView{{Name: "n2", Status: "online", Role: "DC"}},
	}
	addr, _ := startAgent(t, &fakeAgent{status: st})

	stdout, _ := wantExit(t, 0, []string{"status", "--api", addr})
	for _, want := range []string{"Current DC: n2 (term 7) - partition with quorum", "Spec version: 4"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _ = wantExit(t, 0, []string{"status", "--api", addr, "--json"})
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, stdout)
	}
	if doc["dc"] != "n2" || doc["term"] != 7.0 || doc["spec_version"] != 4.0 {
		t.Errorf("status --json = %v", doc)
	}
}
