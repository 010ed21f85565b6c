package realserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Netlink is the real Kernel: addresses through netlink, sysctls through
// /proc/sys.
type Netlink struct{}

func (Netlink) link(dev string) (netlink.Link, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", dev, err)
	}
	return l, nil
}

func toNetlinkAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

// AddrAdd implements Kernel.
func (n Netlink) AddrAdd(dev string, p netip.Prefix) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	a := toNetlinkAddr(p)
	if dev == loopback {
		// Host scope: the VIP on lo is for accepting packets, never a
		// source address for traffic leaving the node.
		a.Scope = int(netlink.SCOPE_HOST)
	}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	return nil
}

// AddrDel implements Kernel.
func (n Netlink) AddrDel(dev string, p netip.Prefix) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, toNetlinkAddr(p)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// Addrs implements Kernel.
func (n Netlink) Addrs(dev string) ([]netip.Prefix, error) {
	l, err := n.link(dev)
	if err != nil {
		return nil, err
	}
	var list []netlink.Addr
	// The kernel marks a dump that raced an address change as
	// interrupted (possibly inconsistent); dump again, as iproute2 does.
	for try := 1; ; try++ {
		list, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == dumpTries {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses on %s: %w", dev, err)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// dumpTries bounds the re-dumps of an interrupted address dump.
const dumpTries = 5

func sysctlPath(key string) (string, error) {
	if strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("bad sysctl key %q", key)
	}
	return filepath.Join("/proc/sys", key), nil
}

// Sysctl implements Kernel.
func (Netlink) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// SetSysctl implements Kernel.
func (Netlink) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(value), 0o644)
}
