//go:build lab

package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is a netlink handle into one namespace. Reading addresses and
// neighbours through it costs microseconds, where running `ip` in the VM
// costs 0.1–0.2 s — too coarse to time a failover.
type NS struct {
	name string
	h    *netlink.Handle
	mu   sync.Mutex
	// nft reads the namespace's nftables (answers.go), opened on first
	// use in nftNS.
	nft   *nftables.Conn
	nftNS netns.NsHandle
}

// OpenNS returns a handle for namespace name; close it with Close.
func OpenNS(name string) (*NS, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	// A lost reply must fail the poll, not hang the test until the VM's
	// wall-clock limit kills everything without a word.
	if err := h.SetSocketTimeout(5 * time.Second); err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return &NS{name: name, h: h}, nil
}

// Close releases the handle.
func (n *NS) Close() {
	n.h.Close()
	if n.nft != nil {
		_ = n.nft.CloseLasting()
		n.nftNS.Close()
	}
}

// dumpTries bounds the re-dumps of a netlink dump the kernel marks as
// interrupted (it raced a change, such as the VIP moving): the poll that
// watches a failover must not fail because the failover happened.
const dumpTries = 5

// HasAddr reports whether ip is configured on dev.
func (n *NS) HasAddr(dev string, ip netip.Addr) (bool, error) {
	_, ok, err := n.Addr(dev, ip)
	return ok, err
}

// AddrInfo is how the kernel holds one address.
type AddrInfo struct {
	Flags       int // IFA_F_* (unix.IFA_F_NODAD, unix.IFA_F_DEPRECATED, …)
	PreferedLft int // seconds; 0: deprecated
	ValidLft    int // seconds; math.MaxUint32 shows as forever
	Scope       int
}

// Addr returns how ip is configured on dev; ok is false when it is not.
func (n *NS) Addr(dev string, ip netip.Addr) (info AddrInfo, ok bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, err := n.h.LinkByName(dev)
	if err != nil {
		return AddrInfo{}, false, fmt.Errorf("%s: %s: %w", n.name, dev, err)
	}
	var addrs []netlink.Addr
	for try := 1; ; try++ {
		addrs, err = n.h.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == dumpTries {
			break
		}
	}
	if err != nil {
		return AddrInfo{}, false, fmt.Errorf("%s: addresses of %s: %w", n.name, dev, err)
	}
	for _, a := range addrs {
		if got, found := netip.AddrFromSlice(a.IP); found && got.Unmap() == ip {
			return AddrInfo{Flags: a.Flags, PreferedLft: a.PreferedLft, ValidLft: a.ValidLft, Scope: a.Scope}, true, nil
		}
	}
	return AddrInfo{}, false, nil
}

// NeighMAC returns the MAC the neighbour table holds for ip on dev, or ""
// when there is no usable entry.
func (n *NS) NeighMAC(dev string, ip netip.Addr) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, err := n.h.LinkByName(dev)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", n.name, dev, err)
	}
	var list []netlink.Neigh
	for try := 1; ; try++ {
		list, err = n.h.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == dumpTries {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s: neighbours: %w", n.name, err)
	}
	for _, e := range list {
		if got, ok := netip.AddrFromSlice(e.IP); ok && got.Unmap() == ip && e.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
			return net.HardwareAddr(e.HardwareAddr).String(), nil
		}
	}
	return "", nil
}

// IPVSDests returns the real servers (address:port → weight) of the IPVS
// service vip:port/tcp in namespace ns, read through netlink: cheap enough
// to poll every few milliseconds. ok is false when there is no such
// service.
func IPVSDests(ns string, vip netip.Addr, port uint16) (dests map[netip.AddrPort]int, ok bool, err error) {
	return ipvsDests(ns, func(s *ipvs.Service) bool {
		a, _ := netip.AddrFromSlice(s.Address)
		return a.Unmap() == vip && s.Port == port && s.FWMark == 0
	})
}

// IPVSMarkDests is IPVSDests for the firewall-mark service mark (as
// keepalived sets one up).
func IPVSMarkDests(ns string, mark uint32) (dests map[netip.AddrPort]int, ok bool, err error) {
	return ipvsDests(ns, func(s *ipvs.Service) bool { return s.FWMark == mark })
}

// ipvsDests returns the real servers of the first service in ns that
// match accepts.
func ipvsDests(ns string, match func(*ipvs.Service) bool) (dests map[netip.AddrPort]int, ok bool, err error) {
	h, err := ipvs.New("/run/netns/" + ns)
	if err != nil {
		return nil, false, fmt.Errorf("ipvs in %s: %w", ns, err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return nil, false, fmt.Errorf("ipvs services in %s: %w", ns, err)
	}
	for _, s := range svcs {
		if !match(s) {
			continue
		}
		ds, err := h.GetDestinations(s)
		if err != nil {
			return nil, false, fmt.Errorf("ipvs destinations in %s: %w", ns, err)
		}
		out := map[netip.AddrPort]int{}
		for _, d := range ds {
			da, _ := netip.AddrFromSlice(d.Address)
			out[netip.AddrPortFrom(da.Unmap(), d.Port)] = d.Weight
		}
		return out, true, nil
	}
	return nil, false, nil
}
