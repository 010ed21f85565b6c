package fsm

import (
	"maps"
	"net/netip"
	"slices"
)

// Clone returns a deep copy of st: nothing in the copy shares memory with st,
// so a reader may keep or modify it while the FSM moves on.
func (st State) Clone() State {
	out := State{Spec: st.Spec.Clone(), Nodes: make(map[string]Node, len(st.Nodes)), Holders: make(map[netip.Addr]Holder, len(st.Holders))}
	// Node and Holder hold only values (time.Time's *Location is
	// immutable), so a shallow map copy is deep.
	maps.Copy(out.Nodes, st.Nodes)
	maps.Copy(out.Holders, st.Holders)
	out.FenceHistory = slices.Clone(st.FenceHistory)
	out.DeviceChecks = maps.Clone(st.DeviceChecks)
	out.Schema = st.Schema
	out.Standby = maps.Clone(st.Standby)
	out.Disabled = slices.Clone(st.Disabled)
	if st.Revoked != nil {
		out.Revoked = make([]Revocation, len(st.Revoked))
		for i, r := range st.Revoked {
			r.Serials = slices.Clone(r.Serials)
			out.Revoked[i] = r
		}
	}
	return out
}

// sameNode reports whether a and b register the same member. JoinedAt is
// left out on purpose: a join that is retried carries a new timestamp, and
// the first one is the one worth keeping.
func sameNode(a, b Node) bool {
	return a.Name == b.Name && a.Address == b.Address &&
		a.RaftAddr == b.RaftAddr && a.GossipAddr == b.GossipAddr && a.Witness == b.Witness &&
		a.Schema == b.Schema
}
