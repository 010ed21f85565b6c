package inproc

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
	rspec "github.com/raftlb/raftlb/spec"
)

var vip = netip.MustParseAddr("172.95.69.100")

func spec(scheduler string) rspec.Spec {
	return rspec.Spec{
		VIPs: []rspec.VIP{{Address: vip, Interface: "eth0"}},
		Services: []rspec.Service{{
			Name: "squid", VIP: vip, Port: 3128, Protocol: "tcp", Scheduler: scheduler, Forwarding: "route",
			RealServers: rspec.RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
		}},
		Policy: rspec.Policy{NoQuorum: "stop"},
	}
}

// TestCheckerCatchesBrokenInvariants: the checker's own failing test, on
// writes it is fed one by one with a clock the test moves.
func TestCheckerCatchesBrokenInvariants(t *testing.T) {
	leader, terms, high := map[string]bool{"n1": true}, map[string]uint64{"n1": 3, "n2": 3}, uint64(3)
	c := NewChecker(100*time.Millisecond, func(n string) (bool, uint64) { return leader[n], terms[n] }, func() uint64 { return high })
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }

	c.Addr("n1", "add eth0 172.95.69.100/32")
	c.Addr("n2", "add lo 172.95.69.100/32") // lo: a real server, not a holder
	now = now.Add(time.Second)
	if v := c.Violations(); len(v) != 0 {
		t.Fatalf("one holder and a real server: violations %v", v)
	}
	c.Addr("n2", "add eth0 172.95.69.100/32")
	now = now.Add(50 * time.Millisecond)
	c.Addr("n2", "del eth0 172.95.69.100/32")
	if v := c.Violations(); len(v) != 0 || c.LongestOverlap() != 50*time.Millisecond {
		t.Fatalf("a 50 ms overlap within the 100 ms allowed: violations %v, longest %s", v, c.LongestOverlap())
	}
	c.Addr("n2", "add eth0 172.95.69.100/32")
	now = now.Add(200 * time.Millisecond)
	if v := c.Violations(); len(v) != 1 || !strings.Contains(v[0], "so far") {
		t.Fatalf("an overlap of 200 ms still going on: violations %v", v)
	}
	c.Addr("n1", "del eth0 172.95.69.100/32")
	if v := c.Violations(); len(v) != 1 || !strings.Contains(v[0], "200ms") {
		t.Fatalf("an overlap of 200 ms: violations %v", v)
	}

	c.IPVS("n2", "del-service 172.95.69.100:3128/tcp") // removing needs no leadership
	c.IPVS("n1", "add-service 172.95.69.100:3128/tcp rr")
	if v := c.Violations(); len(v) != 1 {
		t.Fatalf("the DC's write and a follower's delete: violations %v", v)
	}
	c.IPVS("n2", "add-dest 172.95.69.100:3128/tcp -> 127.0.1.2:3128 w1")
	high = 4 // someone else leads in a later term; n1 does not know yet
	c.IPVS("n1", "update-dest 172.95.69.100:3128/tcp -> 127.0.1.2:3128 w2")
	if v := c.Violations(); len(v) != 3 || !strings.Contains(v[1], "by n2") || !strings.Contains(v[2], "highest term is 4") {
		t.Fatalf("writes by a follower and by a leader of an old term: violations %v", v)
	}

	// A crashed machine holds nothing, and what its dying processes write
	// does not count.
	c.Addr("n1", "add eth0 172.95.69.100/32")
	c.Crashed("n1")
	c.Addr("n1", "add eth0 172.95.69.100/32")
	c.IPVS("n1", "add-service 172.95.69.100:3128/tcp rr")
	now = now.Add(time.Hour)
	if v := c.Violations(); len(v) != 3 {
		t.Fatalf("after a crash: violations %v", v)
	}
}

// TestCheckerNoticesASecondHolder: in a running cluster, the VIP put by
// hand on a member's interface is a violation (with no overlap allowed:
// the member's director may take it off again at its next event).
func TestCheckerNoticesASecondHolder(t *testing.T) {
	c := Start(t, Options{})
	c.Apply("n1", spec("rr"))
	c.Converged()
	c.Checker.mu.Lock()
	c.Checker.MaxOverlap = 0
	c.Checker.mu.Unlock()
	dc := c.WaitDC()
	var member *Node
	for _, n := range c.Nodes() {
		if n != dc {
			member = n
		}
	}
	if err := member.K.AddrAdd("eth0", netip.PrefixFrom(vip, 32)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the checker to notice two holders", func() bool { return len(c.Checker.Violations()) > 0 })
}

func sizes(t *testing.T, run func(t *testing.T, n int)) {
	for _, n := range []int{3, 5} {
		t.Run(map[int]string{3: "3 nodes", 5: "5 nodes"}[n], func(t *testing.T) { run(t, n) })
	}
}

// serving starts a cluster of size nodes serving spec("rr"), converged,
// and returns it with its DC.
func serving(t *testing.T, size int) (*Cluster, *Node) {
	t.Helper()
	c := Start(t, Options{Nodes: size})
	c.Apply("n1", spec("rr"))
	c.Converged()
	return c, c.WaitDC()
}

func others(c *Cluster, n *Node) []*Node {
	var out []*Node
	for _, o := range c.Nodes() {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// TestDCCrash: the DC's machine dies; another node becomes DC, holds the
// VIP and the table; no instant has two holders; the machine comes back
// as a member.
func TestDCCrash(t *testing.T) {
	sizes(t, func(t *testing.T, size int) {
		c, dc := serving(t, size)
		c.Crash(dc.Name)
		next := c.WaitDC(others(c, dc)...)
		c.Converged()
		if next == dc || c.Checker.LongestOverlap() != 0 {
			t.Errorf("after the crash of %s: DC %s, two holders for %s; want another DC and no overlap", dc.Name, next.Name, c.Checker.LongestOverlap())
		}
		c.Restart(dc.Name)
		c.Converged()
	})
}

// TestDCAgentKilled: the DC's agent is killed (kill -9) while its machine
// runs on, so its kernel keeps the VIP until the lease ends there. With
// takeover lease the new DC claims only after that: never two holders.
// With immediate it claims at once, and the two hold the VIP together
// for no longer than the lease (the judge sees that overlap, so it would
// see one under lease). The killed agent comes back as a member.
func TestDCAgentKilled(t *testing.T) {
	lease := quorum.Lease{Duration: 2 * time.Second}
	for _, policy := range []string{rspec.TakeoverLease, rspec.TakeoverImmediate} {
		t.Run(policy, func(t *testing.T) {
			c := Start(t, Options{Lease: lease, MaxOverlap: lease.Duration + lease.WriteWindow()})
			s := spec("rr")
			s.Policy.Takeover = policy
			c.Apply("n1", s)
			c.Converged()
			dc := c.WaitDC()
			c.Kill(dc.Name)
			next := c.WaitDC(others(c, dc)...)
			testkit.WaitFor(t, "the new DC to hold the VIP", func() bool { return next.Holds(vip) })
			testkit.WaitFor(t, "the killed agent's VIP to expire", func() bool { return !dc.Holds(vip) })
			overlap := c.Checker.LongestOverlap()
			switch policy {
			case rspec.TakeoverLease:
				if overlap != 0 {
					t.Errorf("takeover lease: %s and %s both carried the VIP for %s", dc.Name, next.Name, overlap)
				}
			case rspec.TakeoverImmediate:
				if overlap == 0 || overlap > lease.Duration+lease.WriteWindow() {
					t.Errorf("takeover immediate: two holders for %s, want some, at most the lease %s", overlap, lease.Duration)
				}
			}
			if h := next.C.FSM().State().Holders[vip]; h.Node != next.Name {
				t.Errorf("recorded holder %+v, want %s", h, next.Name)
			}
			c.Restart(dc.Name)
			c.Converged()
		})
	}
}

// TestDCIsolated: the DC's cable is pulled. It loses quorum and lets go of
// the VIP before another node can be elected (invariant 3): never two
// holders; the majority elects a DC that holds the VIP; when the cable is
// back, the old DC follows.
func TestDCIsolated(t *testing.T) {
	sizes(t, func(t *testing.T, size int) {
		c, dc := serving(t, size)
		c.Isolate(dc.Name)
		next := c.WaitDC(others(c, dc)...)
		testkit.WaitFor(t, "the cut-off DC to let go and the new one to hold the VIP", func() bool {
			return !dc.Holds(vip) && next.Holds(vip)
		})
		if c.Checker.LongestOverlap() != 0 {
			t.Errorf("the cut-off DC %s and the new DC %s both carried the VIP for %s", dc.Name, next.Name, c.Checker.LongestOverlap())
		}
		c.Heal()
		c.Converged()
	})
}

// TestGracefulHandOver: the DC stops gracefully; the successor announces
// the VIP on the LAN and the old DC lets go as soon as it hears it: two
// holders for a moment, within the grace.
func TestGracefulHandOver(t *testing.T) {
	sizes(t, func(t *testing.T, size int) {
		c, dc := serving(t, size)
		c.Stop(dc.Name)
		next := c.WaitDC(others(c, dc)...)
		c.Converged()
		if next == dc || dc.Holds(vip) || dc.OnLo(vip) {
			t.Errorf("after %s stopped: DC %s; the stopped node holds the VIP %v, on lo %v", dc.Name, next.Name, dc.Holds(vip), dc.OnLo(vip))
		}
		if o := c.Checker.LongestOverlap(); o > c.opts.HandOverGrace {
			t.Errorf("two holders for %s during the hand-over, want at most the grace %s", o, c.opts.HandOverGrace)
		}
	})
}

// TestSpecChangeDuringFailover: a spec submitted while the DC has just
// died is committed by the next DC, reaches every node and the new DC's
// table, and is never lost.
func TestSpecChangeDuringFailover(t *testing.T) {
	sizes(t, func(t *testing.T, size int) {
		c, dc := serving(t, size)
		c.Crash(dc.Name)
		via := others(c, dc)[0]
		version := c.Apply(via.Name, spec("wlc"))
		c.Converged()
		next := c.WaitDC()
		tab, _ := next.IPVS.Services()
		if len(tab) != 1 || tab[0].Scheduler != "wlc" {
			t.Errorf("the new DC %s's table %+v, want the new spec's wlc", next.Name, tab)
		}
		for _, n := range c.Nodes() {
			if v := n.C.FSM().Spec().Version; v != version {
				t.Errorf("%s has spec version %d, want %d", n.Name, v, version)
			}
		}
	})
}

// TestTwoNodesAndAWitness: two data-plane nodes and a witness survive the
// loss of either data-plane node; the witness, made leader, hands
// leadership to a node that can direct at once; a spec whose VIP names an
// interface the nodes lack is refused at apply, naming them, and changes
// nothing.
func TestTwoNodesAndAWitness(t *testing.T) {
	c := Start(t, Options{Witness: "n3"})
	c.Apply("n1", spec("rr"))
	c.Converged()
	for _, lost := range []string{"n1", "n2"} {
		survivor := map[string]string{"n1": "n2", "n2": "n1"}[lost]
		c.Crash(lost)
		testkit.WaitFor(t, survivor+" to hold the VIP after "+lost+" died", func() bool {
			dc := c.WaitDC(c.Node(survivor), c.Node("n3"))
			return dc.Name == survivor && c.Node(survivor).Holds(vip)
		})
		c.Converged()
		c.Restart(lost)
		c.Converged()
	}

	dc := c.WaitDC()
	if err := dc.C.TransferLeadershipTo("n3", "test: the witness is elected"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the witness to hand leadership back", func() bool {
		next := c.WaitDC()
		return next.Name != "n3" && next.Holds(vip)
	})
	c.Converged()

	bad := spec("rr")
	bad.VIPs[0].Interface = "e0"
	before := c.Node("n1").C.FSM().Spec().Version
	_, err := c.Node("n3").C.ApplySpec(context.Background(), bad, 0)
	var ve *rspec.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "e0 is missing on n1, n2") {
		t.Fatalf("a spec naming a missing interface: %v, want a validation error naming n1 and n2", err)
	}
	if v := c.Node("n1").C.FSM().Spec().Version; v != before {
		t.Errorf("the refused spec changed the version %d → %d", before, v)
	}
}

// TestStandbyAndDisabledServer: a real server disabled, and a node in
// standby, keep their place in the DC's IPVS table with weight 0 (no new
// connections, the ones they have finish); a DC put in standby hands the
// role over gracefully, and a node in standby is not chosen while another
// can direct. Undone, both come back. The checker stays on throughout.
func TestStandbyAndDisabledServer(t *testing.T) {
	c, dc := serving(t, 3)
	weights := func(n *Node) map[netip.Addr]int {
		out := map[netip.Addr]int{}
		svcs, _ := n.IPVS.Services()
		for _, s := range svcs {
			for _, d := range s.Dests {
				out[d.Addr] = d.Weight
			}
		}
		return out
	}
	ctx := context.Background()
	member := others(c, dc)[0]
	key := rspec.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}
	if err := member.C.SetServerDisabled(ctx, fsm.ServerRef{Service: key, Server: netip.AddrPortFrom(member.IP, 3128)}, true); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the disabled server at weight 0 on the DC", func() bool {
		w := weights(dc)
		return len(w) == 3 && w[member.IP] == 0 && w[dc.IP] == 1
	})

	// The DC in standby: the role moves, and the old DC drains.
	if err := member.C.SetStandby(ctx, dc.Name, true); err != nil {
		t.Fatal(err)
	}
	next := c.WaitDC(others(c, dc)...)
	if next == dc {
		t.Fatal("the DC in standby is still DC")
	}
	testkit.WaitFor(t, "the node in standby at weight 0 on the new DC", func() bool {
		w := weights(next)
		return len(w) == 3 && w[dc.IP] == 0
	})
	for _, d := range next.C.Directors() {
		if d == dc.Name {
			t.Errorf("a node in standby is among those that can direct: %v", next.C.Directors())
		}
	}

	if err := member.C.SetStandby(ctx, dc.Name, false); err != nil {
		t.Fatal(err)
	}
	if err := member.C.SetServerDisabled(ctx, fsm.ServerRef{Service: key, Server: netip.AddrPortFrom(member.IP, 3128)}, false); err != nil {
		t.Fatal(err)
	}
	now := c.WaitDC()
	testkit.WaitFor(t, "every server back at weight 1", func() bool {
		w := weights(now)
		return len(w) == 3 && w[dc.IP] == 1 && w[member.IP] == 1
	})
	if v := c.Checker.Violations(); len(v) != 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestPreferredDC: without preempt the preferred node takes the role only
// when it moves (dc move without a node), never from a healthy DC by
// itself; with preempt it takes it as soon as it can direct, and again
// when it comes back after a crash.
func TestPreferredDC(t *testing.T) {
	c, dc := serving(t, 3)
	// The preferred node is the last by name among the others, so a move
	// to "any" that ignored it would pick the other one.
	preferred := others(c, dc)[1]
	s := spec("rr")
	s.Policy.PreferredDC = preferred.Name
	c.Apply(dc.Name, s)
	c.Converged()
	if now := c.WaitDC(); now != dc {
		t.Fatalf("a preferred DC without preempt took the role from a healthy DC (%s → %s)", dc.Name, now.Name)
	}
	moved, err := others(c, preferred)[0].C.MoveDC(context.Background(), "")
	if err != nil || moved != preferred.Name {
		t.Fatalf("dc move without a node: %q, %v; want the preferred %s", moved, err, preferred.Name)
	}
	c.WaitDC()
	// Back to another node, then preempt: the role returns at once.
	if _, err := preferred.C.MoveDC(context.Background(), dc.Name); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, dc.Name+" to lead again", func() bool { return c.WaitDC() == dc })
	s.Policy.Preempt = true
	c.Apply(dc.Name, s)
	testkit.WaitFor(t, "the preferred DC to preempt", func() bool { return c.WaitDC() == preferred })
	c.Crash(preferred.Name)
	rest := others(c, preferred)
	c.WaitDC(rest...)
	c.Restart(preferred.Name)
	testkit.WaitFor(t, "the preferred DC to take the role back", func() bool { return c.WaitDC() == c.Node(preferred.Name) })
	if v := c.Checker.Violations(); len(v) != 0 {
		t.Errorf("violations: %v", v)
	}
}
