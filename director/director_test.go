package director

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/spec"
)

func leader(term uint64) cluster.LeaderEvent { return cluster.LeaderEvent{IsLeader: true, Term: term} }

var follower = cluster.LeaderEvent{IsLeader: false}

func TestPlanIsEmptyWhenTheTableMatches(t *testing.T) {
	c := newFakeLog(t)
	c.setSpec(squid("rr"))
	desired := Desired(c.fsm.State(), func(string) bool { return true }, nil, nil)
	current := slices.Clone(desired)
	// The kernel reports the DC's own entry as Local: still a match.
	current[0].Dests = slices.Clone(current[0].Dests)
	current[0].Dests[0].Forward = dataplane.ForwardLocal
	if ops := dataplane.Plan(current, desired, map[netip.Addr]bool{vip: true}); len(ops) != 0 {
		t.Fatalf("no-op plan has %d ops: %v", len(ops), ops)
	}
}

// TestKernelNamesAreTheSpecs: Desired copies the spec's protocol and
// forwarding words into the kernel table as they are written, so the data
// plane's names must be the spec's.
func TestKernelNamesAreTheSpecs(t *testing.T) {
	for spec, kernel := range map[string]string{
		spec.ProtocolTCP:   dataplane.ProtocolTCP,
		spec.ProtocolUDP:   dataplane.ProtocolUDP,
		spec.ForwardRoute:  dataplane.ForwardRoute,
		spec.ForwardMasq:   dataplane.ForwardMasq,
		spec.ForwardTunnel: dataplane.ForwardTunnel,
	} {
		if spec != kernel {
			t.Errorf("the spec says %q, the data plane %q", spec, kernel)
		}
	}
	k := spec.ServiceKey{VIP: vip, Port: 3128, Protocol: spec.ProtocolUDP}
	if got := dataplane.ServiceKey(k).String(); got != k.String() {
		t.Errorf("service key %s in the kernel table, %s in the spec", got, k)
	}
}

func TestDesiredUsesOnlineNodesThenFallback(t *testing.T) {
	c := newFakeLog(t)
	c.setSpec(squid("rr"))
	d := Desired(c.fsm.State(), func(n string) bool { return n != "m40" }, nil, nil)
	if got, want := destsOf(d[0]), map[string]int{"127.0.0.30:3128": 1, "127.0.0.50:3128": 1}; !maps.Equal(got, want) {
		t.Fatalf("real servers %v, want %v", got, want)
	}
	if d[0].Persistence != 20*time.Second || d[0].Scheduler != "rr" {
		t.Errorf("service options %+v", d[0])
	}
	none := Desired(c.fsm.State(), func(string) bool { return false }, nil, nil)
	if len(none[0].Dests) != 1 || none[0].Dests[0].AddrPort().String() != "127.0.0.1:3128" {
		t.Fatalf("with no node online want the fallback only, got %+v", none[0].Dests)
	}
}

// TestDesiredDrainsStoppingNodes: a node whose agent is stopping stays in
// the table at weight 0 (no new connections; those in flight still reach
// it), and counts as no healthy server: with every node stopping, the
// fallback takes the new connections.
func TestDesiredDrainsStoppingNodes(t *testing.T) {
	c := newFakeLog(t)
	c.setSpec(squid("rr"))
	all := func(string) bool { return true }
	d := Desired(c.fsm.State(), all, func(n string) bool { return n == "m40" }, nil)
	if got, want := destsOf(d[0]), map[string]int{"127.0.0.30:3128": 1, "127.0.0.40:3128": 0, "127.0.0.50:3128": 1}; !maps.Equal(got, want) {
		t.Fatalf("real servers %v, want %v", got, want)
	}
	d = Desired(c.fsm.State(), all, all, nil)
	if got, want := destsOf(d[0]), map[string]int{"127.0.0.1:3128": 1, "127.0.0.30:3128": 0, "127.0.0.40:3128": 0, "127.0.0.50:3128": 0}; !maps.Equal(got, want) {
		t.Fatalf("with every node stopping: real servers %v, want %v", got, want)
	}
}

func TestDesiredAppliesHealth(t *testing.T) {
	all := func(string) bool { return true }
	down := func(bad ...string) func(spec.ServiceKey, netip.AddrPort) bool {
		return func(_ spec.ServiceKey, a netip.AddrPort) bool { return !slices.Contains(bad, a.String()) }
	}
	three := []string{"127.0.0.30:3128", "127.0.0.40:3128", "127.0.0.50:3128"}
	for _, tc := range []struct {
		name   string
		onFail string
		bad    []string
		want   map[string]int
	}{
		{"all healthy", "remove", nil,
			map[string]int{"127.0.0.30:3128": 1, "127.0.0.40:3128": 1, "127.0.0.50:3128": 1}},
		{"one down, removed", "remove", three[1:2],
			map[string]int{"127.0.0.30:3128": 1, "127.0.0.50:3128": 1}},
		{"one down, quiescent", "quiescent", three[1:2],
			map[string]int{"127.0.0.30:3128": 1, "127.0.0.40:3128": 0, "127.0.0.50:3128": 1}},
		{"all down: the fallback takes over", "remove", three,
			map[string]int{"127.0.0.1:3128": 1}},
		{"all down, quiescent: weight 0 plus the fallback", "quiescent", three,
			map[string]int{"127.0.0.30:3128": 0, "127.0.0.40:3128": 0, "127.0.0.50:3128": 0, "127.0.0.1:3128": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeLog(t)
			c.setSpec(withCheck(squid("rr"), tc.onFail))
			got := destsOf(Desired(c.fsm.State(), all, nil, down(tc.bad...))[0])
			if !maps.Equal(got, tc.want) {
				t.Fatalf("real servers %v, want %v", got, tc.want)
			}
		})
	}
	// A service without a check ignores health results.
	c := newFakeLog(t)
	c.setSpec(squid("rr"))
	if got := destsOf(Desired(c.fsm.State(), all, nil, down(three[1]))[0]); len(got) != 3 {
		t.Fatalf("unchecked service: real servers %v, want all three", got)
	}
}

// The director's Run loop: leadership events in, kernel state out.

func TestFollowerKeepsVIPOnLoAndNoIPVS(t *testing.T) {
	w := newWorld(t, nil)
	w.run()
	w.c.leaders <- follower
	testkit.WaitFor(t, "VIP on lo", func() bool { return w.has("lo") })
	if w.has("eth0") || len(w.table()) != 0 || len(w.arp.Sent()) != 0 {
		t.Fatalf("follower: eth0=%v ipvs=%v garp=%v", w.has("eth0"), w.table(), w.arp.Sent())
	}
}

// TestRunClaimsAndReleasesOnLeadership: leadership gained, the VIP on the
// interface with its burst and the table; a node gone from gossip leaves
// the table; leadership lost, everything given back.
func TestRunClaimsAndReleasesOnLeadership(t *testing.T) {
	w := newWorld(t, nil)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "VIP on eth0 with its burst, and the table", func() bool {
		return w.has("eth0") && w.has("lo") && len(w.arp.Sent()) == 3 && len(w.dests()) == 3
	})
	w.c.setOnline("m40", false)
	testkit.WaitFor(t, "m40 out of the table", func() bool { return len(w.dests()) == 2 })
	w.c.leaders <- follower
	testkit.WaitFor(t, "VIP back on lo and IPVS empty", func() bool { return w.has("lo") && !w.has("eth0") && len(w.table()) == 0 })
}

// TestStoppingTheDirectorReleases: an agent stopping while DC (its Run
// ends) gives the VIP back to lo and removes its services.
func TestStoppingTheDirectorReleases(t *testing.T) {
	w := newWorld(t, nil)
	stop := w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	stop()
	if w.has("eth0") || !w.has("lo") || len(w.table()) != 0 {
		t.Errorf("after Run ended: VIP on eth0 %v, on lo %v, IPVS %v", w.has("eth0"), w.has("lo"), w.table())
	}
}

// TestRunRefreshesAnnouncements: while DC, one gratuitous ARP per VIP
// every GARPRefresh, after the burst.
func TestRunRefreshesAnnouncements(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.GARPRefresh = 5 * time.Millisecond; c.GARPCount = 1 })
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "refreshed announcements after a burst of one", func() bool { return len(w.arp.Sent()) >= 3 })
}

func TestStartRemovesStaleIPVSRulesForOurVIPs(t *testing.T) {
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	k := realserver.NewFake("eth0")
	rs := realserver.New(k, realserver.Config{Interface: "eth0", StateFile: t.TempDir() + "/vips.json", Logger: testkit.Discard()})
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	ipvs := dataplane.NewFakeIPVS()
	stale := dataplane.Service{Key: dataplane.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}, Scheduler: "rr"}
	foreign := dataplane.Service{Key: dataplane.ServiceKey{VIP: netip.MustParseAddr("127.0.1.1"), Port: 80, Protocol: "tcp"}, Scheduler: "rr"}
	_ = ipvs.AddService(stale)
	_ = ipvs.AddService(foreign)
	d := New(c, &Dataplane{RS: rs, IPVS: ipvs, ARP: &dataplane.FakeARP{}}, testConfig(t, &testkit.LogBuffer{}))
	// follow is Run's first step, before any leadership event.
	d.follow()
	if tab, _ := ipvs.Services(); len(tab) != 1 || tab[0].Key != foreign.Key {
		t.Fatalf("stale rules not removed or foreign rules touched: %+v", tab)
	}
}

// TestHandOverKeepsVIPsUntilTheSuccessorAnnounces: a DC that hands its
// duties over on purpose sends no new connection to another node from then
// on (every real server but itself at weight 0: established connections
// keep theirs) and keeps the VIP until another host announces it over
// ARP; an announcement of some other address does not count. Then the
// table goes.
func TestHandOverKeepsVIPsUntilTheSuccessorAnnounces(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.HandOverGrace = time.Hour })
	w.run()
	// If the test stops early, end the hour-long grace so Run can stop
	// (cleanups run last first: this one before Run's).
	t.Cleanup(func() { w.arp.Announce("eth0", vip) })
	w.c.leaders <- leader(5)
	testkit.WaitFor(t, "VIP claimed and watched", func() bool { return w.has("eth0") && len(w.table()) == 1 && w.arp.Watching("eth0") })
	// Balancing to other nodes stops before the transfer, while this
	// node still leads.
	w.c.setHandingOver(true)
	if got := w.dests(); !maps.Equal(got, quiesced) || !w.has("eth0") {
		t.Fatalf("hand-over begun: want the table quiesced %v and the VIP kept, got %v, VIP on eth0 %v", quiesced, got, w.has("eth0"))
	}
	w.c.setOnline("m40", true) // a membership change must not rebuild the table
	w.c.leaders <- follower
	testkit.WaitFor(t, "the grace to begin", w.revoking)
	if got := w.dests(); !maps.Equal(got, quiesced) {
		t.Fatalf("the table was rebuilt during the hand-over: %v", got)
	}
	w.arp.Announce("eth0", vip)
	testkit.WaitFor(t, "VIP released and the table gone", func() bool { return w.has("lo") && !w.has("eth0") && len(w.table()) == 0 })
	testkit.WaitFor(t, "the watch to end", func() bool { return !w.arp.Watching("eth0") })
	if !strings.Contains(w.logs.String(), "the successor announced every VIP") {
		t.Errorf("want the successor's announcement logged")
	}
}

// TestOnlyTheSuccessorsAnnouncementEndsTheGrace: during a hand-over, ARP
// from other hosts about other addresses (a real server's own address,
// say) does not count as the successor's announcement; the VIP's does.
// The watcher is asked directly, so the answer does not depend on when
// another goroutine looks.
func TestOnlyTheSuccessorsAnnouncementEndsTheGrace(t *testing.T) {
	arp := &dataplane.FakeARP{}
	a := newAnnouncements(arp, testkit.Discard())
	a.setHandingOver(true)
	other := netip.MustParseAddr("172.95.69.101")
	a.hold(map[netip.Addr]string{vip: "eth0", other: "eth0"})
	defer a.stop()
	a.seen(m40)
	if a.allAnnounced() {
		t.Fatal("an ARP packet from a real server's own address ended the grace")
	}
	a.seen(vip)
	if a.allAnnounced() {
		t.Fatal("the grace ended with one of two VIPs announced")
	}
	a.seen(other)
	if !a.allAnnounced() {
		t.Fatal("both VIPs announced, but the grace goes on")
	}
}

// quiesced is the table of a DC (m30) handing over: no new connection to
// another node.
var quiesced = map[string]int{"127.0.0.30:3128": 1, "127.0.0.40:3128": 0, "127.0.0.50:3128": 0}

// TestFailedHandOverBalancesAgain: a hand-over that fails leaves this node
// DC; it rebuilds its table at once.
func TestFailedHandOverBalancesAgain(t *testing.T) {
	w := newWorld(t, nil)
	w.run()
	w.c.leaders <- leader(5)
	testkit.WaitFor(t, "VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	w.c.setHandingOver(true)
	if got := w.dests(); !maps.Equal(got, quiesced) {
		t.Fatalf("hand-over begun: want balancing to other nodes stopped, got %v", got)
	}
	w.c.setHandingOver(false)
	testkit.WaitFor(t, "the table rebuilt", func() bool { return len(w.dests()) == 3 })
	if !w.has("eth0") {
		t.Error("the VIP left the interface")
	}
}

// TestHandOverCalledOffEndsTheGrace: when the hand-over is called off
// after leadership was lost (the transfer failed and no successor was
// elected: quorum lost), the VIP is released at once, not at the end of
// the grace.
func TestHandOverCalledOffEndsTheGrace(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.HandOverGrace = time.Hour })
	w.run()
	t.Cleanup(func() { w.arp.Announce("eth0", vip) })
	w.c.leaders <- leader(5)
	testkit.WaitFor(t, "VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	w.c.setHandingOver(true)
	w.c.leaders <- follower
	testkit.WaitFor(t, "the grace to begin", w.revoking)
	w.c.setHandingOver(false)
	testkit.WaitFor(t, "VIP released", func() bool { return w.has("lo") && !w.has("eth0") })
	if !strings.Contains(w.logs.String(), "hand-over called off") {
		t.Errorf("want the call-off logged")
	}
}

// TestHandOverGraceEndsWithoutSuccessor: with no announcement the VIP is
// released when the grace ends; a DC that loses leadership (not handing
// over) releases at once, without a grace.
func TestHandOverGraceEndsWithoutSuccessor(t *testing.T) {
	for _, handingOver := range []bool{true, false} {
		w := newWorld(t, nil)
		stop := w.run()
		w.c.leaders <- leader(5)
		testkit.WaitFor(t, "VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
		if handingOver {
			w.c.setHandingOver(true)
		}
		w.c.leaders <- follower
		// The release is logged after the kernel state changes: wait for
		// the line, not only for the state, before reading the order.
		testkit.WaitFor(t, "VIP released", func() bool {
			return w.has("lo") && !w.has("eth0") && len(w.table()) == 0 && w.logs.Count("DC duties released") > 0
		})
		out := w.logs.String()
		grace := strings.Index(out, "no successor announced every VIP within the grace")
		released := strings.Index(out, "DC duties released")
		switch {
		case handingOver && (grace < 0 || grace > released):
			t.Errorf("hand-over: want the grace to end before the release, logs:\n%s", out)
		case !handingOver && strings.Contains(out, "handing over"):
			t.Errorf("lost leadership: want no grace, logs:\n%s", out)
		}
		stop()
	}
}

// TestAnnouncementOfHeldVIPIsAConflict: another host announcing a VIP the
// DC holds, outside a hand-over, is logged once as a conflict and changes
// nothing.
func TestAnnouncementOfHeldVIPIsAConflict(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(5)
	testkit.WaitFor(t, "the ARP watch", func() bool { return w.arp.Watching("eth0") })
	w.arp.Announce("eth0", m40) // a real server's ARP for its own address
	if n := w.logs.Count("address conflict"); n != 0 {
		t.Errorf("ARP for an address the DC does not hold logged %d conflicts", n)
	}
	w.arp.Announce("eth0", vip)
	w.arp.Announce("eth0", vip)
	if n := w.logs.Count("address conflict"); n != 1 {
		t.Errorf("want one conflict warning, got %d", n)
	}
	conflicts := 0
	for _, e := range w.events() {
		if e == "address_conflict 172.95.69.100" {
			conflicts++
		}
	}
	if conflicts != 1 {
		t.Errorf("events %q, want one address_conflict for the VIP", w.events())
	}
	if !w.has("eth0") || len(w.table()) != 1 || tm.held == nil {
		t.Error("a conflicting announcement changed what the DC holds")
	}
}
