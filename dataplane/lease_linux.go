package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// leaseNFARPOut is NF_ARP_OUT (linux/netfilter_arp.h), the arp family's
// output hook; golang.org/x/sys/unix does not name it.
const leaseNFARPOut nftables.ChainHook = 1

// leaseStandIn is the timeout of the element Renew and Release add
// before deleting it, so that the delete finds an element whether or not
// the VIP had a lease; it never outlives the transaction.
const leaseStandIn = time.Millisecond

// leaseTimeoutMargin is how much longer than the time left to its
// deadline a renewal's element timeout runs. The kernel stamps a timeout's
// end in jiffies at the commit, and it ended up to 12 ms before the
// lease's end as the agent counts it on the development kernel (HZ=250,
// the timeout truncated to whole milliseconds, counted from a commit that
// follows the agent's clock reading); the deadline rule ends a lease to
// the millisecond. With the margin the deadline is what ends it, and the
// timeout only backs it up (a wall clock stepped back):
// quorum.AnswerExpirySlack allows for the margin.
const leaseTimeoutMargin = 20 * time.Millisecond

// NFTLease is the kernel VIPLease: a table of raftlb's own in nftables
// (see lease.go), written through netlink in one batch per call.
type NFTLease struct {
	mu      sync.Mutex
	conn    *nftables.Conn
	opts    []nftables.ConnOption // to open conn again after a failed batch
	name    string
	managed []netip.Addr // sorted; what the last successful Install listed
	v6      bool         // the last Install created the ip6 table
	done    bool         // Install succeeded at least once (and Remove since did not)
	until   time.Time    // the deadline rule's, as last committed (zero: none given)
}

// NFTLeaseConfig says where an NFTLease works.
type NFTLeaseConfig struct {
	// NetNS is an open file descriptor of the network namespace to work in
	// (netns.NsHandle converts); 0 means the caller's. The caller keeps it
	// open while the NFTLease is used.
	NetNS int
	// Table names the lease table; "" means LeaseTable.
	Table string
}

// NewNFTLease opens a netlink connection to nftables in cfg.NetNS. It
// changes nothing in the kernel; an error says nftables cannot be used.
func NewNFTLease(cfg NFTLeaseConfig) (*NFTLease, error) {
	if cfg.Table == "" {
		cfg.Table = LeaseTable
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("VIP lease: open nftables netlink: %w (is the nf_tables module available?)", err)
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyARP); err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("VIP lease: list nftables tables: %w (load nf_tables, and run as root or with CAP_NET_ADMIN)", err)
	}
	return &NFTLease{conn: conn, opts: opts, name: cfg.Table}, nil
}

// Close closes the netlink connection; the table stays in the kernel.
func (l *NFTLease) Close() error {
	return l.conn.CloseLasting()
}

// leaseFamily is what differs between the arp and the ip6 table.
type leaseFamily struct {
	family  nftables.TableFamily
	keyType nftables.SetDatatype
	hook    nftables.ChainHook // the output hook: the arp family numbers its hooks apart
	what    string             // for messages: "arp" or "ip6"
	answer  func() []expr.Any  // matches the node's answers for a VIP in @vips
}

func leaseFamilies() [2]leaseFamily {
	return [2]leaseFamily{
		{family: nftables.TableFamilyARP, keyType: nftables.TypeIPAddr, hook: leaseNFARPOut, what: "arp", answer: leaseARPAnswer},
		{family: nftables.TableFamilyIPv6, keyType: nftables.TypeIP6Addr, hook: unix.NF_INET_LOCAL_OUT, what: "ip6", answer: leaseNDAnswer},
	}
}

// leaseNFTMetaTimeNS is NFT_META_TIME_NS (linux/netfilter/nf_tables.h,
// since Linux 5.4): the packet's time in nanoseconds since the epoch, in
// host byte order. Neither golang.org/x/sys/unix nor google/nftables
// names it.
const leaseNFTMetaTimeNS expr.MetaKey = 30

// rule is the lease rule: an answer for a VIP without a lease is dropped.
func (f leaseFamily) rule() []expr.Any {
	return append(f.answer(),
		&expr.Lookup{SourceRegister: 1, SetName: "lease", Invert: true},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// deadline is the deadline rule: an answer for a VIP is dropped once the
// kernel's clock is past until. The clock is loaded in host byte order and
// turned big-endian, as nft does, for the comparison (a byte-wise one).
// The zero time allows nothing.
func (f leaseFamily) deadline(until time.Time) []expr.Any {
	var ns uint64
	if !until.IsZero() && until.UnixNano() > 0 {
		ns = uint64(until.UnixNano())
	}
	return append(f.answer(),
		&expr.Meta{Key: leaseNFTMetaTimeNS, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: binary.BigEndian.AppendUint64(nil, ns)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

func leaseFamilyOf(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// leaseARPAnswer: arp ptype ip arp hlen 6 arp plen 4 arp operation reply
// arp saddr ip @vips, leaving the VIP in register 1. The ARP header is the
// network header of the arp family: htype(2) ptype(2) hlen(1) plen(1)
// oper(2) sha(6) spa(4) tha(6) tpa(4); the spa is at 14 only for hlen 6.
func leaseARPAnswer() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 2, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00, 6, 4, 0, 2}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "vips"},
	}
}

// leaseNDAnswer: meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert
// @th,64,128 @vips, leaving the VIP in register 1. A neighbour
// advertisement is type(1) code(1) checksum(2) flags(4) target(16).
func leaseNDAnswer() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{136}}, // ND_NEIGHBOR_ADVERT
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
		&expr.Lookup{SourceRegister: 1, SetName: "vips"},
	}
}

// The objects of one family's table, as values to send.
func (l *NFTLease) table(f leaseFamily) *nftables.Table {
	return &nftables.Table{Name: l.name, Family: f.family}
}

// chain is one of the table's two chains: "output" (the lease rule) or
// "deadline" (the deadline rule), both filter chains on the output hook.
func (l *NFTLease) chain(f leaseFamily, name string) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: name, Table: l.table(f), Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookRef(f.hook), Priority: nftables.ChainPriorityFilter, Policy: &accept,
	}
}

// addRule queues rule in chain c of table t, its lookups bound to the sets
// by name or, for sets of the same batch, by their batch IDs.
func (l *NFTLease) addRule(t *nftables.Table, c *nftables.Chain, rule []expr.Any, sets ...*nftables.Set) {
	for _, e := range rule {
		if lk, ok := e.(*expr.Lookup); ok {
			for _, s := range sets {
				if lk.SetName == s.Name {
					lk.SetID = s.ID
				}
			}
		}
	}
	l.conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: rule})
}

// setDeadline queues the deadline chain of family f holding the deadline
// rule for until, alone.
func (l *NFTLease) setDeadline(f leaseFamily, until time.Time, sets ...*nftables.Set) {
	t := l.table(f)
	c := l.conn.AddChain(l.chain(f, "deadline"))
	l.conn.FlushChain(c)
	l.addRule(t, c, f.deadline(until), sets...)
}

func (l *NFTLease) vipSet(f leaseFamily) *nftables.Set {
	return &nftables.Set{Table: l.table(f), Name: "vips", KeyType: f.keyType}
}

func (l *NFTLease) leaseSet(f leaseFamily) *nftables.Set {
	return &nftables.Set{Table: l.table(f), Name: "lease", KeyType: f.keyType, HasTimeout: true}
}

func leaseElems(vips []netip.Addr, timeout time.Duration) []nftables.SetElement {
	out := make([]nftables.SetElement, len(vips))
	for i, v := range vips {
		out[i] = nftables.SetElement{Key: v.AsSlice(), Timeout: timeout}
	}
	return out
}

// splitFamilies returns vips per family (index as leaseFamilies).
func splitFamilies(vips []netip.Addr) [2][]netip.Addr {
	var out [2][]netip.Addr
	for _, v := range vips {
		i := leaseFamilyOf(v)
		out[i] = append(out[i], v)
	}
	return out
}

// flush sends the queued batch; a missing object means the table is
// damaged.
func (l *NFTLease) flush(what string) error {
	err := l.conn.Flush()
	if err != nil {
		// A failed batch may leave answers unread on the socket, where the
		// next call would take them for its own: start on a fresh one.
		if conn, err2 := nftables.New(l.opts...); err2 == nil {
			_ = l.conn.CloseLasting()
			l.conn = conn
		}
	}
	return leaseKernelErr(what, err)
}

// leaseKernelErr wraps a kernel error; ENOENT (a table, chain or set is
// missing) means the table is damaged.
func leaseKernelErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("VIP lease: %s: %w (an object is missing: %w): call Install to restore the table, then renew after the next verification", what, ErrLeaseDamaged, err)
	}
	return fmt.Errorf("VIP lease: %s: %w", what, err)
}

// Install implements VIPLease. It first tries to bring the existing table
// to the wanted shape in place, keeping the leases; when something in the
// way cannot be changed in place (a chain or set of another kind under our
// name), it replaces the table whole, which ends every lease (the safe
// direction: answers stop until the next Renew).
func (l *NFTLease) Install(vips []netip.Addr) error {
	vips, err := leaseVIPs(vips)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.managed
	if !l.done {
		old = nil
	}
	if err := l.install(vips, old, false); err != nil {
		if err2 := l.install(vips, nil, true); err2 != nil {
			return fmt.Errorf("VIP lease: install %v: in place: %w; replacing the table: %w", vips, err, err2)
		}
	}
	l.managed, l.done = vips, true
	l.v6 = len(splitFamilies(vips)[1]) > 0
	return nil
}

// install queues and sends one batch (the queueing errors of the library
// concern anonymous sets and malformed keys, which we never build): per family, the table with its sets,
// chain and rule, the vips set holding exactly vips, and the leases of old
// VIPs no longer managed ended. The arp table is always there; the ip6
// table only while an IPv6 VIP is managed (so a host without IPv6 never
// needs the ip6 family). replace deletes each table first.
func (l *NFTLease) install(vips, old []netip.Addr, replace bool) error {
	want := splitFamilies(vips)
	gone := splitFamilies(slices.DeleteFunc(slices.Clone(old), func(a netip.Addr) bool {
		_, ok := slices.BinarySearchFunc(vips, a, netip.Addr.Compare)
		return ok
	}))
	fams := leaseFamilies()
	for i, f := range fams {
		if i == 1 && len(want[i]) == 0 {
			exists, err := l.tableExists(f)
			if err != nil {
				return err
			}
			if exists {
				l.conn.DelTable(l.table(f))
			}
			continue
		}
		t := l.conn.AddTable(l.table(f))
		if replace {
			l.conn.DelTable(t)
			t = l.conn.AddTable(l.table(f))
		}
		vs, ls := l.vipSet(f), l.leaseSet(f)
		if err := l.conn.AddSet(vs, nil); err != nil {
			return fmt.Errorf("queue set vips: %w", err)
		}
		if err := l.conn.AddSet(ls, nil); err != nil {
			return fmt.Errorf("queue set lease: %w", err)
		}
		l.conn.FlushSet(vs)
		if len(want[i]) > 0 {
			if err := l.conn.SetAddElements(vs, leaseElems(want[i], 0)); err != nil {
				return fmt.Errorf("queue vips: %w", err)
			}
		}
		if len(gone[i]) > 0 && !replace {
			if err := l.endLeases(ls, gone[i]); err != nil {
				return err
			}
		}
		c := l.conn.AddChain(l.chain(f, "output"))
		l.conn.FlushChain(c)
		l.addRule(t, c, f.rule(), vs, ls)
		l.setDeadline(f, l.until, vs)
	}
	return l.flush("install")
}

// endLeases queues the end of vips' leases: a stand-in element with a
// 1 ms timeout is added (nothing happens if one is there) so that the
// delete that follows finds one either way.
func (l *NFTLease) endLeases(ls *nftables.Set, vips []netip.Addr) error {
	if err := l.conn.SetAddElements(ls, leaseElems(vips, leaseStandIn)); err != nil {
		return fmt.Errorf("queue the lease stand-in element: %w", err)
	}
	if err := l.conn.SetDeleteElements(ls, leaseElems(vips, 0)); err != nil {
		return fmt.Errorf("queue lease delete: %w", err)
	}
	return nil
}

func (l *NFTLease) tableExists(f leaseFamily) (bool, error) {
	ts, err := l.conn.ListTablesOfFamily(f.family)
	if err != nil {
		return false, fmt.Errorf("VIP lease: list %s tables: %w", f.what, err)
	}
	return slices.ContainsFunc(ts, func(t *nftables.Table) bool { return t.Name == l.name }), nil
}

// Renew implements VIPLease: per VIP, add a 1 ms stand-in element,
// delete it, add one with the timeout left until until (and
// leaseTimeoutMargin); and per family
// renewed, the deadline rule for until — one batch, so the kernel switches
// from the old lease to the new one at once, and a VIP without a lease
// gets one.
func (l *NFTLease) Renew(vips []netip.Addr, until time.Time) error {
	vips, d, err := renewArgs(vips, until, time.Now())
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := leaseManaged(l.managed, vips); err != nil {
		return fmt.Errorf("VIP lease: %w", err)
	}
	fams := leaseFamilies()
	for i, group := range splitFamilies(vips) {
		if len(group) == 0 {
			continue
		}
		ls := l.leaseSet(fams[i])
		if err := l.endLeases(ls, group); err != nil {
			return err
		}
		if err := l.conn.SetAddElements(ls, leaseElems(group, d+leaseTimeoutMargin)); err != nil {
			return fmt.Errorf("VIP lease: queue lease: %w", err)
		}
	}
	for i, f := range fams {
		if i == 0 || l.v6 {
			l.setDeadline(f, until)
		}
	}
	if err := l.flush(fmt.Sprintf("renew %d VIPs for %v", len(vips), d)); err != nil {
		return err
	}
	l.until = until
	return nil
}

// Release implements VIPLease.
func (l *NFTLease) Release(vips []netip.Addr) error {
	vips, err := leaseVIPs(vips)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fams := leaseFamilies()
	for i, group := range splitFamilies(vips) {
		if len(group) == 0 {
			continue
		}
		if i == 1 && !l.v6 {
			// No IPv6 VIP installed by us; an ip6 table left by an earlier
			// run of the agent may still hold leases, one not there none.
			exists, err := l.tableExists(fams[i])
			if err != nil {
				return err
			}
			if !exists {
				continue
			}
		}
		if err := l.endLeases(l.leaseSet(fams[i]), group); err != nil {
			return err
		}
	}
	return l.flush(fmt.Sprintf("release %v", vips))
}

// Leases implements VIPLease.
func (l *NFTLease) Leases() (map[netip.Addr]time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[netip.Addr]time.Duration{}
	left := time.Until(l.until) // the deadline rule's
	for i, f := range leaseFamilies() {
		if i == 1 && !l.v6 {
			continue
		}
		els, err := l.conn.GetSetElements(l.leaseSet(f))
		if err != nil {
			if exists, err2 := l.tableExists(f); err2 == nil && !exists {
				return nil, fmt.Errorf("VIP lease: read the %s lease set: %w: table %s %s is missing: call Install", f.what, ErrLeaseDamaged, f.what, l.name)
			}
			return nil, fmt.Errorf("VIP lease: read the %s lease set: %w: run Check", f.what, err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			if _, managed := slices.BinarySearchFunc(l.managed, a, netip.Addr.Compare); managed && left > 0 {
				out[a] = min(e.Expires, left)
			}
		}
	}
	return out, nil
}

// Remove implements VIPLease: it deletes the tables that are there.
func (l *NFTLease) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range leaseFamilies() {
		exists, err := l.tableExists(f)
		if err != nil {
			return err
		}
		if exists {
			l.conn.DelTable(l.table(f))
		}
	}
	if err := l.flush("remove"); err != nil {
		return err
	}
	l.managed, l.done, l.v6 = nil, false, false
	return nil
}
