package dataplane

import (
	"fmt"
	"net/netip"
	"sort"
)

// The kinds of IPVS write an Op makes.
const (
	OpAddService    = "add-service"
	OpUpdateService = "update-service"
	OpDelService    = "del-service"
	OpAddDest       = "add-dest"
	OpUpdateDest    = "update-dest"
	OpDelDest       = "del-dest"
)

// Op is one IPVS write: Kind (one of the Op* constants) on Service, and on
// Dest for the real-server kinds.
type Op struct {
	Kind    string
	Service Service
	Dest    Dest
}

func (o Op) String() string {
	if o.Dest.Addr.IsValid() {
		return fmt.Sprintf("%s %s -> %s", o.Kind, o.Service.Key, o.Dest.AddrPort())
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Service.Key)
}

// Plan diffs the kernel table against the desired one. Only services whose
// VIP is in owned are considered: raftlb never touches IPVS services it
// does not manage. A no-op plan is empty; nothing is ever flushed.
func Plan(current, desired []Service, owned map[netip.Addr]bool) []Op {
	cur := map[ServiceKey]Service{}
	for _, s := range current {
		if owned[s.Key.VIP] {
			cur[s.Key] = s
		}
	}
	var ops []Op
	want := map[ServiceKey]bool{}
	for _, d := range desired {
		want[d.Key] = true
		c, ok := cur[d.Key]
		if !ok {
			ops = append(ops, Op{Kind: OpAddService, Service: d})
			for _, dst := range d.Dests {
				ops = append(ops, Op{Kind: OpAddDest, Service: d, Dest: dst})
			}
			continue
		}
		if !sameServiceOptions(c, d) {
			ops = append(ops, Op{Kind: OpUpdateService, Service: d})
		}
		have := map[netip.AddrPort]Dest{}
		for _, dst := range c.Dests {
			have[dst.AddrPort()] = dst
		}
		wantDest := map[netip.AddrPort]bool{}
		for _, dst := range d.Dests {
			wantDest[dst.AddrPort()] = true
			h, ok := have[dst.AddrPort()]
			switch {
			case !ok:
				ops = append(ops, Op{Kind: OpAddDest, Service: d, Dest: dst})
			case h.Weight != dst.Weight || !sameForward(h.Forward, dst.Forward):
				ops = append(ops, Op{Kind: OpUpdateDest, Service: d, Dest: dst})
			}
		}
		for _, dst := range c.Dests {
			if !wantDest[dst.AddrPort()] {
				ops = append(ops, Op{Kind: OpDelDest, Service: d, Dest: dst})
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
		ops = append(ops, Op{Kind: OpDelService, Service: c})
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

// Apply carries out ops in order, each after allowed agrees, and returns
// how many writes succeeded. allowed is the caller's safety check (the
// director's: leadership verified in this term, recently enough); a write
// it refuses is not made, nor any after it.
func Apply(k IPVS, ops []Op, allowed func() error) (int, error) {
	for i, o := range ops {
		if err := allowed(); err != nil {
			return i, fmt.Errorf("ipvs %s: %w", o, err)
		}
		var err error
		switch o.Kind {
		case OpAddService:
			err = k.AddService(o.Service)
		case OpUpdateService:
			err = k.UpdateService(o.Service)
		case OpDelService:
			err = k.DelService(o.Service.Key)
		case OpAddDest:
			err = k.AddDest(o.Service.Key, o.Dest)
		case OpUpdateDest:
			err = k.UpdateDest(o.Service.Key, o.Dest)
		case OpDelDest:
			err = k.DelDest(o.Service.Key, o.Dest)
		default:
			err = fmt.Errorf("unknown IPVS operation %q", o.Kind)
		}
		if err != nil {
			return i, fmt.Errorf("ipvs %s: %w", o, err)
		}
	}
	return len(ops), nil
}
