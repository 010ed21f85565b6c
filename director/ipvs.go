package director

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/raftlb/raftlb/fsm"
)

// ForwardLocal is how the kernel may report a destination that is a local
// address (ipvsadm's "Local").
const ForwardLocal = "local"

// Service is one IPVS virtual service as raftlb sees it.
type Service struct {
	Key         fsm.ServiceKey
	Scheduler   string
	Persistence time.Duration // 0: not persistent
	// Netmask groups persistent clients (IPv4 only); invalid means /32.
	Netmask netip.Addr
	Dests   []Dest
	// Stats are the kernel's counters (ipvsadm -Ln --stats), read for
	// display and metrics; they never take part in a diff.
	Stats Stats
}

// Stats are IPVS counters since the service or real server was added:
// connections, packets and bytes in and out.
type Stats struct {
	Connections, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// Dest is one real server of a service.
type Dest struct {
	Addr    netip.Addr
	Port    uint16
	Weight  int
	Forward string // route, masq, tunnel (fsm names)
	// ActiveConns and InactiveConns are read from the kernel for display;
	// they never take part in a diff.
	ActiveConns   int
	InactiveConns int
	Stats         Stats
}

func (d Dest) id() netip.AddrPort { return netip.AddrPortFrom(d.Addr, d.Port) }

func (s Service) String() string { return s.Key.String() }

// IPVS is the narrow set of IPVS operations the director needs. The real
// implementation uses moby/ipvs over netlink; tests use FakeIPVS.
type IPVS interface {
	Services() ([]Service, error) // with their destinations
	AddService(Service) error
	UpdateService(Service) error
	DelService(fsm.ServiceKey) error
	AddDest(fsm.ServiceKey, Dest) error
	UpdateDest(fsm.ServiceKey, Dest) error
	DelDest(fsm.ServiceKey, Dest) error
}

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
func Desired(state fsm.State, online, stopping func(string) bool, healthOf func(fsm.ServiceKey, netip.AddrPort) (up bool)) []Service {
	out := make([]Service, 0, len(state.Spec.Services))
	for _, svc := range state.Spec.Services {
		s := Service{Key: svc.Key(), Scheduler: svc.Scheduler, Persistence: svc.Persistence.Timeout}
		if svc.Persistence.Timeout > 0 {
			s.Netmask = svc.Persistence.Netmask
		}
		healthy := 0
		for _, b := range state.Backends(svc, online) {
			d := Dest{Addr: b.Address, Port: b.Port, Weight: b.Weight, Forward: svc.Forwarding}
			if b.Node != "" && stopping != nil && stopping(b.Node) {
				d.Weight = 0
			}
			if svc.HealthCheck != nil && healthOf != nil && !healthOf(s.Key, d.id()) {
				if svc.HealthCheck.OnFail != fsm.OnFailQuiescent {
					continue
				}
				d.Weight = 0
			} else if d.Weight > 0 {
				healthy++
			}
			s.Dests = append(s.Dests, d)
		}
		if healthy == 0 && svc.Fallback != nil {
			fb := Dest{Addr: svc.Fallback.Address, Port: svc.Fallback.Port, Weight: max(svc.Fallback.Weight, 1), Forward: svc.Forwarding}
			if !slices.ContainsFunc(s.Dests, func(d Dest) bool { return d.id() == fb.id() }) {
				s.Dests = append(s.Dests, fb)
			}
		}
		out = append(out, s)
	}
	return out
}

// op is one IPVS write.
type op struct {
	kind string // add-service, update-service, del-service, add-dest, update-dest, del-dest
	svc  Service
	dest Dest
}

func (o op) String() string {
	if o.dest.Addr.IsValid() {
		return fmt.Sprintf("%s %s -> %s", o.kind, o.svc.Key, o.dest.id())
	}
	return fmt.Sprintf("%s %s", o.kind, o.svc.Key)
}

// plan diffs the kernel table against the desired one. Only services whose
// VIP is in owned are considered: raftlb never touches IPVS services it
// does not manage. A no-op plan is empty; nothing is ever flushed.
func plan(current, desired []Service, owned map[netip.Addr]bool) []op {
	cur := map[fsm.ServiceKey]Service{}
	for _, s := range current {
		if owned[s.Key.VIP] {
			cur[s.Key] = s
		}
	}
	var ops []op
	want := map[fsm.ServiceKey]bool{}
	for _, d := range desired {
		want[d.Key] = true
		c, ok := cur[d.Key]
		if !ok {
			ops = append(ops, op{kind: "add-service", svc: d})
			for _, dst := range d.Dests {
				ops = append(ops, op{kind: "add-dest", svc: d, dest: dst})
			}
			continue
		}
		if !sameServiceOptions(c, d) {
			ops = append(ops, op{kind: "update-service", svc: d})
		}
		have := map[netip.AddrPort]Dest{}
		for _, dst := range c.Dests {
			have[dst.id()] = dst
		}
		wantDest := map[netip.AddrPort]bool{}
		for _, dst := range d.Dests {
			wantDest[dst.id()] = true
			h, ok := have[dst.id()]
			switch {
			case !ok:
				ops = append(ops, op{kind: "add-dest", svc: d, dest: dst})
			case h.Weight != dst.Weight || !sameForward(h.Forward, dst.Forward):
				ops = append(ops, op{kind: "update-dest", svc: d, dest: dst})
			}
		}
		for _, dst := range c.Dests {
			if !wantDest[dst.id()] {
				ops = append(ops, op{kind: "del-dest", svc: d, dest: dst})
			}
		}
	}
	var gone []Service
	for k, c := range cur {
		if !want[k] {
			gone = append(gone, c)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].Key.String() < gone[j].Key.String() })
	for _, c := range gone {
		ops = append(ops, op{kind: "del-service", svc: c})
	}
	return ops
}

// sameForward compares forwarding methods. The kernel may report a real
// server that is a local address as "local" (ipvsadm's "Local") whatever
// method was asked for: that is the DC's own entry, and it matches.
func sameForward(kernel, want string) bool {
	return kernel == want || kernel == ForwardLocal
}

func sameServiceOptions(a, b Service) bool {
	return a.Scheduler == b.Scheduler && a.Persistence == b.Persistence && normMask(a) == normMask(b)
}

// normMask treats "no netmask" and /32 alike, as the kernel does.
func normMask(s Service) netip.Addr {
	if s.Persistence == 0 || !s.Key.VIP.Is4() {
		return netip.Addr{}
	}
	if !s.Netmask.IsValid() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return s.Netmask
}

// apply carries out ops in order, each after allowed agrees, and returns
// how many writes succeeded.
func apply(k IPVS, ops []op, allowed func() error) (int, error) {
	for i, o := range ops {
		if err := allowed(); err != nil {
			return i, fmt.Errorf("ipvs %s: %w", o, err)
		}
		var err error
		switch o.kind {
		case "add-service":
			err = k.AddService(o.svc)
		case "update-service":
			err = k.UpdateService(o.svc)
		case "del-service":
			err = k.DelService(o.svc.Key)
		case "add-dest":
			err = k.AddDest(o.svc.Key, o.dest)
		case "update-dest":
			err = k.UpdateDest(o.svc.Key, o.dest)
		case "del-dest":
			err = k.DelDest(o.svc.Key, o.dest)
		default:
			err = fmt.Errorf("unknown IPVS operation %q", o.kind)
		}
		if err != nil {
			return i, fmt.Errorf("ipvs %s: %w", o, err)
		}
	}
	return len(ops), nil
}

// Release deletes every IPVS service of vips: what a supervisor runs after
// the agent exited (raftlb release), so that a node whose agent is gone
// balances nothing. It returns how many services it removed.
func Release(k IPVS, vips []netip.Addr) (int, error) {
	cur, err := k.Services()
	if err != nil {
		return 0, fmt.Errorf("reading IPVS table: %w", err)
	}
	n := 0
	var errs []error
	for _, s := range cur {
		if !slices.Contains(vips, s.Key.VIP) {
			continue
		}
		if err := k.DelService(s.Key); err != nil {
			errs = append(errs, fmt.Errorf("removing IPVS service %s: %w", s.Key, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func sortServices(s []Service) {
	slices.SortFunc(s, func(a, b Service) int {
		if c := a.Key.VIP.Compare(b.Key.VIP); c != 0 {
			return c
		}
		if a.Key.Port != b.Key.Port {
			return int(a.Key.Port) - int(b.Key.Port)
		}
		if a.Key.Protocol < b.Key.Protocol {
			return -1
		}
		if a.Key.Protocol > b.Key.Protocol {
			return 1
		}
		return 0
	})
}
