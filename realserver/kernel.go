package realserver

import (
	"net/netip"
	"time"
)

// Kernel is the narrow set of kernel operations this package needs. The
// real implementation uses netlink and /proc/sys; tests use Fake.
type Kernel interface {
	// AddrAdd puts p on dev for good; adding an address that is there is a
	// no-op.
	AddrAdd(dev string, p netip.Prefix) error
	// AddrLease puts p on dev with a lifetime, or renews the lifetime of
	// the address in place (RTM_NEWADDR with NLM_F_REPLACE: no flap, no
	// route change, no ARP). The kernel drops the address by itself when
	// the lifetime ends, whatever becomes of the agent. The lifetime is
	// whole seconds.
	AddrLease(dev string, p netip.Prefix, lifetime time.Duration) error
	// AddrDel removes p from dev; removing an absent address, or one from
	// an interface that is gone, is a no-op.
	AddrDel(dev string, p netip.Prefix) error
	// Addrs lists the addresses on dev.
	Addrs(dev string) ([]netip.Prefix, error)
	// Sysctl reads a value under /proc/sys, e.g. "net/ipv4/conf/all/arp_ignore".
	Sysctl(key string) (string, error)
	// SetSysctl writes one.
	SetSysctl(key, value string) error
}

// hostPrefix is the address as a single-host prefix: /32 or /128.
func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}
