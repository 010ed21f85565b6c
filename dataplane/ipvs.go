package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// The protocol and forwarding names of the table. They are the words of
// the spec (the director fills Service and Dest from it as written); the
// kernel implementation maps them to netlink's numbers and flags.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"

	ForwardRoute  = "route"  // direct routing (ipvsadm -g)
	ForwardMasq   = "masq"   // NAT (ipvsadm -m)
	ForwardTunnel = "tunnel" // IP-in-IP (ipvsadm -i)
	// ForwardLocal is how the kernel may report a destination that is a
	// local address (ipvsadm's "Local").
	ForwardLocal = "local"
)

// ErrNoKernel is returned by callers that need a kernel data plane when the
// agent runs without one.
var ErrNoKernel = errors.New("this agent runs with --dataplane none: it has no kernel data plane")

// ServiceKey is the identity of a virtual service in the kernel: VIP, port
// and protocol are unique together.
type ServiceKey struct {
	VIP      netip.Addr
	Port     uint16
	Protocol string
}

// String returns the key as ipvsadm prints it, e.g. "10.0.0.1:80/tcp" or
// "[2001:db8::1]:80/tcp".
func (k ServiceKey) String() string {
	proto := k.Protocol
	if proto == "" {
		proto = "?"
	}
	if !k.VIP.IsValid() {
		return "?:" + strconv.Itoa(int(k.Port)) + "/" + proto
	}
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + proto
}

// Service is one IPVS virtual service as raftlb sees it.
type Service struct {
	Key         ServiceKey
	Scheduler   string
	Persistence time.Duration // 0: not persistent
	// Netmask groups persistent clients (IPv4 only); invalid means /32.
	Netmask netip.Addr
	Dests   []Dest
	// Stats are the kernel's counters (ipvsadm -Ln --stats), read for
	// display and metrics; they never take part in a diff.
	Stats Stats
}

func (s Service) String() string { return s.Key.String() }

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
	Forward string // ForwardRoute, ForwardMasq, ForwardTunnel (ForwardLocal when read back)
	// ActiveConns and InactiveConns are read from the kernel for display;
	// they never take part in a diff.
	ActiveConns   int
	InactiveConns int
	Stats         Stats
}

// AddrPort is the real server's identity within its service.
func (d Dest) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.Addr, d.Port) }

// IPVS is the narrow set of IPVS operations the director needs. The real
// implementation uses moby/ipvs over netlink; tests use FakeIPVS.
type IPVS interface {
	Services() ([]Service, error) // with their destinations
	AddService(Service) error
	UpdateService(Service) error
	DelService(ServiceKey) error
	AddDest(ServiceKey, Dest) error
	UpdateDest(ServiceKey, Dest) error
	DelDest(ServiceKey, Dest) error
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
