package director

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/spec"
)

// The steps of a DC's term, called one by one as the term's loop would.

// established returns a term that has gone through establish with
// leadership verified, its takeover burst not sent yet.
func (w *world) established(n uint64) *term {
	w.t.Helper()
	tm := w.d.newTerm(n)
	w.t.Cleanup(tm.revoke)
	if err := tm.establish(context.Background()); err != nil {
		w.t.Fatalf("establish: %v", err)
	}
	return tm
}

var errNotLeader = errors.New("node is not the leader")

// TestClaimNeedsVerifiedLeadership: a term whose leadership cannot be
// verified places nothing: no VIP on the interface, no IPVS service, no
// gratuitous ARP (invariant 2), and says why.
func TestClaimNeedsVerifiedLeadership(t *testing.T) {
	w := newWorld(t, nil)
	w.c.setVerifyErr(errNotLeader)
	tm := w.d.newTerm(3)
	defer tm.revoke()
	err := tm.establish(context.Background())
	if err == nil || !strings.Contains(err.Error(), "claim failed") || !errors.Is(err, errNotLeader) {
		t.Fatalf("establish without verified leadership: %v, want the claim to fail for want of leadership", err)
	}
	if w.has("eth0") || len(w.table()) != 0 || len(w.arp.Sent()) != 0 || tm.burstLeft != 0 {
		t.Errorf("an unverified term acted: VIP on eth0 %v, IPVS %v, gratuitous ARP %v, burst %d", w.has("eth0"), w.table(), w.arp.Sent(), tm.burstLeft)
	}
}

// TestFailedClaimPlacesNothing: a claim the kernel refuses for one VIP
// (its interface is missing) takes back what it placed: no VIP on an
// interface, no IPVS service — a DC that does not hold its VIPs balances
// nothing.
func TestFailedClaimPlacesNothing(t *testing.T) {
	w := newWorld(t, nil)
	s := squid("rr")
	s.VIPs = append(s.VIPs, spec.VIP{Address: netip.MustParseAddr("172.95.69.101"), Interface: "eth9"})
	w.c.setSpec(s)
	tm := w.d.newTerm(3)
	defer tm.revoke()
	if err := tm.claim(); err == nil || !strings.Contains(err.Error(), "eth9") {
		t.Fatalf("claim with a VIP on a missing interface: %v, want an error naming eth9", err)
	}
	if w.has("eth0") || len(w.table()) != 0 {
		t.Errorf("after a failed claim: VIP on eth0 %v, IPVS %v; want neither", w.has("eth0"), w.table())
	}
}

// TestEveryEventNeedsVerifiedLeadership: once a term has lost its
// leadership (a newer term elsewhere), no event makes it write. The
// events are every one the term knows (eventNames), so a new one cannot
// be left out.
func TestEveryEventNeedsVerifiedLeadership(t *testing.T) {
	for ev := range event(len(eventNames)) {
		t.Run(ev.String(), func(t *testing.T) {
			w := newWorld(t, nil)
			tm := w.established(4)
			w.ipvs.TakeWrites()
			w.k.ResetWrites()
			sent := len(w.arp.Sent())
			// Something for every event to do, were it allowed to: a
			// new scheduler, a node gone, a burst pending.
			w.c.setSpec(squid("wlc"))
			w.c.setOnline("m40", false)
			w.c.setVerifyErr(errNotLeader)
			if err := tm.handle(ev); !errors.Is(err, errNotLeader) {
				t.Errorf("handle(%s) without leadership: %v, want the verification's error", ev, err)
			}
			if wr := w.ipvs.TakeWrites(); len(wr) != 0 {
				t.Errorf("handle(%s) without leadership wrote IPVS: %v", ev, wr)
			}
			if wr := w.k.Writes; len(wr) != 0 {
				t.Errorf("handle(%s) without leadership changed addresses: %v", ev, wr)
			}
			if n := len(w.arp.Sent()); n != sent {
				t.Errorf("handle(%s) without leadership sent %d gratuitous ARPs", ev, n-sent)
			}
		})
	}
}

// TestEstablishClaimsAndBursts: after establish the VIP is on the
// interface (not lo), the table has the three nodes, and the burst
// sends GARPCount rounds, one per evBurst, then stops.
func TestEstablishClaimsAndBursts(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.GARPCount = 3 })
	tm := w.established(2)
	if !w.has("eth0") || !w.has("lo") {
		t.Fatalf("VIP on eth0 %v, on lo %v; want both (lo keeps the node a real server when the lease ends)", w.has("eth0"), w.has("lo"))
	}
	if got := w.dests(); len(got) != 3 || w.table()[0].Scheduler != "rr" {
		t.Fatalf("IPVS table %+v, want rr over three real servers", w.table())
	}
	if tm.burstLeft != 3 {
		t.Fatalf("burst of %d rounds scheduled, want 3", tm.burstLeft)
	}
	for i := 1; i <= 4; i++ {
		if err := tm.handle(evBurst); err != nil {
			t.Fatal(err)
		}
		want := min(i, 3)
		if got := w.arp.Sent(); len(got) != want || got[0] != "eth0 "+vip.String() {
			t.Fatalf("after %d burst events: gratuitous ARPs %v, want %d for %s on eth0", i, got, want, vip)
		}
	}
}

// TestRefreshAnnouncesEveryHeldVIP: the periodic refresh sends one
// gratuitous ARP per VIP this term holds.
func TestRefreshAnnouncesEveryHeldVIP(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	before := len(w.arp.Sent())
	if err := tm.handle(evRefresh); err != nil {
		t.Fatal(err)
	}
	if got := w.arp.Sent()[before:]; !slices.Equal(got, []string{"eth0 " + vip.String()}) {
		t.Errorf("refresh sent %v, want one gratuitous ARP for %s on eth0", got, vip)
	}
}

// TestEventsReconcile: a spec change is one update; a node whose agent
// stops is drained, and leaves the table once it is gone from gossip; the periodic reconcile repairs an edit made
// behind raftlb's back; a no-op makes no write.
func TestEventsReconcile(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	w.ipvs.TakeWrites()

	if err := tm.handle(evTick); err != nil {
		t.Fatal(err)
	}
	if wr := w.ipvs.TakeWrites(); len(wr) != 0 {
		t.Fatalf("a reconcile with nothing to do wrote %v", wr)
	}
	w.c.setSpec(squid("wlc"))
	if err := tm.handle(evSpec); err != nil {
		t.Fatal(err)
	}
	if wr := w.ipvs.TakeWrites(); !slices.Equal(wr, []string{"update-service 172.95.69.100:3128/tcp wlc"}) {
		t.Fatalf("a scheduler change wrote %v, want one update", wr)
	}
	// m40's agent stops: drained first, then gone from gossip.
	w.c.setStopping("m40")
	if err := tm.handle(evMembers); err != nil {
		t.Fatal(err)
	}
	if wr := w.ipvs.TakeWrites(); !slices.Equal(wr, []string{"update-dest 172.95.69.100:3128/tcp -> 127.0.0.40:3128 w0"}) {
		t.Fatalf("a stopping node wrote %v, want its weight set to 0", wr)
	}
	w.c.setOnline("m40", false)
	if err := tm.handle(evMembers); err != nil {
		t.Fatal(err)
	}
	if got := w.dests(); !maps.Equal(got, map[string]int{"127.0.0.30:3128": 1, "127.0.0.50:3128": 1}) {
		t.Fatalf("after m40 left gossip the table has %v, want m30 and m50", got)
	}
	// Someone deletes a real server by hand.
	if err := w.ipvs.DelDest(w.table()[0].Key, dataplane.Dest{Addr: m30, Port: 3128}); err != nil {
		t.Fatal(err)
	}
	if err := tm.handle(evTick); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.dests()["127.0.0.30:3128"]; !ok {
		t.Errorf("the periodic reconcile did not repair the table: %v", w.dests())
	}
}

// TestRevokeReleasesEverything: the end of a term puts the VIP back on lo,
// removes the IPVS services, stops the ARP watch, the health checks and
// the membership step.
func TestRevokeReleasesEverything(t *testing.T) {
	w := newWorld(t, nil)
	w.c.setSpec(withCheck(squid("rr"), "remove"))
	tm := w.d.newTerm(2)
	if err := tm.establish(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the ARP watch and the membership step", func() bool {
		return w.arp.Watching("eth0") && w.c.reconciledMembers() > 0
	})
	if w.d.Health() == nil {
		t.Fatal("no health checks while DC")
	}
	tm.revoke()
	if w.has("eth0") || !w.has("lo") || len(w.table()) != 0 {
		t.Errorf("after revoke: VIP on eth0 %v, on lo %v, IPVS %v; want lo only and no service", w.has("eth0"), w.has("lo"), w.table())
	}
	if w.arp.Watching("eth0") || w.d.Health() != nil {
		t.Errorf("after revoke: ARP watched %v, health checks %v; want both stopped", w.arp.Watching("eth0"), w.d.Health())
	}
	calls := w.c.reconciledMembers()
	w.c.setOnline("m40", false) // a membership change after the term
	if got := w.c.reconciledMembers(); got != calls {
		t.Errorf("the membership step ran after revoke (%d calls, then %d)", calls, got)
	}
}

// TestEstablishThatKeepsFailingHandsOver: a barrier that never completes,
// or a VIP the kernel refuses, ends in a leadership transfer to a node that
// can direct, saying why — not in a silent retry loop; after a refused
// claim this node tells its peers it cannot direct. A node that lacks a
// VIP's interface knows it cannot before it tries, and hands over at once.
func TestEstablishThatKeepsFailingHandsOver(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		breakIt      func(w *world)
		tried        bool // the claim was tried (and logged as given up)
		cannot       bool // this node says it cannot direct afterwards
	}{
		{"barrier", "barrier failed 2 times", func(w *world) { w.c.barrierErr = errors.New("timed out enqueuing operation") }, true, false},
		{"claim refused", "claim failed 2 times", func(w *world) { w.k.Refuse(errors.New("permission denied")) }, true, true},
		{"interface missing", "lacks the interface of VIP 172.95.69.100 on eth9", func(w *world) {
			s := squid("rr")
			s.VIPs[0].Interface = "eth9" // not on this node
			w.c.setSpec(s)
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			tc.breakIt(w)
			w.run()
			w.c.leaders <- leader(7)
			testkit.WaitFor(t, "a leadership transfer", func() bool { return len(w.c.transferReasons()) > 0 })
			if r := w.c.transferReasons()[0]; !strings.HasPrefix(r, "m40: ") || !strings.Contains(r, tc.reason) {
				t.Errorf("transfer %q, want one to m40 (the first node that can direct) saying %q", r, tc.reason)
			}
			if tried := strings.Contains(w.logs.String(), "cannot carry out the DC's duties"); tried != tc.tried {
				t.Errorf("the give-up logged %v, want %v:\n%s", tried, tc.tried, w.logs.String())
			}
			if can, why := w.c.CanDirect(); can == tc.cannot {
				t.Errorf("can direct %v (%q), want %v", can, why, !tc.cannot)
			}
			// The transfer elects another node; this one follows.
			w.c.leaders <- follower
			testkit.WaitFor(t, "the failed term to end", func() bool { return w.d.current.Load() == nil })
			if w.has("eth0") || len(w.table()) != 0 {
				t.Errorf("a term that failed to start left VIP on eth0 %v, IPVS %v", w.has("eth0"), w.table())
			}
		})
	}
}

// TestNoDataplaneCoordinatesOnly: a node without a data plane (a witness)
// runs the membership step while DC, touches nothing else, and hands
// leadership to a node that can direct; with none reachable it says so
// and keeps trying.
func TestNoDataplaneCoordinatesOnly(t *testing.T) {
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	c.cannot = map[string]bool{"m40": true}
	c.online["m50"] = false
	logs := &testkit.LogBuffer{}
	d := New(c, nil, testConfig(t, logs))
	tm := d.newTerm(2)
	if err := tm.establish(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The first hand-off attempt is made before establish returns.
	if !strings.Contains(logs.String(), "no node that can is reachable") {
		t.Fatalf("no attempt to hand leadership on, or no complaint that nobody can direct:\n%s", logs.String())
	}
	testkit.WaitFor(t, "the membership step", func() bool { return c.reconciledMembers() > 0 })
	if r := c.transferReasons(); len(r) != 0 {
		t.Errorf("handed leadership to %v, none of which can direct", r)
	}
	c.setOnline("m50", true) // a membership change: the hand-off tries again
	testkit.WaitFor(t, "leadership handed to m50", func() bool {
		r := c.transferReasons()
		return len(r) > 0 && strings.HasPrefix(r[0], "m50: ")
	})
	for _, ev := range []event{evSpec, evMembers, evTick, evRefresh} {
		if err := tm.handle(ev); err != nil {
			t.Errorf("handle(%s) without a data plane: %v", ev, err)
		}
	}
	tm.revoke()
	if _, err := d.Table(); !errors.Is(err, dataplane.ErrNoKernel) {
		t.Errorf("Table without a data plane: %v, want ErrNoKernel", err)
	}
}

// TestCheckSpecNamesMissingInterfaces: before a spec is committed the DC
// asks every member whether it has each VIP's interface; the problems
// name the VIP, the interface and the nodes that lack it.
func TestCheckSpecNamesMissingInterfaces(t *testing.T) {
	w := newWorld(t, nil)
	s := squid("rr")
	if p := w.d.CheckSpec(context.Background(), s); len(p) != 0 {
		t.Fatalf("a spec every node can carry: %v", p)
	}
	s.VIPs = append(s.VIPs, spec.VIP{Address: netip.MustParseAddr("172.95.69.101"), Interface: "e0"})
	p := w.d.CheckSpec(context.Background(), s)
	if len(p) != 1 || p[0].Path != "vips[1].interface" || !strings.Contains(p[0].Message, "e0 is missing on m30, m40, m50") {
		t.Errorf("problems %v, want vips[1].interface: e0 missing on every node", p)
	}
}

func withCheck(s spec.Spec, onFail string) spec.Spec {
	s.Services[0].HealthCheck = &spec.HealthCheck{Type: "tcp", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 2, OnFail: onFail}
	return s
}

// listenAt makes the real servers at addrs answer on port (0: any), and
// returns the port. The others refuse: nothing listens at their loopback
// address.
func listenAt(t *testing.T, port int, addrs ...string) int {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(testkit.Loopback(t, a).String(), strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		port = ln.Addr().(*net.TCPAddr).Port
	}
	return port
}

// checkedSpec is squid with a tcp check against the nodes on port.
func checkedSpec(port int, interval time.Duration, onFail string) spec.Spec {
	s := withCheck(squid("rr"), onFail)
	s.Services[0].Port = uint16(port)
	s.Services[0].RealServers.NodePort = uint16(port)
	s.Services[0].Fallback.Port = uint16(port)
	s.Services[0].HealthCheck.Interval = interval
	return s
}

// waitHealth waits until the monitor reports key's state as want (a
// precondition: it depends on the health package, not the director).
func waitHealth(t *testing.T, tm *term, server string, pred func(health.State) bool) {
	t.Helper()
	testkit.WaitFor(t, "the health state of "+server, func() bool {
		for k, st := range tm.mon.States() {
			if k.Server.String() == server && pred(st) {
				return true
			}
		}
		return false
	})
}

// TestHealthChangeReconciles: a real server that fails `fall` probes in a
// row leaves the table on the health event; the others stay; the term is
// told of the change.
func TestHealthChangeReconciles(t *testing.T) {
	w := newWorld(t, nil)
	port := listenAt(t, 0, "127.0.0.30", "127.0.0.50") // m40 refuses
	w.c.setSpec(checkedSpec(port, 100*time.Millisecond, "remove"))
	tm := w.established(2)
	m40 := "127.0.0.40:" + strconv.Itoa(port)
	if _, ok := w.dests()[m40]; !ok {
		t.Fatalf("a new DC dropped %s before probing it: %v", m40, w.dests())
	}
	waitHealth(t, tm, m40, func(st health.State) bool { return !st.Up })
	select {
	case <-tm.healthChanged:
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("the health change never reached the term")
	}
	if err := tm.handle(evHealth); err != nil {
		t.Fatal(err)
	}
	var down events.Event
	for _, e := range w.bus.Recent() {
		if e.Type == events.ServerDown && e.Server == m40 {
			down = e
		}
	}
	if down.Type == "" || !strings.Contains(down.Error, "refused") {
		t.Errorf("events %q: want server_down for %s with the check's error, got %+v", w.events(), m40, down)
	}
	want := map[string]int{"127.0.0.30:" + strconv.Itoa(port): 1, "127.0.0.50:" + strconv.Itoa(port): 1}
	if got := w.dests(); !maps.Equal(got, want) {
		t.Errorf("after %s failed its checks the table is %v, want %v", m40, got, want)
	}
}

// TestNewDCKeepsServersItHasNotProbed: a new DC does not drop a real
// server before `fall` probes have failed — here each has failed one
// (nothing listens at any of them), fall is 2, and the next probe is an
// hour away.
func TestNewDCKeepsServersItHasNotProbed(t *testing.T) {
	w := newWorld(t, nil)
	port := listenAt(t, 0, "127.0.0.1") // a free port; no node listens on it
	w.c.setSpec(checkedSpec(port, time.Hour, "remove"))
	tm := w.established(4)
	testkit.WaitFor(t, "the first probe of every server", func() bool {
		st := tm.mon.States()
		if len(st) != 3 {
			return false
		}
		for _, s := range st {
			if !s.Checked || s.LastError == "" {
				return false
			}
		}
		return true
	})
	if err := tm.handle(evHealth); err != nil {
		t.Fatal(err)
	}
	if got := w.dests(); len(got) != 3 {
		t.Fatalf("after one failed probe each the table is %v, want the three nodes", got)
	}
	for k, s := range tm.mon.States() {
		if !s.Up {
			t.Errorf("%v marked down after a single failed probe", k.Server)
		}
	}
}

// TestWritesNeedAFreshVerification: a verification allows writes for the
// lease's write window only; past it, the term verifies again before it
// writes, and writes nothing when that fails.
func TestWritesNeedAFreshVerification(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	w.ipvs.TakeWrites()
	w.k.ResetWrites()
	w.c.setSpec(squid("wlc"))
	before := w.c.verifications()
	// Fresh: no second verification for a write right after the first.
	if err := tm.place(); err != nil {
		t.Fatal(err)
	}
	again := w.c.verifications() - before
	if again != 0 || len(w.ipvs.TakeWrites()) != 1 {
		t.Fatalf("a write within the window verified %d more times; want none, and the write made", again)
	}
	// Stale: a stall longer than the window since the verification.
	tm.verifiedAt = time.Now().Add(-2 * testLease.WriteWindow())
	w.c.setVerifyErr(errNotLeader)
	w.c.setSpec(squid("rr"))
	if err := tm.place(); !errors.Is(err, errNotLeader) {
		t.Errorf("a write long after the verification, which no longer holds: %v, want the verification's error", err)
	}
	if wr := w.ipvs.TakeWrites(); len(wr) != 0 {
		t.Errorf("a stale verification allowed IPVS writes %v", wr)
	}
	if err := tm.renew(); !errors.Is(err, errNotLeader) || len(w.k.Writes) != 0 {
		t.Errorf("a stale verification allowed a lease renewal: %v, writes %v", err, w.k.Writes)
	}
}

// TestRenewExtendsTheLease: the renewal event renews every held VIP's
// lease in place, after verifying leadership.
func TestRenewExtendsTheLease(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	w.k.ResetWrites()
	if err := tm.handle(evRenew); err != nil {
		t.Fatal(err)
	}
	if want := []string{"renew eth0 172.95.69.100/32 10s"}; !slices.Equal(w.k.Writes, want) {
		t.Errorf("renewal wrote %v, want %v", w.k.Writes, want)
	}
}

// TestAuditRepairsAFollower: a node that is not DC and finds a VIP on its
// interface, or an IPVS service for one, takes them away and says so.
func TestAuditRepairsAFollower(t *testing.T) {
	w := newWorld(t, nil)
	if err := w.d.follow(); err != nil { // Run's first step
		t.Fatal(err)
	}
	if err := w.k.AddrAdd("eth0", netip.PrefixFrom(vip, 32)); err != nil {
		t.Fatal(err)
	}
	if err := w.ipvs.AddService(dataplane.Service{Key: dataplane.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}, Scheduler: "rr"}); err != nil {
		t.Fatal(err)
	}
	w.d.audit()
	if w.has("eth0") || !w.has("lo") || len(w.table()) != 0 {
		t.Errorf("after the audit: VIP on eth0 %v, on lo %v, IPVS %v", w.has("eth0"), w.has("lo"), w.table())
	}
	if !strings.Contains(w.logs.String(), "not DC but carries a VIP on its interface") {
		t.Errorf("the repair is not logged")
	}
}

// TestStandbyMovesTheDC: a DC put in standby moves the DC role with the
// graceful hand-over; when no node can take it, it stays DC and says so.
func TestStandbyMovesTheDC(t *testing.T) {
	w := newWorld(t, nil)
	w.c.transferErr = errors.New("no other node can direct")
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") })
	w.c.apply(fsm.CmdNodeStandby, fsm.NodeStandby{Node: w.c.Name(), Standby: true, At: time.Now()})
	testkit.WaitFor(t, "a move asked", func() bool { return w.c.movesAsked() == 1 })
	testkit.WaitFor(t, "the failed move to end", func() bool { tm := w.d.current.Load(); return tm != nil && !tm.moving.Load() })
	if !strings.Contains(w.logs.String(), "the DC role could not be moved: this node stays DC") {
		t.Error("the failed move is not logged")
	}
	if !w.has("eth0") {
		t.Error("a DC in standby that could not move gave up its VIP")
	}
	w.c.setTransferErr(nil)
	w.c.setSpec(squid("wlc")) // the next change tries again
	testkit.WaitFor(t, "the move asked again", func() bool { return w.c.movesAsked() == 2 })
}

// TestPreemptMovesTheDC: with preempt, a DC that is not the preferred
// node starts moving the role to it (when it can direct) as soon as the
// spec or the membership changes; without preempt, or while the
// preferred node cannot direct, it does not.
func TestPreemptMovesTheDC(t *testing.T) {
	for _, tc := range []struct {
		name      string
		preempt   bool
		preferred string
		move      bool
	}{
		{"preempt", true, "m40", true},
		{"no preempt", false, "m40", false},
		{"preferred is this node", true, "m30", false},
		{"preferred cannot direct", true, "m50", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			w.c.cannot = map[string]bool{"m50": true}
			s := squid("rr")
			s.Policy.PreferredDC, s.Policy.Preempt = tc.preferred, tc.preempt
			w.c.setSpec(s)
			tm := w.d.newTerm(2)
			tm.ctx = context.Background()
			if err := tm.handle(evMembers); err != nil {
				t.Fatal(err)
			}
			if got := tm.moving.Load(); got != tc.move {
				t.Errorf("moving %v, want %v", got, tc.move)
			}
			tm.wg.Wait()
			if want := map[bool]int{true: 1, false: 0}[tc.move]; w.c.movesAsked() != want {
				t.Errorf("%d moves asked, want %d", w.c.movesAsked(), want)
			}
		})
	}
}

// TestAVerificationCountsFromItsSending: a verification whose answers came
// back late allows writes only within the write window counted from when
// it was sent, so a write right after it verifies again. Counted from the
// answers, the delay would stretch the window past a successor's election
// (quorum.Lease.OldHolderGone).
func TestAVerificationCountsFromItsSending(t *testing.T) {
	lease := quorum.Lease{Duration: time.Second}
	w := newWorld(t, func(c *Config) { c.Lease = lease })
	tm := w.established(2)
	w.c.setOnVerify(func() {
		w.c.onVerify = nil // the fake's lock is held
		// The answers take longer than the write window to come back.
		time.Sleep(lease.WriteWindow() + 20*time.Millisecond)
	})
	sent := time.Now()
	if err := tm.verify(); err != nil {
		t.Fatal(err)
	}
	if tm.verifiedAt.After(sent.Add(time.Millisecond)) {
		t.Fatalf("the verification counts from %s after it was sent", tm.verifiedAt.Sub(sent))
	}
	before := w.c.verifications()
	if err := tm.allowed(); err != nil {
		t.Fatal(err)
	}
	again := w.c.verifications() - before
	if again != 1 {
		t.Fatalf("a write after a verification whose window had closed verified %d times, want once more", again)
	}
}
