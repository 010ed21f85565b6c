//go:build lab

package lab

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

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
	return &NS{name: name, h: h}, nil
}

// Close releases the handle.
func (n *NS) Close() { n.h.Close() }

// HasAddr reports whether ip is configured on dev.
func (n *NS) HasAddr(dev string, ip netip.Addr) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, err := n.h.LinkByName(dev)
	if err != nil {
		return false, fmt.Errorf("%s: %s: %w", n.name, dev, err)
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("%s: addresses of %s: %w", n.name, dev, err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true, nil
		}
	}
	return false, nil
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
	list, err := n.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
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
