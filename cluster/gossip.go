package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// nodeMeta is what a node tells its peers about itself through gossip. It
// must fit memberlist's 512-byte metadata limit, hence the short keys.
type nodeMeta struct {
	Version   int    `json:"v"`
	RaftAddr  string `json:"r"`
	Expect    int    `json:"e,omitempty"`
	HasState  bool   `json:"s,omitempty"`
	Dataplane string `json:"d,omitempty"`
	// Witness: a voter that never directs (raftlb agent --witness).
	Witness bool `json:"w,omitempty"`
	// NoDirect says why this node cannot hold the VIPs now (its claim
	// failed); empty when it can.
	NoDirect string `json:"n,omitempty"`
	// Schema is the schema version this node's release reads (fsm.Schema);
	// absent from releases before schemas were advertised.
	Schema int `json:"c,omitempty"`
	// Leaving: the node is leaving the cluster for good (raftlb leave);
	// no DC admits it again.
	Leaving bool `json:"l,omitempty"`
	// Stopping: the agent is stopping (a graceful stop). The DC sends it
	// no new connections (weight 0) while it still answers the ones in
	// flight, and hands it no leadership.
	Stopping bool `json:"x,omitempty"`
}

const metaVersion = 1

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("node metadata: %w", err)
	}
	if m.Version != metaVersion {
		return m, fmt.Errorf("node metadata version %d, want %d", m.Version, metaVersion)
	}
	if _, err := netip.ParseAddrPort(m.RaftAddr); err != nil {
		return m, fmt.Errorf("node metadata raft address: %w", err)
	}
	return m, nil
}

// gossipDelegate serves our metadata and turns membership changes into a
// wake-up for the reconcilers. memberlist calls it from its own goroutines,
// so it must never block.
type gossipDelegate struct {
	mu   sync.Mutex
	meta nodeMeta
	wake func()
	// departed remembers nodes memberlist no longer lists (Members omits
	// dead and left nodes). memberlist hands NotifyLeave a copy whose State
	// is stale, so a failure and a graceful leave look alike here; a
	// graceful leave is carried out over the DC's RPC instead (Node.Leave).
	departed map[string]bool
	// live is our own copy of the members memberlist considers alive or
	// suspect. memberlist's Members() returns pointers into state it keeps
	// mutating, so we copy node data inside the event callbacks, which
	// memberlist calls while holding its lock.
	live map[string]member
	// left holds nodes removed by a graceful leave. Gossip may still list
	// such a node as alive for a moment; the DC must not re-admit it until
	// it joins again (a fresh NotifyJoin).
	left map[string]bool
	// logger reports nodes going and coming back, once each.
	logger *slog.Logger
}

func (d *gossipDelegate) markLeft(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.left[name] = true
}

func (d *gossipDelegate) unmarkLeft(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.left, name)
}

func (d *gossipDelegate) hasLeft(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.left[name]
}

func copyMember(m *memberlist.Node) member {
	mm := member{Name: m.Name, State: memberlist.StateAlive}
	if a, ok := netip.AddrFromSlice(m.Addr); ok {
		mm.Addr = a.Unmap()
		mm.Gossip = netip.AddrPortFrom(mm.Addr, m.Port)
	}
	mm.Meta, mm.MetaErr = decodeMeta(m.Meta)
	mm.RaftAddr = mm.Meta.RaftAddr
	return mm
}

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := json.Marshal(d.meta)
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *gossipDelegate) NotifyJoin(m *memberlist.Node) {
	mm := copyMember(m)
	d.mu.Lock()
	if d.departed[m.Name] {
		delete(d.left, m.Name) // a fresh join after departing
		if d.logger != nil {
			d.logger.Info("node is back", "peer", m.Name)
		}
	}
	delete(d.departed, m.Name)
	d.live[m.Name] = mm
	d.mu.Unlock()
	d.wake()
}

func (d *gossipDelegate) NotifyLeave(m *memberlist.Node) {
	d.mu.Lock()
	if d.logger != nil && !d.departed[m.Name] {
		if d.left[m.Name] {
			d.logger.Info("node left the cluster", "peer", m.Name)
		} else {
			d.logger.Warn("node is gone: stopped, failed or cut off (said again when it is back)", "peer", m.Name)
		}
	}
	d.departed[m.Name] = true
	delete(d.live, m.Name)
	d.mu.Unlock()
	d.wake()
}

func (d *gossipDelegate) NotifyUpdate(m *memberlist.Node) {
	mm := copyMember(m)
	d.mu.Lock()
	d.live[m.Name] = mm
	d.mu.Unlock()
	d.wake()
}

// members returns the live members, sorted by name.
func (d *gossipDelegate) members() []member {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]member, 0, len(d.live))
	for _, m := range d.live {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// departedNodes returns the nodes that failed or left, by name.
func (d *gossipDelegate) departedNodes() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]bool, len(d.departed))
	for k, v := range d.departed {
		out[k] = v
	}
	return out
}

func (n *Node) newMemberlist() (*memberlist.Memberlist, error) {
	c := memberlist.DefaultLANConfig()
	c.Name = n.cfg.Name
	c.BindAddr = n.cfg.BindAddr.String()
	c.BindPort = n.cfg.GossipPort
	c.AdvertiseAddr = n.cfg.BindAddr.String()
	c.AdvertisePort = n.cfg.GossipPort
	c.Delegate = n.gossip
	c.Events = n.gossip
	c.Logger = newStdLogger(n.logger.With("subsystem", "memberlist"))
	t := n.cfg.Timing
	c.ProbeInterval = t.GossipProbeInterval
	c.ProbeTimeout = t.GossipProbeTimeout
	c.GossipInterval = t.GossipInterval
	c.SuspicionMult = t.GossipSuspicionMult
	// On a LAN a peer that does not accept a TCP connection within a
	// second is down; the default (10 s) would stall joins and reconnects.
	c.TCPTimeout = time.Second
	// A node that restarts with a new address may reclaim its name quickly.
	c.DeadNodeReclaimTime = 10 * t.GossipProbeInterval
	if len(n.cfg.GossipKey) > 0 {
		kr, err := memberlist.NewKeyring(n.cfg.GossipKeys, n.cfg.GossipKey)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		c.Keyring = kr
		n.keyring = kr
		n.creds.setKeys(keyFingerprints(kr.GetKeys()))
		c.GossipVerifyIncoming = true
		c.GossipVerifyOutgoing = true
	}
	if n.cfg.Filter != nil {
		// Tests that cut the network cut gossip too.
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{c.BindAddr}, BindPort: c.BindPort, Logger: c.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("start gossip on %s: %w", n.gossipAddr(), err)
		}
		if c.BindPort == 0 {
			c.BindPort = nt.GetAutoBindPort()
			c.AdvertisePort = c.BindPort
		}
		c.Transport = newFilteredTransport(nt, n.cfg.Filter)
	}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", n.gossipAddr(), err)
	}
	return ml, nil
}

func (n *Node) gossipAddr() string {
	return netip.AddrPortFrom(n.cfg.BindAddr, uint16(n.cfg.GossipPort)).String()
}

// member is one gossip peer with its decoded metadata.
type member struct {
	Name     string
	Addr     netip.Addr
	Gossip   netip.AddrPort
	State    memberlist.NodeStateType
	Meta     nodeMeta
	MetaErr  error
	RaftAddr string
}

func (n *Node) members() []member { return n.gossip.members() }

func gossipStateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead, memberlist.StateLeft:
		return "gone"
	}
	return strconv.Itoa(int(s))
}

// updateMeta changes this node's gossip metadata (change reports whether
// it changed anything) and, if it did, tells the peers, waiting up to
// timeout for the news to go out; what names the news in a warning. It
// reports whether the metadata changed.
func (n *Node) updateMeta(change func(*nodeMeta) bool, timeout time.Duration, what string) bool {
	n.gossip.mu.Lock()
	changed := change(&n.gossip.meta)
	n.gossip.mu.Unlock()
	if !changed || n.ml == nil {
		return changed
	}
	if err := n.ml.UpdateNode(timeout); err != nil {
		n.logger.Warn("telling peers "+what+" failed", "err", err)
	}
	return true
}
