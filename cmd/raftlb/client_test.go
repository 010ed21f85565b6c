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
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// newFakeAgent stands in for a running node behind the real admin API:
// each apply moves the version on (the first one changes the spec), every
// join reaches all the addresses.
func newFakeAgent() *api.FakeAgent {
	return &api.FakeAgent{Apply: func(_ spec.Spec, _ uint64, calls int) (cluster.ApplyResult, error) {
		return cluster.ApplyResult{Version: uint64(calls) + 2, Changed: calls == 1}, nil
	}}
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

// serveFakeAgent serves the admin API for agent on a unix socket and returns
// its --api address.
func serveFakeAgent(t *testing.T, agent *api.FakeAgent) (string, *countingListener) {
	t.Helper()
	path := filepath.Join(shortDir(t), "api.sock")
	inner, err := api.Listen(api.Addr{Unix: path})
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	srv := api.NewServer(agent, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.SetFencing(agent)
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
		code := 1
		if args[0] == "status" {
			code = 3 // a monitoring check's UNKNOWN
		}
		stdout, _ := wantExit(t, code, args, "cannot reach the agent", "is `raftlb agent` running")
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
		{[]string{"fence", "--api", addr}, "fence needs exactly one NODE"},
		{[]string{"fence", "--api", addr, "n1", "n2"}, "fence needs exactly one NODE"},
		{[]string{"fence", "--api", addr, "--action", "on", "n1"}, `--action "on"`},
		{[]string{"fence", "--api", addr, "../n1"}, "node name"},
		{[]string{"fence", "--api", addr, "--wait", "-1s", "n1"}, "--wait"},
		{[]string{"fence", "confirm", "--api", addr}, "fence confirm needs exactly one NODE"},
		{[]string{"fence", "--api", addr, "history"}, "history comes right after fence"},
		{[]string{"fence", "--api", addr, "confirm", "n1"}, "confirm comes right after fence"},
		{[]string{"fence", "history", "--api", addr, "n1"}, "takes no arguments"},
	}
	for _, tc := range cases {
		wantExit(t, 2, tc.args, "raftlb: usage: ", tc.want)
	}
}

func TestApplyInvalidFileIsCheckedLocally(t *testing.T) {
	agent := newFakeAgent()
	addr, ln := serveFakeAgent(t, agent)
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
	agent := newFakeAgent()
	addr, _ := serveFakeAgent(t, agent)
	services := writeFile(t, "services.yaml", servicesFile)

	stdout, _ := wantExit(t, 0, []string{"apply", "--api", addr, "-f", services})
	if stdout != "applied: spec version 3, 2 change(s):\n  added vip 172.95.69.100 on the agent's --interface\n  added service squid 172.95.69.100:3128/tcp: real servers: all nodes on port 3128, weight 1\n" {
		t.Errorf("stdout %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"apply", "--api", addr, "-f", services})
	if stdout != "unchanged: spec version 4\n" {
		t.Errorf("stdout %q", stdout)
	}
	want, err := spec.ParseServices([]byte(servicesFile))
	if err != nil {
		t.Fatal(err)
	}
	if applied := agent.Applied(); len(applied) != 2 || applied[0].Spec.Services[0].Name != "squid" || applied[0].Spec.VIPs[0].Address != want.VIPs[0].Address {
		t.Errorf("the agent got %+v", applied)
	}
}

func TestApplyRefusedByAgent(t *testing.T) {
	agent := &api.FakeAgent{ApplyErr: fmt.Errorf("%w: spec is at version 8", cluster.ErrConflict)}
	addr, _ := serveFakeAgent(t, agent)
	services := writeFile(t, "services.yaml", servicesFile)
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", services}, "raftlb: apply: ", "spec changed since it was read")

	agent.Apply = func(spec.Spec, uint64, int) (cluster.ApplyResult, error) {
		return cluster.ApplyResult{}, fmt.Errorf("forward: %w", cluster.ErrNoDC)
	}
	wantExit(t, 1, []string{"apply", "--api", addr, "-f", services}, "no DC is elected")
}

func TestJoinCommand(t *testing.T) {
	agent := &api.FakeAgent{JoinContacted: 2}
	addr, _ := serveFakeAgent(t, agent)
	stdout, _ := wantExit(t, 0, []string{"join", "--api", addr, "10.0.0.2:7946", "m50.example:7946"})
	if stdout != "joined: contacted 2 node(s)\n" {
		t.Errorf("stdout %q", stdout)
	}
	if want := [][]string{{"10.0.0.2:7946", "m50.example:7946"}}; !slices.EqualFunc(agent.Joins(), want, slices.Equal) {
		t.Errorf("the agent was asked to join %q, want %q", agent.Joins(), want)
	}
}

func TestLeaveCommand(t *testing.T) {
	agent := newFakeAgent()
	addr, _ := serveFakeAgent(t, agent)
	stdout, _ := wantExit(t, 0, []string{"leave", "--api", addr})
	if !strings.Contains(stdout, "left the cluster") {
		t.Errorf("stdout %q", stdout)
	}
	if n := agent.Leaves(); n != 1 {
		t.Errorf("Leave called %d times, want once", n)
	}
}

func TestStatusCommand(t *testing.T) {
	st := status.Status{
		Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Node: "n1", DC: "n2", Term: 7, Quorum: true,
		SpecVersion: 4, NodesConfigured: 1,
		Nodes: []cluster.NodeView{{Name: "n2", Status: "online", Role: "DC"}},
	}
	addr, _ := serveFakeAgent(t, &api.FakeAgent{View: st})

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

// TestReleaseCommand: release refuses while the agent answers (a running
// DC must not lose its VIPs behind its back), needs --data-dir, and with
// no state file has nothing to do. The kernel side is the lab's.
func TestReleaseCommand(t *testing.T) {
	addr, _ := serveFakeAgent(t, &api.FakeAgent{})
	wantExit(t, 1, []string{"release", "--api", addr, "--data-dir", t.TempDir()}, "the agent is running")
	wantExit(t, 2, []string{"release", "--api", missingSocket(t)}, "--data-dir")
	wantExit(t, 2, []string{"release", "--api", missingSocket(t), "--data-dir", t.TempDir(), "extra"}, "no arguments")
	stdout, _ := wantExit(t, 0, []string{"release", "--api", missingSocket(t), "--data-dir", t.TempDir()})
	if !strings.Contains(stdout, "released nothing") {
		t.Errorf("stdout %q", stdout)
	}
}

// TestFenceCommands: raftlb fence waits for the result and prints it as
// the history does, failing when the fencing failed; confirm and history
// print what the agent recorded.
func TestFenceCommands(t *testing.T) {
	agent := &api.FakeAgent{View: status.Status{Node: "n1", DC: "n2"}}
	addr, _ := serveFakeAgent(t, agent)
	stdout, _ := wantExit(t, 0, []string{"fence", "--api", addr, "--action", "off", "n3"})
	for _, want := range []string{"fencing n3 (off): recorded by n2 as #1", "off of n3 successful: by n2"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("fence printed %q, want %q", stdout, want)
		}
	}
	agent.FenceResult = fsm.FenceFailed
	stdout, _ = wantExit(t, 1, []string{"fence", "--api", addr, "n3"}, "fencing n3 failed")
	if !strings.Contains(stdout, "reboot of n3 failed") || !strings.Contains(stdout, "last output: Failed: Unable to connect") {
		t.Errorf("a failed fence printed %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"fence", "--api", addr, "--wait", "0", "n3"})
	if strings.Contains(stdout, "failed") {
		t.Errorf("--wait 0 waited for the result: %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"fence", "confirm", "--api", addr, "n3"})
	if !strings.Contains(stdout, "n3 is down (confirmed on n1, #4)") {
		t.Errorf("confirm printed %q", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"fence", "history", "--api", addr})
	if lines := strings.Count(stdout, "\n"); !strings.HasPrefix(stdout, "  * n3 confirmed down") || lines < 5 {
		t.Errorf("history (newest first) printed:\n%s", stdout)
	}
	stdout, _ = wantExit(t, 0, []string{"fence", "history", "--api", addr, "--json"})
	var doc api.FenceHistoryResponse
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Events) != 4 {
		t.Errorf("history --json: %v\n%s", err, stdout)
	}
	agent.FenceErr = fmt.Errorf("no fence device of the spec fences n3")
	wantExit(t, 1, []string{"fence", "--api", addr, "n3"}, "no fence device")
}

// TestStatusExitCodes: status exits as a monitoring check does, the same
// with --json; --watch refreshes --count times.
func TestStatusExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		view status.Status
		code int
		want string
	}{
		{"ok", status.Status{Node: "n1", DC: "n1", Quorum: true, Health: status.Verdict{State: "ok", Code: 0}}, 0, "Health: OK"},
		{"degraded", status.Status{Node: "n1", DC: "n1", Quorum: true, Health: status.Verdict{State: "degraded", Code: 1, Reasons: []string{"node n3 is offline"}}}, 1, "Health: DEGRADED: node n3 is offline"},
		{"critical", status.Status{Node: "n1", Health: status.Verdict{State: "critical", Code: 2, Reasons: []string{"no quorum: no DC is elected"}}}, 2, "Health: CRITICAL: no quorum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serveFakeAgent(t, &api.FakeAgent{View: tc.view})
			stdout, _ := wantExit(t, tc.code, []string{"status", "--api", addr})
			if !strings.Contains(stdout, tc.want) {
				t.Errorf("status:\n%s\nwant %q", stdout, tc.want)
			}
			stdout, _ = wantExit(t, tc.code, []string{"status", "--api", addr, "--json"})
			if !strings.Contains(stdout, `"state": "`+tc.view.Health.State+`"`) {
				t.Errorf("status --json lacks the verdict:\n%s", stdout)
			}
			stdout, _ = wantExit(t, tc.code, []string{"status", "--api", addr, "--watch", "--interval", "100ms", "--count", "2"})
			if n := strings.Count(stdout, "Cluster Summary:"); n != 2 {
				t.Errorf("--watch --count 2 printed %d views", n)
			}
		})
	}
	addr, _ := serveFakeAgent(t, &api.FakeAgent{})
	for _, args := range [][]string{{"--interval", "1s"}, {"--count", "2"}, {"--watch", "--interval", "1ms"}, {"--watch", "--count", "-1"}} {
		wantExit(t, 2, append([]string{"status", "--api", addr}, args...), "usage")
	}
}
