package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

// leaseLifecycle runs the same story for one VIP, whichever protocol
// answers for it.
func leaseLifecycle(t *testing.T, l *leaseLab, p *leaseProbe, vip netip.Addr) {
	ms := time.Millisecond
	t0 := wallNow()
	p.expect(t, "before Install (nothing filters)", t0, t0.Add(100*ms), true)

	if err := l.lease.Install([]netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatalf("Check right after Install: %v", err)
	}
	t1 := wallNow()
	p.expect(t, "installed, no lease", t1, t1.Add(150*ms), false)

	// Leases here are long enough that a busy machine (the race detector,
	// other packages' tests) cannot stall the prober or the renewals past
	// them: what is judged is the kernel's answer, not this process's
	// timing. The lease's end is the kernel's, so the lapse is judged
	// closely.
	before := wallNow()
	if err := l.lease.Renew([]netip.Addr{vip}, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	after := wallNow()
	p.expect(t, "lease of 1s", after.Add(5*ms), before.Add(900*ms), true)
	p.expect(t, "lease lapsed", before.Add(time.Second+20*ms), before.Add(1200*ms), false)

	// Renewing every 50ms for 1s keeps them flowing: every probe is
	// answered.
	var from time.Time
	for stop := time.Now().Add(time.Second); time.Now().Before(stop); {
		if err := l.lease.Renew([]netip.Addr{vip}, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if from.IsZero() {
			from = wallNow()
		}
		time.Sleep(50 * ms) // the renewal period is the behaviour under test
	}
	to := wallNow()
	// A probe counts as answered when an answer comes within one renewal
	// period. Tighter, a probe delayed by the machine (the lab's emulated
	// CPU stalls for milliseconds) would read as a lapse; and no lapse
	// can hide in it: a lease of 1s renewed every 50ms lapses only after
	// a stall of most of a second, which silences many periods.
	time.Sleep(80 * ms) // the last probes' answers on their way: the record is read after
	if missed, sent := p.unanswered(from, to, 50*ms); sent < 10 || len(missed) > 0 {
		t.Errorf("renewed every 50ms for 1s: of %d probes, those sent at %v got no answer; want every probe answered", sent, missed)
	}

	// Release ends it at once.
	if err := l.lease.Renew([]netip.Addr{vip}, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	r0 := wallNow()
	p.expect(t, "lease of 10s", r0, r0.Add(60*ms), true)
	if err := l.lease.Release([]netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	r1 := wallNow()
	p.expect(t, "released", r1.Add(2*ms), r1.Add(200*ms), false)
	if got, err := l.lease.Leases(); err != nil || len(got) != 0 {
		t.Errorf("Leases after Release = %v, %v; want none", got, err)
	}
}

func TestLeaseKernelARP(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startARPProbe(t, leaseVIP4, 5*time.Millisecond)
	leaseLifecycle(t, l, p, leaseVIP4)
}

func TestLeaseKernelIPv6NeighbourAdvertisements(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startNDProbe(t, leaseVIP6, 5*time.Millisecond)
	leaseLifecycle(t, l, p, leaseVIP6)
}

// After `nft flush ruleset` the node answers for the VIP unfiltered; Check
// says so, writes fail with ErrLeaseDamaged, and Install puts the table
// back without the lease, so answers stop until the next Renew.
func TestLeaseKernelFlushRuleset(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startARPProbe(t, leaseVIP4, 5*time.Millisecond)
	ms := time.Millisecond
	vips := []netip.Addr{leaseVIP4, leaseVIP6}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	op := l.nft(t)
	op.FlushRuleset()
	if err := op.Flush(); err != nil {
		t.Fatal(err)
	}
	err := l.lease.Check()
	if !errors.Is(err, ErrLeaseDamaged) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Check after flush ruleset = %v, want ErrLeaseDamaged saying what is missing", err)
	}
	t.Logf("Check after flush ruleset: %v", err)
	t0 := wallNow()
	p.expect(t, "after flush ruleset (nothing filters)", t0, t0.Add(60*ms), true)
	if err := l.lease.Renew(vips, time.Now().Add(time.Second)); !errors.Is(err, ErrLeaseDamaged) {
		t.Fatalf("Renew after flush ruleset = %v, want ErrLeaseDamaged", err)
	}
	if _, err := l.lease.Leases(); !errors.Is(err, ErrLeaseDamaged) {
		t.Fatalf("Leases after flush ruleset = %v, want ErrLeaseDamaged", err)
	}
	if err := l.lease.Release(vips); !errors.Is(err, ErrLeaseDamaged) {
		t.Fatalf("Release after flush ruleset = %v, want ErrLeaseDamaged", err)
	}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatalf("Check after re-Install: %v", err)
	}
	t1 := wallNow()
	p.expect(t, "re-installed, no lease", t1, t1.Add(100*ms), false)
	if err := l.lease.Renew(vips, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	t2 := wallNow()
	p.expect(t, "renewed after re-Install", t2, t2.Add(60*ms), true)
}

// TestLeaseKernelDeadline: a renewal the kernel commits late — an agent
// stalled between its verification and the commit, whose timeout then
// counts from the commit — still ends at the deadline its verification
// set, to the millisecond. What such a commit leaves in the kernel is made
// by hand: a lease element whose timeout runs long past the deadline.
func TestLeaseKernelDeadline(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startARPProbe(t, leaseVIP4, 5*time.Millisecond)
	ms := time.Millisecond
	vips := []netip.Addr{leaseVIP4}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	until := wallNow().Add(400 * ms)
	if err := l.lease.Renew(vips, until); err != nil {
		t.Fatal(err)
	}
	op := l.nft(t)
	ls := l.lease.leaseSet(leaseFamilies()[0])
	if err := errors.Join(
		op.SetAddElements(ls, leaseElems(vips, leaseStandIn)),
		op.SetDeleteElements(ls, leaseElems(vips, 0)),
		op.SetAddElements(ls, leaseElems(vips, 10*time.Second)),
		op.Flush()); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatalf("Check with the deadline in place: %v", err)
	}
	now := wallNow()
	p.expect(t, "before the deadline", now.Add(5*ms), until.Add(-20*ms), true)
	p.expect(t, "past the deadline, the element's timeout running", until.Add(5*ms), until.Add(300*ms), false)
	if got, err := l.lease.Leases(); err != nil || len(got) != 0 {
		t.Errorf("Leases past the deadline = %v, %v; want none", got, err)
	}
	if err := l.lease.Renew(vips, time.Now().Add(-time.Millisecond)); err == nil {
		t.Error("a renewal whose end has passed was accepted")
	}
}

// Check notices the subtler damage too, and Install repairs it in place,
// keeping the leases.
func TestLeaseKernelCheckAndRepair(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startARPProbe(t, leaseVIP4, 5*time.Millisecond)
	ms := time.Millisecond
	vips := []netip.Addr{leaseVIP4, leaseVIP6}
	fams := leaseFamilies()
	for _, c := range []struct {
		name, want string
		damage     func(op *nftables.Conn) error
	}{
		{"flush the arp chain", "0 rules", func(op *nftables.Conn) error {
			op.FlushChain(l.lease.chain(fams[0], "output"))
			return nil
		}},
		{"flush the ip6 chain", "ip6 raftlb_lease output has 0 rules", func(op *nftables.Conn) error {
			op.FlushChain(l.lease.chain(fams[1], "output"))
			return nil
		}},
		{"delete a VIP from vips", "vips holds []", func(op *nftables.Conn) error {
			return op.SetDeleteElements(l.lease.vipSet(fams[0]), leaseElems([]netip.Addr{leaseVIP4}, 0))
		}},
		{"replace the rule", "not the lease rule", func(op *nftables.Conn) error {
			op.FlushChain(l.lease.chain(fams[0], "output"))
			r := fams[0].rule()
			op.AddRule(&nftables.Rule{Table: l.lease.table(fams[0]), Chain: l.lease.chain(fams[0], "output"), Exprs: r[len(r)-1:]})
			return nil
		}},
		{"flush the deadline chain", "arp raftlb_lease deadline has 0 rules", func(op *nftables.Conn) error {
			op.FlushChain(l.lease.chain(fams[0], "deadline"))
			return nil
		}},
		{"a later deadline", "not the deadline rule", func(op *nftables.Conn) error {
			c := l.lease.chain(fams[0], "deadline")
			op.FlushChain(c)
			op.AddRule(&nftables.Rule{Table: l.lease.table(fams[0]), Chain: c, Exprs: fams[0].deadline(time.Now().Add(time.Hour))})
			return nil
		}},
		{"delete the ip6 table", "table ip6 raftlb_lease is missing", func(op *nftables.Conn) error {
			op.DelTable(l.lease.table(fams[1]))
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := l.lease.Install(vips); err != nil {
				t.Fatal(err)
			}
			if err := l.lease.Renew(vips, time.Now().Add(10*time.Second)); err != nil {
				t.Fatal(err)
			}
			op := l.nft(t)
			if err := c.damage(op); err != nil {
				t.Fatal(err)
			}
			if err := op.Flush(); err != nil {
				t.Fatal(err)
			}
			err := l.lease.Check()
			if !errors.Is(err, ErrLeaseDamaged) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check = %v, want ErrLeaseDamaged saying %q", err, c.want)
			}
			if err := l.lease.Install(vips); err != nil {
				t.Fatal(err)
			}
			if err := l.lease.Check(); err != nil {
				t.Fatalf("Check after Install: %v", err)
			}
			got, err := l.lease.Leases()
			if err != nil || got[leaseVIP4] < 9*time.Second {
				t.Fatalf("Leases after a repair in place = %v, %v; want %s's kept", got, err, leaseVIP4)
			}
			t0 := wallNow()
			p.expect(t, "repaired in place, lease kept", t0, t0.Add(100*ms), true)
		})
	}
}

// Install with another list keeps the leases of the VIPs that stay, ends
// those of the VIPs that go, and starts new ones without.
func TestLeaseKernelInstallKeepsLeases(t *testing.T) {
	l := newLeaseLab(t)
	if err := l.lease.Install([]netip.Addr{leaseVIP4, leaseVIP6}); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Renew([]netip.Addr{leaseVIP4, leaseVIP6}, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Install([]netip.Addr{leaseVIP4, leaseVIP4b}); err != nil {
		t.Fatal(err)
	}
	got, err := l.lease.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[leaseVIP4] < 9*time.Second {
		t.Fatalf("Leases = %v, want only %s's, kept", got, leaseVIP4)
	}
	if exists, err := l.lease.tableExists(leaseFamilies()[1]); err != nil || exists {
		t.Fatalf("ip6 table with no IPv6 VIP: exists=%v err=%v, want it gone", exists, err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Renew([]netip.Addr{leaseVIP6}, time.Now().Add(time.Second)); !errors.Is(err, ErrLeaseNotManaged) {
		t.Fatalf("Renew of a VIP no longer managed = %v, want ErrLeaseNotManaged", err)
	}
	// Renewing one VIP sets the deadline of all (the DC renews every VIP
	// it holds at once): the other's lease now ends with it.
	if err := l.lease.Renew([]netip.Addr{leaseVIP4b}, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _ = l.lease.Leases()
	for _, v := range []netip.Addr{leaseVIP4, leaseVIP4b} {
		if got[v] > 2*time.Second || got[v] < time.Second {
			t.Fatalf("Leases = %v, want both ending at the last renewal's deadline, in 2s", got)
		}
	}
	if err := l.lease.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatalf("Check after Remove = %v, want nil (nothing expected)", err)
	}
	if exists, _ := l.lease.tableExists(leaseFamilies()[0]); exists {
		t.Fatal("arp table still there after Remove")
	}
	if err := l.lease.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

// TestLeaseKernelExpiryPrecision measures, over a few leases, how long
// after a lease's end (counted from before the renewal was sent, as the
// agent counts) the last answer arrived, probing every millisecond. A
// negative figure is an answer that stopped before that end. The deadline
// rule ends it: it compares the kernel's clock in nanoseconds, so the
// figure is within the probe's period (the element's timeout, stamped in
// jiffies, ended up to 12 ms early before the deadline rule existed).
func TestLeaseKernelExpiryPrecision(t *testing.T) {
	for _, c := range []struct {
		name, figure string
		vip          netip.Addr
		probe        func(l *leaseLab) *leaseProbe
	}{
		{"arp", "nft_lease_expiry_precision_ms", leaseVIP4, func(l *leaseLab) *leaseProbe { return l.startARPProbe(t, leaseVIP4, time.Millisecond) }},
		{"nd", "nft_lease_expiry_precision_v6_ms", leaseVIP6, func(l *leaseLab) *leaseProbe { return l.startNDProbe(t, leaseVIP6, time.Millisecond) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLeaseLab(t)
			p := c.probe(l)
			late := leaseLateness(t, l, p, c.vip)
			median, worst := late[len(late)/2], late[len(late)-1]
			t.Logf("lateness of the last answer after the lease's end, sorted: %v", late)
			if worst > 50*time.Millisecond {
				t.Errorf("an answer came %v after the lease's end, want within 50ms", worst)
			}
			fmt.Printf("figure: %s = %.1f ms\n", c.figure, float64(median)/float64(time.Millisecond))
			fmt.Printf("figure: %s = %.1f ms\n", strings.Replace(c.figure, "precision", "late_max", 1), float64(worst)/float64(time.Millisecond))
		})
	}
}

// leaseLateness returns, sorted, the lateness of the last answer after
// the end of each of 7 leases of 100ms.
func leaseLateness(t *testing.T, l *leaseLab, p *leaseProbe, vip netip.Addr) []time.Duration {
	t.Helper()
	if err := l.lease.Install([]netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	const d = 100 * time.Millisecond
	var late []time.Duration
	for range 7 {
		before := wallNow()
		if err := l.lease.Renew([]netip.Addr{vip}, time.Now().Add(d)); err != nil {
			t.Fatal(err)
		}
		end := before.Add(d)
		// The lease's end is waited out: what is measured is the kernel's
		// last answer before it, read from the prober's record.
		time.Sleep(time.Until(end) + 150*time.Millisecond)
		last := p.last(end.Add(150 * time.Millisecond))
		if last.Before(before) {
			t.Fatalf("no answer at all during a lease of %v", d)
		}
		if a, s := p.between(end.Add(-10*time.Millisecond), end); s >= 3 && a == 0 {
			t.Errorf("no answer in the lease's last 10ms (%d probes): it ended early", s)
		}
		late = append(late, last.Sub(end))
	}
	slices.Sort(late)
	return late
}

// TestLeaseKernelRenewCost measures one renewal of N VIPs (one netlink
// batch).
func TestLeaseKernelRenewCost(t *testing.T) {
	l := newLeaseLab(t)
	const n = 32
	vips := make([]netip.Addr, 0, n)
	for i := range n / 2 {
		vips = append(vips, netip.AddrFrom4([4]byte{10, 200, 1, byte(i + 1)}))
		vips = append(vips, netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x02, 0, 1, 15: byte(i + 1)}))
	}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	took := make([]time.Duration, 0, 200)
	for range cap(took) {
		t0 := time.Now()
		if err := l.lease.Renew(vips, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("renewal of %d VIPs: median %v, p90 %v, max %v", n, median, took[len(took)*9/10], took[len(took)-1])
	got, err := l.lease.Leases()
	if err != nil || len(got) != n {
		t.Fatalf("Leases = %d, %v; want %d", len(got), err, n)
	}
	fmt.Printf("figure: nft_lease_renew_us = %.0f us\n", float64(median)/float64(time.Microsecond))
}

// The kernel implementation keeps the same contract as FakeLease.
func TestLeaseKernelContract(t *testing.T) {
	l := newLeaseLab(t)
	leaseContract(t, l.lease, func() {
		op := l.nft(t)
		op.FlushRuleset()
		if err := op.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}

// An object of another kind under our names (a lease set without
// timeouts) cannot be changed in place: Install replaces the table, which
// ends the leases — answers stop until the next Renew.
func TestLeaseKernelInstallReplacesWhatItCannotRepair(t *testing.T) {
	l := newLeaseLab(t)
	p := l.startARPProbe(t, leaseVIP4, 5*time.Millisecond)
	vips := []netip.Addr{leaseVIP4}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Renew(vips, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	f := leaseFamilies()[0]
	op := l.nft(t)
	op.DelTable(l.lease.table(f))
	op.AddTable(l.lease.table(f))
	if err := op.AddSet(&nftables.Set{Table: l.lease.table(f), Name: "lease", KeyType: nftables.TypeIPAddr}, nil); err != nil {
		t.Fatal(err)
	}
	if err := op.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); !errors.Is(err, ErrLeaseDamaged) {
		t.Fatalf("Check = %v, want ErrLeaseDamaged", err)
	}
	if err := l.lease.Install(vips); err != nil {
		t.Fatal(err)
	}
	if err := l.lease.Check(); err != nil {
		t.Fatalf("Check after Install: %v", err)
	}
	t0 := wallNow()
	p.expect(t, "table replaced, no lease", t0, t0.Add(100*time.Millisecond), false)
	if err := l.lease.Renew(vips, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	t1 := wallNow()
	p.expect(t, "renewed", t1, t1.Add(60*time.Millisecond), true)
}
