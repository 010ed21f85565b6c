package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// testCluster runs real nodes in-process: real TCP with mutual TLS and
// encrypted gossip on loopback, one 127.0.0.x address per node so a
// netFilter can cut the traffic between them. Tests wait on conditions,
// never on fixed sleeps.
type testCluster struct {
	t      *testing.T
	tlsDir string
	key    []byte
	logs   *testkit.LogBuffer
	mu     sync.Mutex
	nodes  map[string]*Node
	cfgs   map[string]Config
	// schemas plays older releases: the schema a node's FSM reads (by
	// name; absent means fsm.Schema).
	schemas map[string]int
}

// newTestCluster starts n nodes expecting n for bootstrap and joins them
// through node 1. mod may adjust each node's config.
func newTestCluster(t *testing.T, n int, mod func(*Config)) *testCluster {
	t.Helper()
	return newMixedCluster(t, n, mod, nil)
}

// newMixedCluster is newTestCluster with some nodes playing older
// releases (schemas: node name → the schema its FSM reads).
func newMixedCluster(t *testing.T, n int, mod func(*Config), schemas map[string]int) *testCluster {
	t.Helper()
	if schemas == nil {
		schemas = map[string]int{}
	}
	c := &testCluster{t: t, tlsDir: t.TempDir(), logs: &testkit.LogBuffer{}, nodes: map[string]*Node{}, cfgs: map[string]Config{}, schemas: schemas}
	if err := InitCA(c.tlsDir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.key, err = GenerateKey(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := c.nodes
		c.mu.Unlock()
		for _, nd := range nodes {
			_ = nd.closeAll()
		}
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.logs.String())
		}
	})
	for i := 1; i <= n; i++ {
		cfg := c.config(i, n)
		if mod != nil {
			mod(&cfg)
		}
		c.start(cfg)
	}
	for i := 2; i <= n; i++ {
		c.join(c.name(i), c.name(1))
	}
	return c
}

func (c *testCluster) name(i int) string { return fmt.Sprintf("n%d", i) }

func (c *testCluster) config(i, expect int) Config {
	c.t.Helper()
	name := c.name(i)
	ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})
	if err := IssueNodeCert(c.tlsDir, name, []net.IP{ip.AsSlice()}, 24*time.Hour); err != nil {
		c.t.Fatal(err)
	}
	tlsConf, err := LoadTLS(c.tlsDir, name)
	if err != nil {
		c.t.Fatal(err)
	}
	return Config{
		Name: name, BindAddr: ip, DataDir: c.t.TempDir(), BootstrapExpect: expect,
		MaxVoters: DefaultMaxVoters, GossipKey: c.key, TLS: tlsConf, Dataplane: "none",
		Timing: DefaultTiming(),
		Logger: slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Filter: NewNetFilter(),
	}
}

func (c *testCluster) start(cfg Config) *Node {
	c.t.Helper()
	nd := c.startIdle(cfg)
	go dcDuties(nd)
	return nd
}

// startIdle starts a node without dcDuties: nothing runs the membership
// step on it but the test.
func (c *testCluster) startIdle(cfg Config) *Node {
	c.t.Helper()
	c.mu.Lock()
	schema := c.schemas[cfg.Name]
	c.mu.Unlock()
	nd, err := Start(cfg, fsm.NewWith(fsm.Options{Schema: schema, Logger: cfg.Logger.With("component", "fsm", "node", cfg.Name)}))
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[cfg.Name] = nd
	c.cfgs[cfg.Name] = nd.cfg // resolved ports, for restarts
	return nd
}

// dcDuties stands in, in this package's tests, for the DC's term that the
// director owns (director/term.go): while the node leads, a barrier, then
// the membership step on every gossip change and every second.
func dcDuties(n *Node) {
	events, cancel := n.Leadership()
	defer cancel()
	stop := func() {}
	defer func() { stop() }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev := <-events:
			stop()
			stop = func() {}
			if !ev.IsLeader {
				continue
			}
			ctx, cancelTerm := context.WithCancel(n.ctx)
			done := make(chan struct{})
			stop = func() { cancelTerm(); <-done }
			go func() {
				defer close(done)
				if n.Barrier(5*time.Second) != nil {
					return
				}
				changes, unsubscribe := n.SubscribeMembership()
				defer unsubscribe()
				tick := time.NewTicker(reconcileInterval)
				defer tick.Stop()
				for {
					n.ReconcileMembers(ctx)
					select {
					case <-ctx.Done():
						return
					case <-changes:
					case <-tick.C:
					}
				}
			}()
		}
	}
}

func (c *testCluster) node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// followers returns the live nodes other than dc, by name.
func (c *testCluster) followers(dc *Node) []*Node {
	var out []*Node
	for _, nd := range c.live() {
		if nd != dc {
			out = append(out, nd)
		}
	}
	return out
}

func (c *testCluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, nd := range c.nodes {
		out = append(out, nd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func (c *testCluster) join(from, to string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.node(from).Join(ctx, []string{c.node(to).GossipAddr()}); err != nil {
		c.t.Fatalf("join %s to %s: %v", from, to, err)
	}
}

// crash stops a node the way kill -9 would look to its peers: no
// leadership transfer, no gossip leave.
func (c *testCluster) crash(name string) {
	c.mu.Lock()
	nd := c.nodes[name]
	delete(c.nodes, name)
	c.mu.Unlock()
	_ = nd.closeAll()
}

// restart starts a stopped node again on the same data dir and ports.
func (c *testCluster) restart(name string) *Node {
	c.mu.Lock()
	cfg := c.cfgs[name]
	c.mu.Unlock()
	return c.start(cfg)
}

// partition cuts Raft traffic between the named nodes and all others.
func (c *testCluster) partition(names ...string) {
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	var inside, outside []netip.Addr
	c.mu.Lock()
	for name, cfg := range c.cfgs {
		if in[name] {
			inside = append(inside, cfg.BindAddr)
		} else {
			outside = append(outside, cfg.BindAddr)
		}
	}
	for name, cfg := range c.cfgs {
		if in[name] {
			cfg.Filter.Block(outside...)
		} else {
			cfg.Filter.Block(inside...)
		}
	}
	c.mu.Unlock()
}

func (c *testCluster) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cfg := range c.cfgs {
		cfg.Filter.Heal()
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (c *testCluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	testkit.WaitForWithin(c.t, timeout, what, cond)
}

// waitRefused waits for dc's membership step to refuse name for a reason
// containing want. The step logs a refusal before it records it, so the
// line can be asserted once this returns.
func (c *testCluster) waitRefused(dc *Node, name, want string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%s to refuse %s: %s", dc.Name(), name, want), 10*time.Second, func() bool {
		why, ok := dc.Refused()[name]
		return ok && strings.Contains(why, want)
	})
}

// waitDC waits until exactly one of the given nodes (all live nodes when
// none are given) leads and all of them agree on it, and returns it.
func (c *testCluster) waitDC(among ...*Node) *Node {
	c.t.Helper()
	if len(among) == 0 {
		among = c.live()
	}
	var dc *Node
	c.waitFor("a DC all nodes agree on", 15*time.Second, func() bool {
		dc = nil
		for _, nd := range among {
			if nd.IsLeader() {
				if dc != nil {
					return false
				}
				dc = nd
			}
		}
		if dc == nil {
			return false
		}
		for _, nd := range among {
			if _, id := nd.raft.LeaderWithID(); string(id) != dc.Name() {
				return false
			}
		}
		return true
	})
	return dc
}

func raftServers(nd *Node) map[string]raft.ServerSuffrage {
	out := map[string]raft.ServerSuffrage{}
	f := nd.raft.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

func sampleSpec(port uint16) spec.Spec {
	vip := netip.MustParseAddr("172.95.69.100")
	return spec.Spec{
		VIPs: []spec.VIP{{Address: vip, Interface: "eth0"}},
		Services: []spec.Service{{
			Name: "squid", VIP: vip, Port: port, Protocol: "tcp", Scheduler: "rr", Forwarding: "route",
			Persistence: spec.Persistence{Timeout: 20 * time.Second},
			RealServers: spec.RealServers{AllNodes: true, NodePort: port, NodeWeight: 1},
			Fallback:    &spec.RealServer{Address: netip.MustParseAddr("127.0.0.1"), Port: port, Weight: 1},
		}},
		Policy: spec.Policy{NoQuorum: "stop"},
	}
}
