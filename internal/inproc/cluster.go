// Package inproc runs whole raftlb clusters in one test process: every
// node a real cluster node (Raft over mutual TLS and encrypted gossip, on
// an address of its own on loopback) with its director on the fake data
// plane, all on one fake LAN. Nodes crash, stop gracefully, restart and
// are cut off; a Checker watches every node's fake kernel for broken
// invariants while it happens. It is what runs the DC's term, the health
// checks and the hand-over across several nodes outside the kernel lab.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/realserver"
	rspec "github.com/raftlb/raftlb/spec"
)

// Options shape a cluster. Zero fields take the defaults.
type Options struct {
	Nodes int // default 3
	// HandOverGrace is the directors' grace (default 500 ms); the checker
	// allows two holders for at most that long, plus a little for the
	// scheduler.
	HandOverGrace time.Duration
	// Timing is the nodes' Raft and gossip timing (default: the agent's).
	Timing cluster.Timing
	// Lease is the VIP lease (default: the agent's).
	Lease quorum.Lease
	// Witness names a node started as a witness (no data plane, never
	// DC for long, no real server).
	Witness string
	// MaxOverlap is how long the checker lets two nodes carry a VIP at
	// once (default: the hand-over grace and a little for the scheduler).
	MaxOverlap time.Duration
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t       testing.TB
	opts    Options
	tlsDir  string
	key     []byte
	lan     *dataplane.FakeLAN
	Checker *Checker
	logs    *testkit.LogBuffer

	mu    sync.Mutex
	nodes map[string]*Node // every node ever started, running or not
}

// Node is one machine of the cluster.
type Node struct {
	Name string
	IP   netip.Addr

	cfg     cluster.Config
	C       *cluster.Node
	D       *director.Director
	K       *realserver.Fake
	RS      *realserver.Manager
	IPVS    *dataplane.FakeIPVS
	ARP     *dataplane.FakeARP
	running bool
	stop    context.CancelFunc
	done    chan struct{}
}

// Start builds and starts a cluster, bootstrapped by all its nodes, and
// waits for a DC.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.HandOverGrace == 0 {
		opts.HandOverGrace = 500 * time.Millisecond
	}
	if opts.Timing == (cluster.Timing{}) {
		opts.Timing = cluster.DefaultTiming()
	}
	if opts.Lease.Duration == 0 {
		opts.Lease.Duration = quorum.DefaultLease
	}
	c := &Cluster{t: t, opts: opts, tlsDir: t.TempDir(), lan: &dataplane.FakeLAN{}, logs: &testkit.LogBuffer{}, nodes: map[string]*Node{}}
	// The allowance covers the grace and the scheduler between a hold
	// starting and the director seeing the successor's announcement.
	if opts.MaxOverlap == 0 {
		opts.MaxOverlap = opts.HandOverGrace + 250*time.Millisecond
	}
	c.Checker = NewChecker(opts.MaxOverlap, c.leads, c.highestTerm)
	if err := cluster.InitCA(c.tlsDir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.key, err = cluster.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes() {
			c.Crash(n.Name)
		}
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.logs.String())
		}
	})
	for i := 1; i <= opts.Nodes; i++ {
		c.add(i, opts.Nodes)
	}
	first := c.node(name(1))
	for i := 2; i <= opts.Nodes; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.node(name(i)).C.Join(ctx, []string{first.C.GossipAddr()})
		cancel()
		if err != nil {
			t.Fatalf("join %s: %v", name(i), err)
		}
	}
	c.WaitDC()
	return c
}

func name(i int) string { return fmt.Sprintf("n%d", i) }

// add creates node i and starts it.
func (c *Cluster) add(i, expect int) {
	c.t.Helper()
	ip := netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})
	nm := name(i)
	if err := cluster.IssueNodeCert(c.tlsDir, nm, []net.IP{ip.AsSlice()}, 24*time.Hour); err != nil {
		c.t.Fatal(err)
	}
	tlsConf, err := cluster.LoadTLS(c.tlsDir, nm)
	if err != nil {
		c.t.Fatal(err)
	}
	n := &Node{Name: nm, IP: ip, cfg: cluster.Config{
		Name: nm, BindAddr: ip, DataDir: c.t.TempDir(), BootstrapExpect: expect, MaxVoters: cluster.DefaultMaxVoters,
		GossipKey: c.key, TLS: tlsConf, Dataplane: "fake", Witness: nm == c.opts.Witness, Timing: c.opts.Timing,
		Logger: c.logs.Logger(), Filter: cluster.NewNetFilter(),
	}}
	if n.cfg.Witness {
		n.cfg.Dataplane = "none"
	}
	n.K = realserver.NewFake("eth0")
	n.K.Observe(func(w string) { c.Checker.Addr(nm, w) })
	n.IPVS = dataplane.NewFakeIPVS()
	n.IPVS.Observe(func(w string) { c.Checker.IPVS(nm, w) })
	n.ARP = c.lan.Port()
	c.mu.Lock()
	c.nodes[nm] = n
	c.mu.Unlock()
	c.Restart(nm)
}

// Restart starts a stopped or crashed node again on its data dir: the
// agent's start order (real-server side, cluster node, director).
func (c *Cluster) Restart(nm string) *Node {
	c.t.Helper()
	n := c.node(nm)
	c.Checker.Revived(nm)
	c.lan.Cut(n.ARP, false)
	n.K.Attach()
	n.IPVS.Attach()
	n.RS = realserver.New(n.K, realserver.Config{Interface: "eth0", StateFile: filepath.Join(n.cfg.DataDir, "vips.json"), Lease: c.opts.Lease.Duration, Logger: c.logs.Logger()})
	if err := n.RS.Start(); err != nil {
		c.t.Fatal(err)
	}
	var err error
	if n.C, err = cluster.Start(n.cfg, fsm.New()); err != nil {
		c.t.Fatalf("start %s: %v", nm, err)
	}
	// Resolved ports, so a restart keeps them.
	if ap, err := netip.ParseAddrPort(n.C.RaftAddr()); err == nil {
		n.cfg.RaftPort = int(ap.Port())
	}
	if ap, err := netip.ParseAddrPort(n.C.GossipAddr()); err == nil {
		n.cfg.GossipPort = int(ap.Port())
	}
	n.cfg.BootstrapExpect = 0 // bootstraps once, if ever
	dp := &director.Dataplane{RS: n.RS, IPVS: n.IPVS, ARP: n.ARP}
	if n.cfg.Witness {
		dp = nil
	}
	n.D = director.New(n.C, dp, director.Config{
		HandOverGrace: c.opts.HandOverGrace, GARPSpacing: 10 * time.Millisecond, GARPRefresh: time.Second, Lease: c.opts.Lease,
		HealthDial: testkit.DialContext(c.t), Logger: c.logs.Logger(),
	})
	n.C.SetSpecCheck(n.D.CheckSpec)
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		_ = n.D.Run(ctx)
	}()
	c.mu.Lock()
	n.running = true
	c.mu.Unlock()
	return n
}

// Crash kills node nm's machine: no hand-over, no gossip leave, and its
// kernel's addresses and IPVS table are gone (the power went).
func (c *Cluster) Crash(nm string) {
	n := c.node(nm)
	c.mu.Lock()
	running := n.running
	n.running = false
	c.mu.Unlock()
	if !running {
		return
	}
	c.Checker.Crashed(nm)
	c.lan.Cut(n.ARP, true)
	_ = n.C.Abort()
	n.stop()
	<-n.done
	n.K.PowerOff()
	n.IPVS.PowerOff()
}

// Kill kills node nm's agent (kill -9) while its machine runs on: no
// hand-over, no gossip leave, nothing it would write on the way out
// reaches the kernel; the VIP it carried stays on the interface until its
// lease ends there, and its IPVS table stays. Restart brings the agent
// back on the same kernel.
func (c *Cluster) Kill(nm string) {
	n := c.node(nm)
	c.mu.Lock()
	running := n.running
	n.running = false
	c.mu.Unlock()
	if !running {
		return
	}
	n.K.Detach()
	n.IPVS.Detach()
	c.lan.Cut(n.ARP, true) // its ARP watcher and sender die with it
	_ = n.C.Abort()
	n.stop()
	<-n.done
}

// Stop stops node nm gracefully, in the agent's shutdown order
// (cmd/raftlb): hand DC duties over, stop the director, leave gossip, take
// the VIPs off, stop Raft and gossip.
func (c *Cluster) Stop(nm string) {
	c.t.Helper()
	n := c.node(nm)
	c.mu.Lock()
	n.running = false
	c.mu.Unlock()
	n.C.HandOver()
	n.stop()
	<-n.done
	n.C.LeaveGossip()
	if err := n.RS.Shutdown(); err != nil {
		c.t.Errorf("stop %s: %v", nm, err)
	}
	if err := n.C.Shutdown(); err != nil {
		c.t.Errorf("stop %s: %v", nm, err)
	}
}

// Isolate pulls node nm's cable: no Raft, gossip or ARP reaches it or
// leaves it.
func (c *Cluster) Isolate(nm string) {
	n := c.node(nm)
	var others []netip.Addr
	for _, o := range c.all() {
		if o != n {
			others = append(others, o.IP)
			o.cfg.Filter.Block(n.IP)
		}
	}
	n.cfg.Filter.Block(others...)
	c.lan.Cut(n.ARP, true)
}

// Heal plugs every cable back in.
func (c *Cluster) Heal() {
	for _, n := range c.all() {
		n.cfg.Filter.Heal()
		c.lan.Cut(n.ARP, !c.isRunning(n))
	}
}

func (c *Cluster) node(nm string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[nm]
	if n == nil {
		c.t.Fatalf("no node %s", nm)
	}
	return n
}

func (c *Cluster) isRunning(n *Node) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.running
}

func (c *Cluster) all() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Nodes returns the running nodes, by name.
func (c *Cluster) Nodes() []*Node {
	return slices.DeleteFunc(c.all(), func(n *Node) bool { return !c.isRunning(n) })
}

// Node returns node nm.
func (c *Cluster) Node(nm string) *Node { return c.node(nm) }

func (c *Cluster) leads(nm string) (bool, uint64) {
	n := c.node(nm)
	return n.C.IsLeader(), n.C.Term()
}

func (c *Cluster) highestTerm() uint64 {
	var high uint64
	for _, n := range c.Nodes() {
		high = max(high, n.C.Term())
	}
	return high
}

// WaitDC waits until the given nodes (default: every running node) agree,
// with quorum, on one of them as DC, and returns it.
func (c *Cluster) WaitDC(among ...*Node) *Node {
	c.t.Helper()
	if len(among) == 0 {
		among = c.Nodes()
	}
	var dc *Node
	testkit.WaitFor(c.t, "a DC the nodes agree on", func() bool {
		dc = nil
		for _, n := range among {
			v := n.C.View()
			if !v.Quorum || v.DC == "" || (dc != nil && dc.Name != v.DC) {
				return false
			}
			if dc == nil {
				dc = c.node(v.DC)
			}
		}
		return dc != nil && slices.Contains(among, dc)
	})
	return dc
}

// Apply submits spec through node via, retrying while no DC is elected.
func (c *Cluster) Apply(via string, spec rspec.Spec) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	for {
		res, err := c.node(via).C.ApplySpec(ctx, spec, 0)
		if err == nil {
			return res.Version
		}
		if !errors.Is(err, cluster.ErrNoDC) || ctx.Err() != nil {
			c.t.Fatalf("apply through %s: %v", via, err)
		}
	}
}

// Holder is the running node carrying vip on an interface, if exactly one
// does.
func (c *Cluster) Holder(vip netip.Addr) (*Node, bool) {
	var h *Node
	for _, n := range c.Nodes() {
		if n.Holds(vip) {
			if h != nil {
				return nil, false
			}
			h = n
		}
	}
	return h, h != nil
}

// Holds reports whether the node's kernel carries vip on eth0.
func (n *Node) Holds(vip netip.Addr) bool {
	addrs, _ := n.K.Addrs("eth0")
	return slices.Contains(addrs, netip.PrefixFrom(vip, vip.BitLen()))
}

// OnLo reports whether the node's kernel carries vip on lo.
func (n *Node) OnLo(vip netip.Addr) bool {
	addrs, _ := n.K.Addrs("lo")
	return slices.Contains(addrs, netip.PrefixFrom(vip, vip.BitLen()))
}

// Converged waits until every running node holds the same replicated
// state, the DC alone carries every VIP on its interface and has an IPVS
// service for every service of the spec, and every other node carries
// the VIPs on lo and has no IPVS service; then it fails the test for any
// violation the checker saw.
func (c *Cluster) Converged() {
	c.t.Helper()
	var why string
	testkit.WaitFor(c.t, "the cluster to converge", func() bool {
		why = c.divergence()
		return why == ""
	})
	for _, v := range c.Checker.Violations() {
		c.t.Errorf("invariant broken: %s", v)
	}
}

// divergence says how the running nodes differ from a converged
// cluster, or "" when they do not.
func (c *Cluster) divergence() string {
	nodes := c.Nodes()
	dc := ""
	for _, n := range nodes {
		if n.C.IsLeader() {
			dc = n.Name
		}
	}
	if dc == "" {
		return "no DC"
	}
	want := c.node(dc).C.FSM().State()
	for _, n := range nodes {
		got := n.C.FSM().State()
		if got.Spec.Version != want.Spec.Version || len(got.Nodes) != len(want.Nodes) {
			return fmt.Sprintf("%s has spec version %d and %d nodes, the DC %s %d and %d", n.Name, got.Spec.Version, len(got.Nodes), dc, want.Spec.Version, len(want.Nodes))
		}
		if n.cfg.Witness {
			if n.Name == dc {
				return fmt.Sprintf("the witness %s is DC", dc)
			}
			continue // no data plane to look at
		}
		tab, _ := n.IPVS.Services()
		for _, vip := range want.Spec.VIPs {
			if n.Name == dc && (!n.Holds(vip.Address) || !n.OnLo(vip.Address)) {
				return fmt.Sprintf("the DC %s does not hold %s on its interface and lo", dc, vip.Address)
			}
			if n.Name != dc && (n.Holds(vip.Address) || !n.OnLo(vip.Address)) {
				return fmt.Sprintf("%s carries %s on its interface, or not on lo", n.Name, vip.Address)
			}
		}
		if n.Name == dc && len(tab) != len(want.Spec.Services) {
			return fmt.Sprintf("the DC %s has %d IPVS services, the spec %d", dc, len(tab), len(want.Spec.Services))
		}
		if n.Name != dc && len(tab) != 0 {
			return fmt.Sprintf("%s is not DC but has IPVS services %v", n.Name, tab)
		}
	}
	return ""
}
