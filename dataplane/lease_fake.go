package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// FakeLease is a recording VIPLease that keeps the kernel table's state in
// memory and fails where NFTLease does: Renew of a VIP not installed,
// a lease shorter than MinLease, any write while the table is damaged
// (Damage, standing for `nft flush ruleset`), and whatever FailNext asks.
// A lease lives while the clock is before its end and before the
// deadline, one for all VIPs, that the last renewal set (as NFTLease's
// deadline rule; the fake commits at once, so the two ends agree but for
// the deadline's being shared).
type FakeLease struct {
	mu        sync.Mutex
	now       func() time.Time
	installed bool // the table is in the (fake) kernel
	done      bool // Install succeeded, and Remove did not follow
	v6        bool // with an ip6 table
	managed   []netip.Addr
	ends      map[netip.Addr]time.Time
	until     time.Time // the deadline
	calls     []string
	failNext  error
}

// NewFakeLease returns a FakeLease reading time from now (time.Now if
// nil).
func NewFakeLease(now func() time.Time) *FakeLease {
	if now == nil {
		now = time.Now
	}
	return &FakeLease{now: now, ends: map[netip.Addr]time.Time{}}
}

func (f *FakeLease) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// take returns the error FailNext set, once.
func (f *FakeLease) take() error {
	err := f.failNext
	f.failNext = nil
	return err
}

// FailNext makes the next write (Install, Renew, Release, Remove) fail
// with err and change nothing, as a refused netlink batch does.
func (f *FakeLease) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = err
}

// Damage stands for an operator's `nft flush ruleset`: the table and every
// lease are gone, and the node answers for every VIP.
func (f *FakeLease) Damage() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("damage")
	f.installed = false
	clear(f.ends)
}

// Calls returns the calls so far, one line each ("install 10.0.0.1",
// "renew 10.0.0.1 for 500ms", "release …", "remove", "damage"), and
// forgets them.
func (f *FakeLease) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// Answers reports whether the node would answer for vip now: always when
// the VIP is not managed or the table is not in place (nothing filters),
// otherwise only while its lease lives.
func (f *FakeLease) Answers(vip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	vip = vip.Unmap()
	if _, ok := slices.BinarySearchFunc(f.managed, vip, netip.Addr.Compare); !ok || !f.installed {
		return true
	}
	end, ok := f.ends[vip]
	now := f.now()
	return ok && now.Before(end) && now.Before(f.until)
}

func leaseList(vips []netip.Addr) string {
	s := make([]string, len(vips))
	for i, v := range vips {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

func (f *FakeLease) damaged(what string) error {
	return fmt.Errorf("VIP lease: %s: %w (table %s is missing): call Install to restore the table, then renew after the next verification", what, ErrLeaseDamaged, LeaseTable)
}

// Install implements VIPLease.
func (f *FakeLease) Install(vips []netip.Addr) error {
	vips, err := leaseVIPs(vips)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("install %s", leaseList(vips))
	if err := f.take(); err != nil {
		return fmt.Errorf("VIP lease: install: %w", err)
	}
	for v := range f.ends {
		if _, ok := slices.BinarySearchFunc(vips, v, netip.Addr.Compare); !ok {
			delete(f.ends, v)
		}
	}
	f.managed, f.installed, f.done = vips, true, true
	f.v6 = slices.ContainsFunc(vips, netip.Addr.Is6)
	return nil
}

// Renew implements VIPLease.
func (f *FakeLease) Renew(vips []netip.Addr, until time.Time) error {
	vips, d, err := renewArgs(vips, until, f.now())
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("renew %s for %v", leaseList(vips), d)
	if err := leaseManaged(f.managed, vips); err != nil {
		return fmt.Errorf("VIP lease: %w", err)
	}
	if err := f.take(); err != nil {
		return fmt.Errorf("VIP lease: renew: %w", err)
	}
	if !f.installed {
		return f.damaged("renew")
	}
	end := f.now().Add(d) // the timeout, counted from the commit: now
	for _, v := range vips {
		f.ends[v] = end
	}
	f.until = until
	return nil
}

// Release implements VIPLease.
func (f *FakeLease) Release(vips []netip.Addr) error {
	vips, err := leaseVIPs(vips)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("release %s", leaseList(vips))
	if err := f.take(); err != nil {
		return fmt.Errorf("VIP lease: release: %w", err)
	}
	if !f.installed && (slices.ContainsFunc(vips, netip.Addr.Is4) || f.v6 && slices.ContainsFunc(vips, netip.Addr.Is6)) {
		return f.damaged("release")
	}
	for _, v := range vips {
		delete(f.ends, v)
	}
	return nil
}

// Leases implements VIPLease.
func (f *FakeLease) Leases() (map[netip.Addr]time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, f.damaged("read the lease set")
	}
	out := map[netip.Addr]time.Duration{}
	now := f.now()
	for v, end := range f.ends {
		if left := min(end.Sub(now), f.until.Sub(now)); left > 0 {
			out[v] = left
		}
	}
	return out, nil
}

// Check implements VIPLease.
func (f *FakeLease) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done && !f.installed {
		return fmt.Errorf("%w: table arp %s is missing (was the ruleset flushed?): call Install to restore it (leases are not restored: renew after the next verification)", ErrLeaseDamaged, LeaseTable)
	}
	return nil
}

// Remove implements VIPLease.
func (f *FakeLease) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove")
	if err := f.take(); err != nil {
		return fmt.Errorf("VIP lease: remove: %w", err)
	}
	f.installed, f.done, f.v6, f.managed = false, false, false, nil
	clear(f.ends)
	return nil
}
