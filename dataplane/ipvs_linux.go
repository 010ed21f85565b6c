package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/moby/ipvs"
)

// Service flags from the kernel's ip_vs.h; moby/ipvs does not name them.
const (
	svcFlagPersistent = 0x0001
)

// KernelIPVS is the real IPVS, over generic netlink. A moby/ipvs handle is
// one netlink socket, and concurrent requests on it can take each other's
// replies (seen: the API reading the table while the director wrote it
// hung), so every call holds mu.
type KernelIPVS struct {
	mu sync.Mutex
	h  *ipvs.Handle
}

// NewKernelIPVS opens a netlink handle in the current network namespace.
func NewKernelIPVS() (*KernelIPVS, error) {
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("open IPVS (is the ip_vs module loaded?): %w", err)
	}
	return &KernelIPVS{h: h}, nil
}

// Close releases the netlink socket.
func (k *KernelIPVS) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.h.Close()
}

func protoNum(p string) uint16 {
	if p == ProtocolUDP {
		return syscall.IPPROTO_UDP
	}
	return syscall.IPPROTO_TCP
}

func protoName(n uint16) string {
	if n == syscall.IPPROTO_UDP {
		return ProtocolUDP
	}
	return ProtocolTCP
}

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

func toKernelService(s Service) *ipvs.Service {
	ks := &ipvs.Service{
		Address: s.Key.VIP.AsSlice(), Protocol: protoNum(s.Key.Protocol), Port: s.Key.Port,
		SchedName: s.Scheduler, AddressFamily: family(s.Key.VIP),
		Netmask: 0xffffffff,
	}
	if !s.Key.VIP.Is4() {
		ks.Netmask = 128 // IPv6 services carry a prefix length here
	}
	if s.Persistence > 0 {
		ks.Flags |= svcFlagPersistent
		ks.Timeout = uint32(s.Persistence / time.Second)
		if s.Netmask.IsValid() && s.Key.VIP.Is4() {
			// The kernel reads the mask as big-endian bytes; netlink
			// carries the attribute in host order.
			b := s.Netmask.As4()
			ks.Netmask = binary.NativeEndian.Uint32(b[:])
		}
	}
	return ks
}

// fromKernelService is toKernelService read back: what the kernel holds,
// without its real servers.
func fromKernelService(ks *ipvs.Service) Service {
	s := Service{
		Key:       ServiceKey{VIP: fromIP(ks.Address), Port: ks.Port, Protocol: protoName(ks.Protocol)},
		Scheduler: ks.SchedName,
	}
	if ks.Flags&svcFlagPersistent != 0 {
		s.Persistence = time.Duration(ks.Timeout) * time.Second
		if s.Key.VIP.Is4() {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], ks.Netmask)
			s.Netmask = netip.AddrFrom4(b)
		}
	}
	return s
}

func fwdFlag(f string) uint32 {
	switch f {
	case ForwardMasq:
		return ipvs.ConnectionFlagMasq
	case ForwardTunnel:
		return ipvs.ConnectionFlagTunnel
	default:
		return ipvs.ConnectionFlagDirectRoute
	}
}

func fwdName(flags uint32) string {
	switch flags & ipvs.ConnectionFlagFwdMask {
	case ipvs.ConnectionFlagMasq:
		return ForwardMasq
	case ipvs.ConnectionFlagTunnel:
		return ForwardTunnel
	case ipvs.ConnectionFlagLocalNode:
		return ForwardLocal
	default:
		return ForwardRoute
	}
}

func toKernelDest(d Dest) *ipvs.Destination {
	return &ipvs.Destination{
		Address: d.Addr.AsSlice(), Port: d.Port, Weight: d.Weight,
		ConnectionFlags: fwdFlag(d.Forward), AddressFamily: family(d.Addr),
	}
}

func fromIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// Services implements IPVS.
func (k *KernelIPVS) Services() ([]Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	list, err := k.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	var out []Service
	for _, ks := range list {
		if ks.FWMark != 0 {
			continue // firewall-mark services are not raftlb's
		}
		s := fromKernelService(ks)
		s.Stats = Stats{Connections: uint64(ks.Stats.Connections), PacketsIn: uint64(ks.Stats.PacketsIn), PacketsOut: uint64(ks.Stats.PacketsOut), BytesIn: ks.Stats.BytesIn, BytesOut: ks.Stats.BytesOut}
		dests, err := k.h.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("list real servers of %s: %w", s.Key, err)
		}
		for _, kd := range dests {
			s.Dests = append(s.Dests, Dest{
				Addr: fromIP(kd.Address), Port: kd.Port, Weight: kd.Weight,
				Forward: fwdName(kd.ConnectionFlags), ActiveConns: kd.ActiveConnections, InactiveConns: kd.InactiveConnections,
				Stats: Stats{Connections: uint64(kd.Stats.Connections), PacketsIn: uint64(kd.Stats.PacketsIn), PacketsOut: uint64(kd.Stats.PacketsOut), BytesIn: kd.Stats.BytesIn, BytesOut: kd.Stats.BytesOut},
			})
		}
		out = append(out, s)
	}
	sortServices(out)
	return out, nil
}

// AddService implements IPVS.
func (k *KernelIPVS) AddService(s Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.NewService(toKernelService(s))
}

// UpdateService implements IPVS.
func (k *KernelIPVS) UpdateService(s Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.UpdateService(toKernelService(s))
}

// DelService implements IPVS.
func (k *KernelIPVS) DelService(key ServiceKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.DelService(toKernelService(Service{Key: key}))
}

// AddDest implements IPVS.
func (k *KernelIPVS) AddDest(key ServiceKey, d Dest) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.NewDestination(toKernelService(Service{Key: key}), toKernelDest(d))
}

// UpdateDest implements IPVS.
func (k *KernelIPVS) UpdateDest(key ServiceKey, d Dest) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.UpdateDestination(toKernelService(Service{Key: key}), toKernelDest(d))
}

// DelDest implements IPVS.
func (k *KernelIPVS) DelDest(key ServiceKey, d Dest) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.DelDestination(toKernelService(Service{Key: key}), toKernelDest(d))
}
