package realserver

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
	if err := netlink.AddrAdd(l, vipAddr(dev, p, 0)); err != nil && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	return nil
}

// AddrLease implements Kernel: an address replace, which adds the address
// if it is missing and otherwise only sets its lifetimes.
func (n Netlink) AddrLease(dev string, p netip.Prefix, lifetime time.Duration) error {
	if lifetime < time.Second || lifetime%time.Second != 0 {
		return fmt.Errorf("lease of %s on %s: %s is not a whole number of seconds", p, dev, lifetime)
	}
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, vipAddr(dev, p, int(lifetime/time.Second))); err != nil {
		return fmt.Errorf("lease of %s on %s: %w", p, dev, err)
	}
	return nil
}

// vipAddr is how a VIP goes on dev: lifetime seconds (0: for good).
func vipAddr(dev string, p netip.Prefix, lifetime int) *netlink.Addr {
	a := toNetlinkAddr(p)
	if dev == loopback {
		// Host scope: the VIP on lo is for accepting packets, never a
		// source address for traffic leaving the node. (IPv6 ignores
		// the scope; see below.)
		a.Scope = int(netlink.SCOPE_HOST)
	}
	if lifetime > 0 {
		// Valid and preferred alike; netlink sends IFA_CACHEINFO only
		// when they are not zero.
		a.ValidLft, a.PreferedLft = lifetime, lifetime
	}
	if p.Addr().Is6() {
		// Deprecated (preferred lifetime 0): it still accepts
		// connections and answers neighbour solicitations, but the kernel
		// never picks it as a source address. Otherwise the DC's own
		// connections to the LAN (health checks, for one) would leave
		// from the /128 VIP — source selection prefers the longest
		// matching prefix, capped at the address's own length — and the
		// answers would go to a real server, which carries the VIP too.
		// keepalived adds IPv6 VIPs the same way.
		a.PreferedLft, a.ValidLft = 0, math.MaxUint32
		if lifetime > 0 {
			a.ValidLft = lifetime
		}
		if dev != loopback {
			// No duplicate address detection: during a hand-over the
			// old DC still carries the VIP on its interface and would
			// answer the probe, which marks the new DC's copy
			// "dadfailed" (unusable); and a VIP waiting out DAD is
			// tentative for a second. The VIP is meant to be shared; the
			// cluster decides who holds it.
			a.Flags = unix.IFA_F_NODAD
		}
	}
	return a
}

// AddrDel implements Kernel.
func (n Netlink) AddrDel(dev string, p netip.Prefix) error {
	l, err := n.link(dev)
	var gone netlink.LinkNotFoundError
	if errors.As(err, &gone) {
		return nil // the interface is gone, and its addresses with it
	}
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
