package fsm

import (
	"maps"
	"net/netip"
	"reflect"
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

// Clone returns a deep copy of s.
func (s Spec) Clone() Spec {
	out := s
	out.VIPs = slices.Clone(s.VIPs)
	out.Services = nil
	if s.Services != nil {
		out.Services = make([]Service, len(s.Services))
		for i, svc := range s.Services {
			out.Services[i] = svc.Clone()
		}
	}
	out.Fencing = s.Fencing.Clone()
	out.Resources = cloneResources(s.Resources)
	return out
}

// Clone returns a deep copy of svc.
func (svc Service) Clone() Service {
	out := svc
	out.RealServers.Servers = slices.Clone(svc.RealServers.Servers)
	if svc.Fallback != nil {
		fb := *svc.Fallback
		out.Fallback = &fb
	}
	if svc.HealthCheck != nil {
		hc := *svc.HealthCheck
		hc.ExpectStatus = slices.Clone(hc.ExpectStatus)
		hc.Command = slices.Clone(hc.Command)
		out.HealthCheck = &hc
	}
	return out
}

// normalized returns a deep copy of s in which every empty slice is nil.
// JSON drops empty "omitempty" slices and keeps other empty slices as [], so
// without this a spec could change shape across a snapshot or a forwarded
// request, and an unchanged spec could look changed.
func (s Spec) normalized() Spec {
	out := s.Clone()
	out.Fencing = out.Fencing.normalized()
	out.Resources = normalizedResources(out.Resources)
	out.VIPs = nilIfEmpty(out.VIPs)
	out.Services = nilIfEmpty(out.Services)
	for i := range out.Services {
		svc := &out.Services[i]
		svc.RealServers.Servers = nilIfEmpty(svc.RealServers.Servers)
		if hc := svc.HealthCheck; hc != nil {
			hc.ExpectStatus = nilIfEmpty(hc.ExpectStatus)
			hc.Command = nilIfEmpty(hc.Command)
		}
	}
	return out
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// sameConfig reports whether a and b describe the same configuration,
// ignoring Version and the nil/empty distinction of slices.
func sameConfig(a, b Spec) bool {
	a, b = a.normalized(), b.normalized()
	a.Version, b.Version = 0, 0
	return reflect.DeepEqual(a, b)
}

// sameNode reports whether a and b register the same member. JoinedAt is
// left out on purpose: a join that is retried carries a new timestamp, and
// the first one is the one worth keeping.
func sameNode(a, b Node) bool {
	return a.Name == b.Name && a.Address == b.Address &&
		a.RaftAddr == b.RaftAddr && a.GossipAddr == b.GossipAddr && a.Witness == b.Witness &&
		a.Schema == b.Schema
}
