// The VIP lease: what answers for a VIP on this node — ARP replies for an
// IPv4 VIP, neighbour advertisements for an IPv6 one — depends on a lease
// that the kernel itself expires with millisecond precision (issue 18 item
// 1). The address lifetime on the interface stays the coarse backstop
// (whole seconds, up to 1.25 s late); this lease decides, to the
// millisecond, whether a frozen or dead agent's kernel keeps answering.
//
// The kernel implementation (NFTLease, lease_linux.go) is a table of
// raftlb's own in nftables, one per address family:
//
//	table arp raftlb_lease {
//		set vips  { type ipv4_addr; }
//		set lease { type ipv4_addr; flags timeout; }
//		chain output { type filter hook output priority 0; policy accept;
//			arp ptype ip arp hlen 6 arp plen 4 arp operation reply \
//				arp saddr ip @vips arp saddr ip != @lease drop
//		}
//		chain deadline { type filter hook output priority 0; policy accept;
//			arp ptype ip arp hlen 6 arp plen 4 arp operation reply \
//				arp saddr ip @vips meta time > UNTIL drop
//		}
//	}
//	table ip6 raftlb_lease {
//		set vips  { type ipv6_addr; }
//		set lease { type ipv6_addr; flags timeout; }
//		chain output { type filter hook output priority 0; policy accept;
//			meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert \
//				@th,64,128 @vips @th,64,128 != @lease drop
//		}
//		chain deadline { type filter hook output priority 0; policy accept;
//			meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert \
//				@th,64,128 @vips meta time > UNTIL drop
//		}
//	}
//
// (@th,64,128 is the neighbour advertisement's target address: bytes 8–23
// of the ICMPv6 message; its IP source is the node's own address.) A lease
// is an element of `lease` with a timeout; the kernel stops matching it the
// moment the timeout passes, so the node's answers for that VIP are dropped
// from then on.
//
// A timeout counts from the kernel's commit of the renewal, not from the
// verification that allowed it: an agent stalled between its check and the
// commit (SIGSTOP, a stalled VM) would commit a full lease late. So each
// renewal also rewrites the deadline rule, in the same transaction, with
// UNTIL the renewal's end as an absolute time (nanoseconds since the epoch,
// the kernel's `meta time`): computed from the verification's sending, it
// does not move however late it is committed. The timeout stays the
// backstop should the wall clock be stepped back; the two fail together
// only if the clock is stepped back during such a stall. Frames the agent itself sends on an AF_PACKET socket
// (gratuitous ARP, unsolicited neighbour advertisements) do not pass the
// output hook and are not filtered: the agent sends them only after a
// verification anyway.

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// LeaseTable is the default name of raftlb's lease table (in the arp and
// ip6 families).
const LeaseTable = "raftlb_lease"

// MinLease is the shortest lease the kernel can hold: set element timeouts
// count in milliseconds. A lease is truncated to whole milliseconds, never
// rounded up, so it never lasts longer than asked.
const MinLease = time.Millisecond

// ErrLeaseDamaged says that the lease table in the kernel is missing or not
// as installed (an operator ran `nft flush ruleset`, reloaded a firewall
// that flushes, deleted the table or a rule, emptied a set). While it is
// damaged the node's answers for its VIPs are not filtered at all. The cure
// is Install with the managed VIPs; it restores no lease: a Renew does,
// with the deadline the lost leases had (the caller's record of its
// grants) or after the next verification. If the agent is dead or frozen while
// the table is gone, only the address lifetime on the interface (the
// backstop) bounds how long the node keeps answering.
var ErrLeaseDamaged = errors.New("the VIP lease table in nftables is damaged")

// ErrLeaseNotManaged says that Renew named a VIP that the last Install did
// not list: its answers are not filtered, so a lease would mean nothing.
var ErrLeaseNotManaged = errors.New("VIP is not managed by the lease table")

// ErrLeaseOver says that Renew was given a deadline that has passed, or is
// closer than MinLease: there is no lease left to give.
var ErrLeaseOver = errors.New("the lease's deadline has passed")

// VIPLease makes this node's answers for its VIPs depend on a lease the
// kernel expires. Every method is one kernel transaction: it happens whole
// or not at all. Implementations are safe for concurrent use.
type VIPLease interface {
	// Install makes vips the managed VIPs: the node's answers for each of
	// them are dropped unless it holds a lease. It creates what is missing
	// and repairs what is damaged; leases of VIPs that stay managed are
	// kept, those of VIPs no longer managed are ended, and a newly managed
	// VIP starts without a lease. Install with the same vips after
	// ErrLeaseDamaged restores the table (not the leases).
	Install(vips []netip.Addr) error
	// Renew gives every one of vips a lease until until, in one
	// transaction: none or all are renewed. The kernel ends it at until
	// however late the transaction is committed (to the millisecond), and
	// at the latest the time left at the call, and a small margin, after
	// the commit. Each VIP
	// must be managed (ErrLeaseNotManaged otherwise), and at least
	// MinLease must be left until until. Call it only right after a
	// verification of leadership, with until counted from when that
	// verification was sent. The deadline is one for all the VIPs: the
	// last renewal's (so renew every VIP still held at once, as the DC
	// does).
	Renew(vips []netip.Addr, until time.Time) error
	// Release ends the leases of vips at once: the node stops answering
	// for them before Release returns. Releasing a VIP without a lease is
	// not an error.
	Release(vips []netip.Addr) error
	// Leases returns the time left on each live lease of a managed VIP.
	Leases() (map[netip.Addr]time.Duration, error)
	// Check reports whether the table is in the kernel as Install left
	// it: an error wrapping ErrLeaseDamaged says what is missing or
	// changed. nil before the first Install means nothing is expected.
	Check() error
	// Remove deletes the lease table: the node's answers for the VIPs are
	// no longer filtered. Take the VIPs off the interface first.
	Remove() error
}

// LeaseUnsupportedError refuses an address the mechanism cannot guard.
type LeaseUnsupportedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *LeaseUnsupportedError) Error() string {
	return fmt.Sprintf("VIP lease: %s cannot be guarded: %s", e.Addr, e.Reason)
}

// leaseVIPs checks and normalises a list of VIPs: valid, unzoned, unicast
// IPv4 or IPv6 (an IPv4-mapped IPv6 address counts as IPv4), sorted,
// without duplicates.
func leaseVIPs(vips []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(vips))
	for _, v := range vips {
		if !v.IsValid() {
			return nil, &LeaseUnsupportedError{Addr: v, Reason: "not an IP address"}
		}
		if v.Zone() != "" {
			return nil, &LeaseUnsupportedError{Addr: v, Reason: "a VIP has no zone; drop the %zone"}
		}
		v = v.Unmap()
		if v.IsUnspecified() || v.IsMulticast() || v.IsLoopback() || v.IsLinkLocalUnicast() {
			return nil, &LeaseUnsupportedError{Addr: v, Reason: "a VIP must be a unicast address that is not loopback or link-local"}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// leaseDuration checks a lease's length and returns it in whole
// milliseconds, rounded down.
func leaseDuration(d time.Duration) (time.Duration, error) {
	if d < MinLease {
		return 0, fmt.Errorf("VIP lease of %v is shorter than the kernel's %v: give a lease of at least 1ms", d, MinLease)
	}
	return d.Truncate(time.Millisecond), nil
}

// leaseManaged checks that every one of vips is in managed (sorted).
func leaseManaged(managed, vips []netip.Addr) error {
	for _, v := range vips {
		if _, ok := slices.BinarySearchFunc(managed, v, netip.Addr.Compare); !ok {
			return fmt.Errorf("renew %s: %w: call Install with it first", v, ErrLeaseNotManaged)
		}
	}
	return nil
}

// renewArgs checks a renewal's VIPs and end, as every VIPLease does, and
// returns the lease left at now.
func renewArgs(vips []netip.Addr, until, now time.Time) ([]netip.Addr, time.Duration, error) {
	d, err := leaseDuration(until.Sub(now))
	if err != nil {
		return nil, 0, fmt.Errorf("lease until %s: %w: %w (was the agent stalled since its verification? verify again)", until.Format(time.StampMilli), ErrLeaseOver, err)
	}
	vips, err = leaseVIPs(vips)
	if err != nil {
		return nil, 0, err
	}
	return vips, d, nil
}
