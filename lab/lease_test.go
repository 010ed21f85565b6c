//go:build lab

package lab_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
	"github.com/raftlb/raftlb/quorum"
)

// TestRaftlbVIPLease: the DC's VIP on its interface carries the lease as
// the kernel holds it (valid and preferred lifetime at most the lease),
// renewed in place (the lifetime goes up again, the address never leaves);
// when the DC's agent is killed and nothing runs after it, the kernel
// drops the VIP from the interface by itself within the lease and its
// slack, and lo keeps its copy; `raftlb release`, as the unit's
// ExecStopPost runs it, takes the VIP and the IPVS rules away at once.
func TestRaftlbVIPLease(t *testing.T) {
	c := newRaftlbCluster(t)
	// The scenario's configuration: the agents run with the default
	// --vip-lease. What the judges allow on top of it is their own
	// (kernelExpiryLate, guestStall, judgeSlack).
	lease := quorum.DefaultLease
	dc := c.waitHealthy(lab.Nodes())

	// Renewal in place, watched for two renewal periods.
	hw := lab.WatchHolders(map[string]*lab.NS{dc: c.ns[dc]}, "eth0", vip)
	var lifetimes []int
	deadline := time.Now().Add(2*lease + time.Second)
	for time.Now().Before(deadline) {
		info, ok, err := c.ns[dc].Addr("eth0", vip)
		if err != nil || !ok {
			t.Fatalf("the DC %s lost the VIP from eth0 while DC (%v)", dc, err)
		}
		if info.ValidLft <= 0 || info.ValidLft > int(lease/time.Second) || info.PreferedLft != info.ValidLft {
			t.Fatalf("the DC's VIP on eth0: valid %d s, preferred %d s; want both at most the %s lease", info.ValidLft, info.PreferedLft, lease)
		}
		lifetimes = append(lifetimes, info.ValidLft)
		time.Sleep(50 * time.Millisecond) // the poll period
	}
	// The kernel reports lifetimes in whole seconds, and a renewal every
	// third of the lease keeps it at the full count; what proves the
	// renewals is that the address outlived its lease several times over
	// without ever leaving (a flap would be a second span).
	spans, _ := hw.Stop()
	if len(spans[dc]) != 1 || spans[dc][0].To.Sub(spans[dc][0].From) < lease+kernelExpiryLate+guestStall {
		t.Errorf("the VIP left the DC's interface while it was renewed, or was not watched past its lease: %v (lifetimes %v)", spans[dc], lifetimes)
	}

	// The agent killed, nothing after it: the kernel alone drops the VIP.
	c.agents[dc].Kill()
	t0 := time.Now()
	c.eventually("the dead agent's kernel to drop the VIP from eth0", 30*time.Second, func() (bool, error) {
		return !c.has(dc, "eth0"), nil
	})
	gone := time.Since(t0)
	if limit := lease + kernelExpiryLate + guestStall; gone > limit+judgeSlack {
		t.Errorf("the dead agent's VIP left eth0 after %s, want within the lease and its slack (%s)", gone, limit)
	}
	if !c.has(dc, "lo") {
		t.Error("the dead agent's node lost the VIP from lo: it is no longer a real server")
	}
	figure("lab_lease_dead_agent_vip_gone", ms(gone), "ms")
	c.startAgent(dc)
	dc = c.waitHealthy(lab.Nodes())

	// The same, with the unit's ExecStopPost: at once, IPVS rules too.
	c.agents[dc].Kill()
	out := c.l.Run(dc, c.l.Bin("raftlb"), "release", "--data-dir", filepath.Join(c.dir, dc), "--api", "unix://"+c.sock(dc))
	if !strings.Contains(out, "released 1 VIP") {
		t.Errorf("raftlb release said %q", out)
	}
	if _, ok, err := c.table(dc); err != nil || ok || c.has(dc, "eth0") || !c.has(dc, "lo") {
		t.Errorf("after raftlb release: IPVS service %v (%v), VIP on eth0 %v, on lo %v; want only the lo copy", ok, err, c.has(dc, "eth0"), c.has(dc, "lo"))
	}
	c.startAgent(dc)
	c.waitHealthy(lab.Nodes())
}
