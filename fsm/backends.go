package fsm

import (
	"net/netip"
	"sort"

	"github.com/raftlb/raftlb/spec"
)

// Backend is one real server of a service, resolved against the node
// registry.
type Backend struct {
	Address netip.Addr
	Port    uint16
	Weight  int
	Node    string // the cluster node behind the address, if any
	// Drained says why the backend gets no new connections (weight 0):
	// its node is in standby, or it is disabled; "" otherwise.
	Drained string
}

// AddrPort is where the backend listens.
func (b Backend) AddrPort() netip.AddrPort { return netip.AddrPortFrom(b.Address, b.Port) }

// Backends resolves a service's real servers: with all-nodes, every
// registered node that online reports as up, at its bind address (a
// witness is none);
// otherwise the explicit list. Sorted by address and port. It is a pure
// function of the replicated state and the caller's view of which nodes
// are online.
func (s State) Backends(svc spec.Service, online func(node string) bool) []Backend {
	byAddr := map[netip.Addr]string{}
	for name, nd := range s.Nodes {
		byAddr[nd.Address] = name
	}
	var out []Backend
	if svc.RealServers.AllNodes {
		port := svc.RealServers.NodePort
		if port == 0 {
			port = svc.Port
		}
		for name, nd := range s.Nodes {
			if online(name) && !nd.Witness {
				out = append(out, Backend{Address: nd.Address, Port: port, Weight: svc.RealServers.NodeWeight, Node: name})
			}
		}
	} else {
		for _, rs := range svc.RealServers.Servers {
			out = append(out, Backend{Address: rs.Address, Port: rs.Port, Weight: rs.Weight, Node: byAddr[rs.Address]})
		}
	}
	for i := range out {
		if why := s.drained(svc, out[i]); why != "" {
			out[i].Weight, out[i].Drained = 0, why
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Address.Compare(out[j].Address); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}
