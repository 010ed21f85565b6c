//go:build lab

package lab_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// fenceSpec is labSpec with takeover fence and the lab's fence device
// (raftlb-lab called as fence_lab) for every node; broken makes it a
// device that fails every action.
func fenceSpec(agent string, broken bool) string { return fenceSpecQuorum(agent, broken, "stop") }

func fenceSpecQuorum(agent string, broken bool, noQuorum string) string {
	params := ""
	if broken {
		params = "      params: {fail: \"1\"}\n"
	}
	return labSpec + `policy:
  no_quorum: ` + noQuorum + `
  takeover: fence
fencing:
  devices:
    - name: lab
      agent: ` + agent + `
      hosts: [m30, m40, m50]
      action: "off"
      timeout: 20s
      retries: 0
` + params
}

// fenceEvent is an entry of `raftlb fence history --json`.
type fenceEvent struct {
	ID       uint64 `json:"id"`
	Target   string `json:"target"`
	By       string `json:"by"`
	Result   string `json:"result"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output"`
}

func (c *rcluster) fenceHistory(n string) []fenceEvent {
	c.t.Helper()
	var h struct {
		Events []fenceEvent `json:"events"`
	}
	out := c.l.Run("", c.l.Bin("raftlb"), "fence", "history", "--api", "unix://"+c.sock(n), "--json")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		c.t.Fatal(err)
	}
	return h.Events
}

// fenced finds the last fencing of target with a result.
func fenced(events []fenceEvent, target string) (fenceEvent, bool) {
	for i := len(events) - 1; i >= 0; i-- {
		if e := events[i]; e.Target == target && e.Result != "" {
			return e, true
		}
	}
	return fenceEvent{}, false
}

// isolate cuts n off from its peers (not from the client) and returns
// the undo.
func (c *rcluster) isolate(n string) func() {
	return c.cut(n, "input", "saddr", others(n)...).and(c.cut(n, "output", "daddr", others(n)...))
}

// TestRaftlbFence is the fence scenario of the split-brain issue, with
// takeover: fence and the lab's fence device:
//
//  1. The DC is cut off from its peers but not from the client. The
//     majority elects a DC, which fences the old one before it claims the
//     VIP: the device kills the old DC's processes and downs its link
//     (judged by the kernel: the link is down, the agent gone). Never two
//     MACs answer the client, never two kernels carry the VIP.
//  2. With a device that fails, the next DC cut off the same way is not
//     taken over: the failure is in the history and status, nobody holds
//     the VIP, until `raftlb fence confirm` — refused while the node
//     answers gossip — lets the takeover go ahead.
func TestRaftlbFence(t *testing.T) {
	c := newRaftlbCluster(t)
	agent := filepath.Join(c.dir, "fence_lab")
	if err := os.Symlink(c.l.Bin("raftlb-lab"), agent); err != nil {
		t.Fatal(err)
	}
	c.apply(fenceSpec(agent, false))
	dc := c.waitHealthy(lab.Nodes())

	// 1. The fence succeeds.
	hw, aw := c.judges("arp-fence")
	probe := c.startProbe("probe-fence", dc)
	t0 := time.Now()
	undo := c.isolate(dc)
	rest := others(dc)
	var ev fenceEvent
	c.eventually("the majority to fence "+dc, 60*time.Second, func() (bool, error) {
		var ok bool
		ev, ok = fenced(c.fenceHistory(rest[0]), dc)
		return ok, nil
	})
	fencedAt := time.Since(t0)
	if ev.Result != "success" || !contains(rest, ev.By) {
		t.Fatalf("the fencing of %s: %+v, want a success by a node of the majority %v", dc, ev, rest)
	}
	next, claimedAt := c.waitVIPOnInterface(rest, 30*time.Second)
	if next != ev.By {
		t.Errorf("%s fenced %s but %s took the VIP", ev.By, dc, next)
	}
	// The kernel's word on the fence: the old DC's link is down, its agent
	// is gone.
	if out := c.l.Run(dc, "ip", "-o", "link", "show", "dev", "eth0"); strings.Contains(out, ",UP") || strings.Contains(out, "<UP") {
		t.Errorf("after the fence %s's eth0 is still up: %s", dc, out)
	}
	if err := c.agents[dc].Wait(5 * time.Second); err == nil || strings.Contains(err.Error(), "still running") {
		t.Errorf("the fenced node's agent: %v; want it killed", err)
	}
	time.Sleep(2 * time.Second) // the client settles on the new DC
	spans, wire := c.verdicts(hw, aw)
	r, err := probe.Stop(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if wire.TwoMACRounds != 0 || overlaps(spans) != 0 {
		t.Errorf("fence: two MACs answered %d rounds (longest %.0f ms), two kernels held the VIP for %s; want neither", wire.TwoMACRounds, wire.LongestTwoMACMS(), overlaps(spans))
	}
	t.Logf("fence: %s cut off; %s fenced it after %s (exit %d) and claimed the VIP after %s; client outage %.0f ms (%d of %d failed)",
		dc, ev.By, fencedAt, ev.ExitCode, claimedAt.Sub(t0), r.LongestOutageMS, r.Failures, r.Attempts)
	figure("lab_fence_fenced_after", ms(fencedAt), "ms")
	figure("lab_fence_vip_claimed_after", ms(claimedAt.Sub(t0)), "ms")
	figure("lab_fence_outage", r.LongestOutageMS, "ms")
	figure("lab_fence_two_macs", wire.LongestTwoMACMS(), "ms")

	// Power the fenced node on again, as a fresh machine: cables back,
	// its service and agent started; it rejoins as a member.
	undo()
	c.l.RunStdin("", "action=on\nplug="+dc+"\n", agent)
	c.startServe(dc)
	c.startAgent(dc)
	dc = c.waitHealthy(lab.Nodes())

	// 2. The device fails: no takeover until an operator confirms.
	c.apply(fenceSpec(agent, true))
	rest = others(dc)
	c.eventually("status to show the device's failed check", 30*time.Second, func() (bool, error) {
		return strings.Contains(c.cli(rest[0], "status"), "validate-all FAILED"), nil
	})
	hw, aw = c.judges("arp-fence-fails")
	t0 = time.Now()
	undo = c.isolate(dc)
	c.eventually("a failed fencing of "+dc, 60*time.Second, func() (bool, error) {
		ev, ok := fenced(c.fenceHistory(rest[0]), dc)
		return ok && ev.Result == "failed", nil
	})
	// The takeover waits: nobody in the majority carries the VIP, for as
	// long as the fence keeps failing (two more attempts' worth).
	watchUntil := time.Now().Add(5 * time.Second)
	for time.Now().Before(watchUntil) {
		for _, n := range rest {
			if c.has(n, "eth0") {
				t.Fatalf("%s claimed the VIP while the fencing of %s failed", n, dc)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := c.cli(rest[0], "status")
	if !strings.Contains(st, "of "+dc+" failed") || !strings.Contains(st, "fences "+dc+" before it claims") {
		t.Errorf("status does not show the failed fencing and the waiting takeover:\n%s", st)
	}
	// The operator makes sure the node is off, then confirms. While the
	// cut-off node is still seen in gossip, the confirmation is refused.
	c.l.RunStdin("", "action=off\nplug="+dc+"\n", agent)
	confirmed := ""
	c.eventually("the confirmation to be accepted", 60*time.Second, func() (bool, error) {
		out, err := c.l.Exec("", c.l.Bin("raftlb"), "fence", "confirm", "--api", "unix://"+c.sock(rest[1]), dc)
		if err != nil {
			if !strings.Contains(out+err.Error(), "answers gossip") {
				return false, fmt.Errorf("confirm: %v: %s", err, out)
			}
			return false, nil
		}
		confirmed = out
		return true, nil
	})
	if !strings.Contains(confirmed, "confirmed on "+rest[1]) {
		t.Errorf("confirm said %q", confirmed)
	}
	next, claimed := c.waitVIPOnInterface(rest, 30*time.Second)
	spans, wire = c.verdicts(hw, aw)
	if wire.TwoMACRounds != 0 || overlaps(spans) != 0 {
		t.Errorf("failing device: two MACs answered %d rounds, two kernels held the VIP for %s; want neither", wire.TwoMACRounds, overlaps(spans))
	}
	t.Logf("failing device: %s cut off; no takeover while the fence failed; %s claimed the VIP %s after the cut, once confirmed", dc, next, claimed.Sub(t0))
	figure("lab_fence_failing_device_two_macs", wire.LongestTwoMACMS(), "ms")

	undo()
	c.l.RunStdin("", "action=on\nplug="+dc+"\n", agent)
	c.startServe(dc)
	c.startAgent(dc)

	// 3. no_quorum freeze, the device still broken: the cut-off DC keeps
	// serving what it holds, past its lease, and the majority does not
	// take over; once the cable is back it learns of the new DC and lets
	// go, and the new DC claims — never two MACs.
	c.apply(fenceSpecQuorum(agent, true, "freeze"))
	dc = c.waitHealthy(lab.Nodes())
	rest = others(dc)
	hw, aw = c.judges("arp-freeze")
	probe = c.startProbe("probe-freeze", dc)
	undo = c.isolate(dc)
	c.eventually("a failed fencing of the frozen "+dc, 60*time.Second, func() (bool, error) {
		ev, ok := fenced(c.fenceHistory(rest[0]), dc)
		return ok && ev.Result == "failed", nil
	})
	// Five seconds of holding, watched: the freeze is a decision to do
	// nothing (keep the VIP), which the frozen agent cannot report while
	// it is cut off, so the window itself is what is tested.
	for until := time.Now().Add(5 * time.Second); time.Now().Before(until); time.Sleep(100 * time.Millisecond) {
		if !c.has(dc, "eth0") {
			t.Fatalf("the frozen DC %s let go of the VIP while cut off (no_quorum freeze)", dc)
		}
	}
	frozenServed, err := probe.Stop(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	undo()
	next, healed := c.waitVIPOnInterface(rest, 60*time.Second)
	c.eventually("the frozen DC to let go", 30*time.Second, func() (bool, error) { return !c.has(dc, "eth0"), nil })
	spans, wire = c.verdicts(hw, aw)
	if wire.TwoMACRounds != 0 || overlaps(spans) != 0 {
		t.Errorf("freeze: two MACs answered %d rounds, two kernels held the VIP for %s; want neither", wire.TwoMACRounds, overlaps(spans))
	}
	t.Logf("freeze: %s cut off kept the VIP and served %d of %d requests while the fence failed; after the cable came back %s held the VIP at %s",
		dc, frozenServed.Successes, frozenServed.Attempts, next, healed.UTC().Format("15:04:05.000"))
	figure("lab_fence_freeze_served_while_cut_off", float64(frozenServed.Successes), "count")
	figure("lab_fence_freeze_two_macs", wire.LongestTwoMACMS(), "ms")

	c.apply(fenceSpec(agent, false))
	c.waitHealthy(lab.Nodes())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
