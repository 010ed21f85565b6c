package director

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/realserver"
)

var (
	vip = netip.MustParseAddr("172.95.69.100")
	m30 = netip.MustParseAddr("172.95.69.30")
	m40 = netip.MustParseAddr("172.95.69.40")
	m50 = netip.MustParseAddr("172.95.69.50")
)

// fakeCluster drives the director the way cluster.Node would.
type fakeCluster struct {
	t       *testing.T
	fsm     *fsm.FSM
	index   uint64
	leaders chan cluster.LeaderEvent
	members chan struct{}

	mu          sync.Mutex
	online      map[string]bool
	verifyErr   error
	verified    int
	handingOver bool
	hooks       []func(bool)
}

func (c *fakeCluster) OnHandOver(fn func(bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hooks = append(c.hooks, fn)
}

// setHandingOver does what the real node does around a leadership
// transfer: the flag first, then the hooks.
func (c *fakeCluster) setHandingOver(on bool) {
	c.mu.Lock()
	c.handingOver = on
	hooks := slices.Clone(c.hooks)
	c.mu.Unlock()
	for _, fn := range hooks {
		fn(on)
	}
}

func newFakeCluster(t *testing.T) *fakeCluster {
	c := &fakeCluster{
		t: t, fsm: fsm.New(),
		leaders: make(chan cluster.LeaderEvent, 1),
		members: make(chan struct{}, 1),
		online:  map[string]bool{"m30": true, "m40": true, "m50": true},
	}
	for name, a := range map[string]netip.Addr{"m30": m30, "m40": m40, "m50": m50} {
		c.apply(fsm.CmdRegisterNode, fsm.Node{
			Name: name, Address: a,
			RaftAddr: netip.AddrPortFrom(a, 7947), GossipAddr: netip.AddrPortFrom(a, 7946),
		})
	}
	return c
}

func (c *fakeCluster) apply(t fsm.CommandType, payload any) {
	b, err := fsm.EncodeCommand(t, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.index++
	if r, ok := c.fsm.Apply(&raft.Log{Index: c.index, Data: b}).(*fsm.Result); ok && r.Err != nil {
		c.t.Fatal(r.Err)
	}
}

func (c *fakeCluster) setSpec(s fsm.Spec) { c.apply(fsm.CmdSetSpec, fsm.SetSpec{Spec: s}) }

func (c *fakeCluster) Leadership() (<-chan cluster.LeaderEvent, func()) { return c.leaders, func() {} }
func (c *fakeCluster) Barrier(time.Duration) error                      { return nil }
func (c *fakeCluster) FSM() *fsm.FSM                                    { return c.fsm }
func (c *fakeCluster) SubscribeMembership() (<-chan struct{}, func())   { return c.members, func() {} }
func (c *fakeCluster) HandingOver() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handingOver
}

func (c *fakeCluster) VerifyLeader(uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verified++
	return c.verifyErr
}

func (c *fakeCluster) OnlineNodes() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for k, v := range c.online {
		out[k] = v
	}
	return out
}

func (c *fakeCluster) setOnline(name string, up bool) {
	c.mu.Lock()
	c.online[name] = up
	c.mu.Unlock()
	select {
	case c.members <- struct{}{}:
	default:
	}
}

type fakeARP struct {
	mu       sync.Mutex
	sent     []string
	watchers map[string]func(netip.Addr)
}

func (a *fakeARP) Watch(ctx context.Context, iface string, fn func(netip.Addr)) error {
	a.mu.Lock()
	if a.watchers == nil {
		a.watchers = map[string]func(netip.Addr){}
	}
	a.watchers[iface] = fn
	a.mu.Unlock()
	<-ctx.Done()
	a.mu.Lock()
	delete(a.watchers, iface)
	a.mu.Unlock()
	return nil
}

// watching reports whether iface is watched.
func (a *fakeARP) watching(iface string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.watchers[iface] != nil
}

// announce delivers an ARP packet from another host with sender ip on iface.
func (a *fakeARP) announce(iface string, ip netip.Addr) {
	a.mu.Lock()
	fn := a.watchers[iface]
	a.mu.Unlock()
	if fn != nil {
		fn(ip)
	}
}

func (a *fakeARP) Gratuitous(iface string, ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent = append(a.sent, iface+" "+ip.String())
	return nil
}

func (a *fakeARP) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sent)
}

func squid(scheduler string) fsm.Spec {
	return fsm.Spec{
		VIPs: []fsm.VIP{{Address: vip, Interface: "eth0"}},
		Services: []fsm.Service{{
			Name: "squid", VIP: vip, Port: 3128, Protocol: "tcp", Scheduler: scheduler, Forwarding: "route",
			Persistence: fsm.Persistence{Timeout: 20 * time.Second},
			RealServers: fsm.RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
			Fallback:    &fsm.RealServer{Address: netip.MustParseAddr("127.0.0.1"), Port: 3128, Weight: 1},
		}},
		Policy: fsm.Policy{NoQuorum: "stop"},
	}
}

func TestPlanIsEmptyWhenTheTableMatches(t *testing.T) {
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	desired := Desired(c.fsm.State(), func(string) bool { return true }, nil)
	current := slices.Clone(desired)
	// The kernel reports the DC's own entry as Local: still a match.
	current[0].Dests = slices.Clone(current[0].Dests)
	current[0].Dests[0].Forward = ForwardLocal
	if ops := plan(current, desired, map[netip.Addr]bool{vip: true}); len(ops) != 0 {
		t.Fatalf("no-op plan has %d ops: %v", len(ops), ops)
	}
}

func TestPlanWritesOnlyTheDifference(t *testing.T) {
	key := fsm.ServiceKey{VIP: vip, Port: 80, Protocol: "tcp"}
	other := fsm.ServiceKey{VIP: netip.MustParseAddr("10.9.9.9"), Port: 80, Protocol: "tcp"}
	gone := fsm.ServiceKey{VIP: vip, Port: 443, Protocol: "tcp"}
	current := []Service{
		{Key: key, Scheduler: "rr", Dests: []Dest{
			{Addr: m30, Port: 80, Weight: 1, Forward: "route"},
			{Addr: m40, Port: 80, Weight: 1, Forward: "route"},
			{Addr: m50, Port: 80, Weight: 1, Forward: "route"},
		}},
		{Key: gone, Scheduler: "rr"},
		{Key: other, Scheduler: "wlc"}, // not raftlb's: never touched
	}
	desired := []Service{{Key: key, Scheduler: "wlc", Dests: []Dest{
		{Addr: m30, Port: 80, Weight: 1, Forward: "route"},
		{Addr: m40, Port: 80, Weight: 5, Forward: "route"},
		{Addr: netip.MustParseAddr("172.95.69.60"), Port: 80, Weight: 1, Forward: "route"},
	}}}
	var got []string
	for _, o := range plan(current, desired, map[netip.Addr]bool{vip: true}) {
		got = append(got, o.String())
	}
	want := []string{
		"update-service 172.95.69.100:80/tcp",
		"update-dest 172.95.69.100:80/tcp -> 172.95.69.40:80",
		"add-dest 172.95.69.100:80/tcp -> 172.95.69.60:80",
		"del-dest 172.95.69.100:80/tcp -> 172.95.69.50:80",
		"del-service 172.95.69.100:443/tcp",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDesiredUsesOnlineNodesThenFallback(t *testing.T) {
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	d := Desired(c.fsm.State(), func(n string) bool { return n != "m40" }, nil)
	var addrs []string
	for _, dst := range d[0].Dests {
		addrs = append(addrs, dst.id().String())
	}
	if want := []string{"172.95.69.30:3128", "172.95.69.50:3128"}; !slices.Equal(addrs, want) {
		t.Fatalf("real servers %v, want %v", addrs, want)
	}
	if d[0].Persistence != 20*time.Second || d[0].Scheduler != "rr" {
		t.Errorf("service options %+v", d[0])
	}
	none := Desired(c.fsm.State(), func(string) bool { return false }, nil)
	if len(none[0].Dests) != 1 || none[0].Dests[0].id().String() != "127.0.0.1:3128" {
		t.Fatalf("with no node online want the fallback only, got %+v", none[0].Dests)
	}
}

type harness struct {
	c    *fakeCluster
	k    *realserver.Fake
	rs   *realserver.Manager
	ipvs *FakeIPVS
	arp  *fakeARP
	d    *Director
	stop func()
}

func newHarness(t *testing.T) *harness { return newHarnessWithLog(t, discard()) }

func newHarnessWithLog(t *testing.T, logger *slog.Logger) *harness {
	return newHarnessWith(t, logger, 20*time.Millisecond)
}

func newHarnessWith(t *testing.T, logger *slog.Logger, grace time.Duration) *harness {
	h := &harness{c: newFakeCluster(t), k: realserver.NewFake("eth0"), ipvs: NewFakeIPVS(), arp: &fakeARP{}}
	h.rs = realserver.New(h.k, "eth0", t.TempDir()+"/vips.json", discard())
	if err := h.rs.Start(); err != nil {
		t.Fatal(err)
	}
	h.c.setSpec(squid("rr"))
	h.d = New(h.c, h.rs, h.ipvs, h.arp, Config{GARPSpacing: time.Millisecond, GARPRefresh: -1, ReconcileInterval: time.Hour, HandOverGrace: grace, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.d.Run(ctx)
	}()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

func (h *harness) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) has(dev string) bool {
	addrs, _ := h.k.Addrs(dev)
	return slices.Contains(addrs, netip.PrefixFrom(vip, 32))
}

func (h *harness) table() []Service {
	s, _ := h.ipvs.Services()
	return s
}

func TestFollowerKeepsVIPOnLoAndNoIPVS(t *testing.T) {
	h := newHarness(t)
	h.c.leaders <- cluster.LeaderEvent{IsLeader: false}
	h.waitFor(t, "VIP on lo", func() bool { return h.has("lo") })
	if h.has("eth0") || len(h.table()) != 0 || h.arp.count() != 0 {
		t.Fatalf("follower: eth0=%v ipvs=%v garp=%d", h.has("eth0"), h.table(), h.arp.count())
	}
}

func TestDCClaimsReconcilesAndReleases(t *testing.T) {
	h := newHarness(t)
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 2}
	h.waitFor(t, "VIP on eth0, off lo", func() bool { return h.has("eth0") && !h.has("lo") })
	h.waitFor(t, "gratuitous ARP burst", func() bool { return h.arp.count() == 3 })
	tab := h.table()
	if len(tab) != 1 || len(tab[0].Dests) != 3 || tab[0].Scheduler != "rr" {
		t.Fatalf("IPVS table %+v", tab)
	}
	h.ipvs.TakeWrites()

	// A no-op apply makes zero IPVS writes: run the reconcile step
	// synchronously against the unchanged spec.
	h.c.setSpec(squid("rr"))
	h.d.reconcile(discard(), h.c.fsm.Spec())
	if w := h.ipvs.TakeWrites(); len(w) != 0 {
		t.Fatalf("no-op apply wrote %v", w)
	}

	// A scheduler change is one update, nothing else.
	h.c.setSpec(squid("wlc"))
	h.waitFor(t, "scheduler update", func() bool { return h.table()[0].Scheduler == "wlc" })
	if w := h.ipvs.TakeWrites(); !slices.Equal(w, []string{"update-service 172.95.69.100:3128/tcp wlc"}) {
		t.Fatalf("scheduler change wrote %v", w)
	}

	// A node that dies is removed at once.
	h.c.setOnline("m40", false)
	h.waitFor(t, "m40 removed", func() bool { return len(h.table()[0].Dests) == 2 })

	// Losing leadership gives everything back.
	h.c.leaders <- cluster.LeaderEvent{IsLeader: false}
	h.waitFor(t, "VIP back on lo and IPVS empty", func() bool { return h.has("lo") && !h.has("eth0") && len(h.table()) == 0 })
}

func TestNoWritesWithoutVerifiedLeadership(t *testing.T) {
	h := newHarness(t)
	h.c.mu.Lock()
	h.c.verifyErr = errors.New("node is not the leader")
	h.c.mu.Unlock()
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 3}
	h.waitFor(t, "several verification attempts", func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return h.c.verified >= 3
	})
	if h.has("eth0") || len(h.table()) != 0 || h.arp.count() != 0 {
		t.Fatalf("unverified leader acted: eth0=%v ipvs=%v garp=%d", h.has("eth0"), h.table(), h.arp.count())
	}
}

func TestStartRemovesStaleIPVSRulesForOurVIPs(t *testing.T) {
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	k := realserver.NewFake("eth0")
	rs := realserver.New(k, "eth0", t.TempDir()+"/vips.json", discard())
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	ipvs := NewFakeIPVS()
	stale := Service{Key: fsm.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}, Scheduler: "rr"}
	foreign := Service{Key: fsm.ServiceKey{VIP: netip.MustParseAddr("10.1.1.1"), Port: 80, Protocol: "tcp"}, Scheduler: "rr"}
	_ = ipvs.AddService(stale)
	_ = ipvs.AddService(foreign)
	d := New(c, rs, ipvs, &fakeARP{}, Config{Logger: discard()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tab, _ := ipvs.Services()
		if len(tab) == 1 && tab[0].Key == foreign.Key {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale rules not removed or foreign rules touched: %+v", tab)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func withCheck(s fsm.Spec, onFail string) fsm.Spec {
	s.Services[0].HealthCheck = &fsm.HealthCheck{Type: "tcp", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2, OnFail: onFail}
	return s
}

func destsOf(s Service) map[string]int {
	out := map[string]int{}
	for _, d := range s.Dests {
		out[d.id().String()] = d.Weight
	}
	return out
}

func TestDesiredAppliesHealth(t *testing.T) {
	all := func(string) bool { return true }
	down := func(bad ...string) func(fsm.ServiceKey, netip.AddrPort) bool {
		return func(_ fsm.ServiceKey, a netip.AddrPort) bool { return !slices.Contains(bad, a.String()) }
	}
	for _, tc := range []struct {
		name   string
		onFail string
		bad    []string
		want   map[string]int
	}{
		{"all healthy", "remove", nil,
			map[string]int{"172.95.69.30:3128": 1, "172.95.69.40:3128": 1, "172.95.69.50:3128": 1}},
		{"one down, removed", "remove", []string{"172.95.69.40:3128"},
			map[string]int{"172.95.69.30:3128": 1, "172.95.69.50:3128": 1}},
		{"one down, quiescent", "quiescent", []string{"172.95.69.40:3128"},
			map[string]int{"172.95.69.30:3128": 1, "172.95.69.40:3128": 0, "172.95.69.50:3128": 1}},
		{"all down: the fallback takes over", "remove", []string{"172.95.69.30:3128", "172.95.69.40:3128", "172.95.69.50:3128"},
			map[string]int{"127.0.0.1:3128": 1}},
		{"all down, quiescent: weight 0 plus the fallback", "quiescent", []string{"172.95.69.30:3128", "172.95.69.40:3128", "172.95.69.50:3128"},
			map[string]int{"172.95.69.30:3128": 0, "172.95.69.40:3128": 0, "172.95.69.50:3128": 0, "127.0.0.1:3128": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster(t)
			c.setSpec(withCheck(squid("rr"), tc.onFail))
			got := destsOf(Desired(c.fsm.State(), all, down(tc.bad...))[0])
			if !maps.Equal(got, tc.want) {
				t.Fatalf("real servers %v, want %v", got, tc.want)
			}
		})
	}
	// A service without a check ignores health results.
	c := newFakeCluster(t)
	c.setSpec(squid("rr"))
	if got := destsOf(Desired(c.fsm.State(), all, down("172.95.69.40:3128"))[0]); len(got) != 3 {
		t.Fatalf("unchecked service: real servers %v, want all three", got)
	}
}

// TestNewDCKeepsServersItHasNotProbed: a new DC starts its checks at once
// but does not drop a real server before `fall` checks have failed — here
// none has had the chance (one probe, an hour apart).
func TestNewDCKeepsServersItHasNotProbed(t *testing.T) {
	h := newHarness(t)
	s := withCheck(squid("rr"), "remove")
	s.Services[0].HealthCheck.Interval = time.Hour
	s.Services[0].HealthCheck.Timeout = 50 * time.Millisecond
	h.c.setSpec(s)
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 4}
	h.waitFor(t, "the service with its three real servers", func() bool {
		tab := h.table()
		return len(tab) == 1 && len(tab[0].Dests) == 3
	})
	h.waitFor(t, "the first probe of every server", func() bool {
		st := h.d.Health()
		if len(st) != 3 {
			return false
		}
		for _, s := range st {
			if !s.Checked {
				return false
			}
		}
		return true
	})
	// One failed probe each (nothing listens there), fall is 2: all stay.
	if n := len(h.table()[0].Dests); n != 3 {
		t.Fatalf("after one failed probe each the table has %d real servers, want 3", n)
	}
	for k, s := range h.d.Health() {
		if !s.Up {
			t.Errorf("%v marked down after a single probe", k)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHandOverKeepsVIPsUntilTheSuccessorAnnounces: a DC that hands its
// duties over on purpose stops balancing at once but keeps the VIP until
// another host announces it over ARP; an announcement of some other
// address does not count.
func TestHandOverKeepsVIPsUntilTheSuccessorAnnounces(t *testing.T) {
	var logs syncBuffer
	h := newHarnessWith(t, slog.New(slog.NewTextHandler(&logs, nil)), time.Hour)
	// If the test stops early, end the hour-long grace so the harness can stop.
	t.Cleanup(func() { h.arp.announce("eth0", vip) })
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 5}
	h.waitFor(t, "VIP claimed and watched", func() bool { return h.has("eth0") && len(h.table()) == 1 && h.arp.watching("eth0") })
	// Balancing stops before the transfer, while this node still leads.
	h.c.setHandingOver(true)
	if len(h.table()) != 0 || !h.has("eth0") {
		t.Fatalf("hand-over begun: want no IPVS service and the VIP kept, got %d services, VIP on eth0 %v", len(h.table()), h.has("eth0"))
	}
	h.c.members <- struct{}{} // a membership change must not rebuild the table
	h.c.leaders <- cluster.LeaderEvent{IsLeader: false}
	h.waitFor(t, "the grace to begin", func() bool { return strings.Contains(logs.String(), "until the successor announces them") })
	if len(h.table()) != 0 {
		t.Fatalf("the table was rebuilt during the hand-over: %+v", h.table())
	}
	h.arp.announce("eth0", m40) // a real server's own address: not a successor
	if !h.has("eth0") {
		t.Fatal("the VIP left the interface before any successor announced it")
	}
	h.arp.announce("eth0", vip)
	h.waitFor(t, "VIP released", func() bool { return h.has("lo") && !h.has("eth0") })
	h.waitFor(t, "the watch to end", func() bool { return !h.arp.watching("eth0") })
	if out := logs.String(); !strings.Contains(out, "the successor announced every VIP") {
		t.Errorf("want the successor's announcement logged, logs:\n%s", out)
	}
}

// TestFailedHandOverBalancesAgain: a hand-over that fails leaves this node
// DC; it rebuilds its table at once.
func TestFailedHandOverBalancesAgain(t *testing.T) {
	h := newHarness(t)
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 5}
	h.waitFor(t, "VIP claimed", func() bool { return h.has("eth0") && len(h.table()) == 1 })
	h.c.setHandingOver(true)
	if len(h.table()) != 0 {
		t.Fatal("hand-over begun: want balancing stopped")
	}
	h.c.setHandingOver(false)
	h.waitFor(t, "the table rebuilt", func() bool { return len(h.table()) == 1 && len(h.table()[0].Dests) == 3 })
	if !h.has("eth0") {
		t.Error("the VIP left the interface")
	}
}

// TestHandOverCalledOffEndsTheGrace: when the hand-over is called off
// after leadership was lost (the transfer failed and no successor was
// elected: quorum lost), the VIP is released at once, not at the end of
// the grace.
func TestHandOverCalledOffEndsTheGrace(t *testing.T) {
	var logs syncBuffer
	h := newHarnessWith(t, slog.New(slog.NewTextHandler(&logs, nil)), time.Hour)
	t.Cleanup(func() { h.arp.announce("eth0", vip) })
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 5}
	h.waitFor(t, "VIP claimed", func() bool { return h.has("eth0") && len(h.table()) == 1 })
	h.c.setHandingOver(true)
	h.c.leaders <- cluster.LeaderEvent{IsLeader: false}
	h.waitFor(t, "the grace to begin", func() bool { return strings.Contains(logs.String(), "until the successor announces them") })
	h.c.setHandingOver(false)
	h.waitFor(t, "VIP released", func() bool { return h.has("lo") && !h.has("eth0") })
	if !strings.Contains(logs.String(), "hand-over called off") {
		t.Errorf("want the call-off logged, logs:\n%s", logs.String())
	}
}

// TestHandOverGraceEndsWithoutSuccessor: with no announcement the VIP is
// released when the grace ends; a DC that loses leadership (not handing
// over) releases at once, without a grace.
func TestHandOverGraceEndsWithoutSuccessor(t *testing.T) {
	for _, handingOver := range []bool{true, false} {
		var logs syncBuffer
		h := newHarnessWithLog(t, slog.New(slog.NewTextHandler(&logs, nil)))
		h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 5}
		h.waitFor(t, "VIP claimed", func() bool { return h.has("eth0") && len(h.table()) == 1 })
		if handingOver {
			h.c.setHandingOver(true)
		}
		h.c.leaders <- cluster.LeaderEvent{IsLeader: false}
		h.waitFor(t, "VIP released", func() bool { return h.has("lo") && !h.has("eth0") && len(h.table()) == 0 })
		out := logs.String()
		grace := strings.Index(out, "no successor announced every VIP within the grace")
		released := strings.Index(out, "DC duties released")
		switch {
		case handingOver && (grace < 0 || grace > released):
			t.Errorf("hand-over: want the grace to end before the release, logs:\n%s", out)
		case !handingOver && strings.Contains(out, "handing over"):
			t.Errorf("lost leadership: want no grace, logs:\n%s", out)
		}
		h.stop()
	}
}

// TestAnnouncementOfHeldVIPIsAConflict: another host announcing a VIP the
// DC holds, outside a hand-over, is logged once as a conflict and changes
// nothing.
func TestAnnouncementOfHeldVIPIsAConflict(t *testing.T) {
	var logs syncBuffer
	h := newHarnessWithLog(t, slog.New(slog.NewTextHandler(&logs, nil)))
	h.c.leaders <- cluster.LeaderEvent{IsLeader: true, Term: 5}
	h.waitFor(t, "VIP claimed and watched", func() bool { return h.has("eth0") && len(h.table()) == 1 && h.arp.watching("eth0") })
	h.arp.announce("eth0", vip)
	h.arp.announce("eth0", vip)
	if n := strings.Count(logs.String(), "address conflict"); n != 1 {
		t.Errorf("want one conflict warning, got %d; logs:\n%s", n, logs.String())
	}
	if !h.has("eth0") || len(h.table()) != 1 {
		t.Error("a conflicting announcement changed what the DC holds")
	}
}
