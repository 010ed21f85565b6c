package director

import (
	"net/netip"
	"slices"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// Desired computes the IPVS table the spec asks for, given which nodes are
// online and the health of each real server (nil: all healthy). A server
// that fails its checks is left out, or kept at weight 0 when the service
// is quiescent (existing connections drain, like ldirectord's quiescent=yes
// and keepalived's inhibit_on_failure). When no real server of a service
// is healthy, the fallback (sorry) server takes the traffic, as with
// ldirectord's fallback=, and leaves again when one recovers. A node whose
// agent is stopping (stopping, nil: none) is drained: weight 0, so it gets
// no new connections and those in flight to it are still forwarded until
// it leaves.
func Desired(state fsm.State, online, stopping func(string) bool, healthOf func(spec.ServiceKey, netip.AddrPort) (up bool)) []dataplane.Service {
	out := make([]dataplane.Service, 0, len(state.Spec.Services))
	for _, svc := range state.Spec.Services {
		s := dataplane.Service{Key: dataplane.ServiceKey(svc.Key()), Scheduler: svc.Scheduler, Persistence: svc.Persistence.Timeout}
		if svc.Persistence.Timeout > 0 {
			s.Netmask = svc.Persistence.Netmask
		}
		healthy := 0
		for _, b := range state.Backends(svc, online) {
			d := dataplane.Dest{Addr: b.Address, Port: b.Port, Weight: b.Weight, Forward: svc.Forwarding}
			if b.Node != "" && stopping != nil && stopping(b.Node) {
				d.Weight = 0
			}
			if svc.HealthCheck != nil && healthOf != nil && !healthOf(svc.Key(), d.AddrPort()) {
				if svc.HealthCheck.OnFail != spec.OnFailQuiescent {
					continue
				}
				d.Weight = 0
			} else if d.Weight > 0 {
				healthy++
			}
			s.Dests = append(s.Dests, d)
		}
		if healthy == 0 && svc.Fallback != nil {
			fb := dataplane.Dest{Addr: svc.Fallback.Address, Port: svc.Fallback.Port, Weight: max(svc.Fallback.Weight, 1), Forward: svc.Forwarding}
			if !slices.ContainsFunc(s.Dests, func(d dataplane.Dest) bool { return d.AddrPort() == fb.AddrPort() }) {
				s.Dests = append(s.Dests, fb)
			}
		}
		out = append(out, s)
	}
	return out
}
