package fsm

import (
	"net/netip"

	"github.com/raftlb/raftlb/spec"
)

// Validate checks a node registry entry.
func (n Node) Validate() error {
	var v validator
	v.node("node", n)
	return v.err()
}

func (v *validator) node(p string, n Node) {
	if err := spec.ValidateNodeName(n.Name); err != nil {
		v.addf(p+".name", "%v", err)
	}
	if !n.Address.IsValid() {
		v.addf(p+".address", "required")
	} else {
		v.unicastAddr(p+".address", n.Address)
	}
	v.endpoint(p+".raft_addr", n.RaftAddr)
	v.endpoint(p+".gossip_addr", n.GossipAddr)
}

func (v *validator) endpoint(p string, ap netip.AddrPort) {
	switch {
	case !ap.Addr().IsValid():
		v.addf(p, "required")
	case ap.Port() == 0:
		v.addf(p, "port must be 1..65535")
	default:
		v.unicastAddr(p, ap.Addr())
	}
}
