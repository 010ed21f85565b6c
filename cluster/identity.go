package cluster

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// Identity. The cluster CA vouches for a node's name (its certificate's
// CN); the Raft configuration says where that node is. Every connection,
// Raft or RPC, in either direction, passes checkPeer after the TLS
// handshake:
//
//   - a revoked certificate (fsm/revoke.go) is refused;
//   - a certificate that lists IP addresses is only good from those;
//   - a node dialed must present the certificate of the node it was
//     dialed as (or of the node the configuration has at that address);
//   - a peer dialing in for Raft must be in the configuration, at the
//     address configured for it (until this node has a configuration: a
//     node that is joining learns it from the DC's first append);
//   - an RPC may only speak for the certificate's node (handleRPC), and
//     only a member may ask for anything but a ping (requireMember).
//
// A certificate for node A presenting itself as B is refused and logged.

func certSerial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// checkPeer is the muxLayer's check.
func (n *Node) checkPeer(p peer) error { return n.checkPeerIn(p, n.configuredServers()) }

// checkPeerIn is checkPeer against servers, the Raft configuration.
func (n *Node) checkPeerIn(p peer, servers map[string]raft.ServerAddress) error {
	name, serial := p.cert.Subject.CommonName, certSerial(p.cert)
	if err := spec.ValidateNodeName(name); err != nil {
		return fmt.Errorf("the certificate's name is no node name: %w", err)
	}
	if r, ok := n.fsm.Revoked(name, serial, p.cert.NotBefore); ok {
		return fmt.Errorf("the certificate of node %s (serial %s) was revoked when node %s was removed at %s; issue a new one (raftlb tls cert --name %s) to join again",
			name, serial, r.Node, r.At.Format(time.RFC3339), name)
	}
	if len(p.cert.IPAddresses) > 0 && !certHasIP(p.cert, p.remote) {
		return fmt.Errorf("the certificate of node %s is for %s, not %s", name, ipList(p.cert), p.remote)
	}
	if p.outbound {
		expect := p.expect
		if expect == "" {
			expect = idAt(servers, p.address)
		}
		if expect != "" && name != expect {
			return fmt.Errorf("dialed node %s at %s, and the certificate there is for node %s", expect, p.address, name)
		}
	} else if p.raft && len(servers) > 0 {
		addr, ok := servers[name]
		if !ok {
			return fmt.Errorf("node %s is not in the Raft configuration", name)
		}
		if err := sameHost(name, addr, p.remote); err != nil {
			return err
		}
	}
	n.serials.saw(name, serial)
	return nil
}

// checkRaftHeader checks one Raft request on an inbound connection from p:
// its header must name p's node (Raft takes a leader or candidate from it)
// and, once this node has a configuration, that node's configured address;
// and p must still pass checkPeer (not revoked, not removed meanwhile).
func (n *Node) checkRaftHeader(p peer, h raft.RPCHeader) error {
	cn := p.cert.Subject.CommonName
	if id := string(h.ID); id != cn {
		return fmt.Errorf("a raft request in the name of node %q over a connection whose certificate is node %s's", id, cn)
	}
	servers := n.configuredServers() // once per request: this runs on every heartbeat
	if addr, ok := servers[cn]; ok && string(h.Addr) != string(addr) {
		return fmt.Errorf("a raft request of node %s giving its address as %q; it is configured at %s", cn, h.Addr, addr)
	}
	return n.checkPeerIn(p, servers)
}

// requireMember refuses an RPC from a node that is not in the Raft
// configuration, or that calls from another address than the one
// configured for it. orRegistered also accepts a node still in the
// registry only: a leave retried after its removal from Raft committed
// and its deregistration did not.
func (n *Node) requireMember(from string, remote netip.Addr, orRegistered bool) error {
	addr, ok := n.configuredServers()[from]
	if !ok && orRegistered {
		if node, in := n.fsm.State().Nodes[from]; in {
			addr, ok = raft.ServerAddress(node.RaftAddr.String()), true
		}
	}
	if !ok {
		return fmt.Errorf("node %q is not a member of the cluster: only members may ask this of the DC", from)
	}
	return sameHost(from, addr, remote)
}

func sameHost(name string, addr raft.ServerAddress, remote netip.Addr) error {
	ap, err := netip.ParseAddrPort(string(addr))
	if err != nil || ap.Addr().Unmap() != remote {
		return fmt.Errorf("node %s is configured at %s, and this connection comes from %s", name, addr, remote)
	}
	return nil
}

// configuredServers is the latest Raft configuration, by node name; empty
// before Raft runs or while this node has none.
func (n *Node) configuredServers() map[string]raft.ServerAddress {
	out := map[string]raft.ServerAddress{}
	if n.raft == nil {
		return out
	}
	f := n.raft.GetConfiguration() // answered at once from an atomic copy
	if f.Error() != nil {
		return out
	}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = s.Address
	}
	return out
}

func idAt(servers map[string]raft.ServerAddress, address string) string {
	for id, a := range servers {
		if string(a) == address {
			return id
		}
	}
	return ""
}

func certHasIP(c *x509.Certificate, ip netip.Addr) bool {
	return slices.ContainsFunc(c.IPAddresses, func(a net.IP) bool {
		b, ok := netip.AddrFromSlice(a)
		return ok && b.Unmap() == ip
	})
}

func ipList(c *x509.Certificate) string {
	s := make([]string, len(c.IPAddresses))
	for i, ip := range c.IPAddresses {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// seenSerials remembers which certificate serials each peer used, so
// removing a node revokes the very certificates it had.
type seenSerials struct {
	mu sync.Mutex
	m  map[string][]string
}

func (s *seenSerials) saw(node, serial string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]string{}
	}
	l := s.m[node]
	if slices.Contains(l, serial) {
		return
	}
	l = append(l, serial)
	if len(l) > fsm.MaxSerialsPerRevocation {
		l = l[1:]
	}
	s.m[node] = l
}

func (s *seenSerials) of(node string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.m[node])
}

// revocation is what removing node revokes: the serials seen, and every
// certificate for it issued before now (less the backdating of
// IssueNodeCert, so a certificate issued right after the removal works).
func (n *Node) revocation(node string, now time.Time) *fsm.Revocation {
	// Certificates carry whole seconds; so does the cutoff.
	return &fsm.Revocation{Node: node, Serials: n.serials.of(node), IssuedBefore: now.Add(-clockSkew).Truncate(time.Second).UTC(), At: now.UTC()}
}
