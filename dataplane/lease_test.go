package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestLeaseVIPsRefusesWhatCannotBeAVIP(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "::", "224.0.0.1", "ff02::1", "127.0.0.1", "::1", "fe80::1", "169.254.1.1", "fd00::1%eth0"} {
		a := netip.MustParseAddr(s)
		var ue *LeaseUnsupportedError
		if _, err := leaseVIPs([]netip.Addr{a}); !errors.As(err, &ue) {
			t.Errorf("leaseVIPs(%s) = %v, want a LeaseUnsupportedError", s, err)
		}
	}
	if _, err := leaseVIPs([]netip.Addr{{}}); err == nil {
		t.Error("leaseVIPs(zero Addr) accepted it")
	}
	got, err := leaseVIPs([]netip.Addr{
		netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("::ffff:10.0.0.1"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.2"),
	})
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::1")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("leaseVIPs = %v, %v; want %v (unmapped, sorted, once each)", got, err, want)
	}
}

func TestLeaseDurationIsWholeMillisecondsNeverLonger(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second, 999 * time.Microsecond} {
		if _, err := leaseDuration(d); err == nil {
			t.Errorf("leaseDuration(%v) accepted it", d)
		}
	}
	if got, err := leaseDuration(1999 * time.Microsecond); err != nil || got != time.Millisecond {
		t.Errorf("leaseDuration(1.999ms) = %v, %v; want 1ms", got, err)
	}
}

// leaseContract is what every VIPLease does, the fake as the kernel one:
// the errors, and what Leases shows. damage stands for `nft flush
// ruleset`.
func leaseContract(t *testing.T, l VIPLease, damage func()) {
	t.Helper()
	v4 := netip.MustParseAddr("10.200.0.100")
	v4b := netip.MustParseAddr("10.200.0.101")
	v6 := netip.MustParseAddr("fd00:10:200::100")
	both := []netip.Addr{v4, v6}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	is := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s = %v, want %v", what, err, want)
		}
	}
	leases := func(what string, want ...netip.Addr) {
		t.Helper()
		got, err := l.Leases()
		must(what, err)
		if len(got) != len(want) {
			t.Fatalf("%s: Leases = %v, want leases of %v", what, got, want)
		}
		for _, v := range want {
			if got[v] < 9*time.Second || got[v] > 10*time.Second {
				t.Fatalf("%s: Leases = %v, want %v with about 10s left", what, got, v)
			}
		}
	}

	is("Renew before Install", l.Renew([]netip.Addr{v4}, time.Now().Add(time.Second)), ErrLeaseNotManaged)
	must("Check before Install", l.Check())
	is("Release before Install", l.Release([]netip.Addr{v4}), ErrLeaseDamaged)

	must("Install", l.Install(both))
	must("Check", l.Check())
	leases("after Install")
	if err := l.Renew([]netip.Addr{v4}, time.Now().Add(500*time.Microsecond)); err == nil || errors.Is(err, ErrLeaseDamaged) {
		t.Fatalf("Renew for 0.5ms = %v, want a refusal of the length", err)
	}
	is("Renew of a VIP not installed", l.Renew([]netip.Addr{v4b}, time.Now().Add(time.Second)), ErrLeaseNotManaged)
	var ue *LeaseUnsupportedError
	if err := l.Renew([]netip.Addr{netip.MustParseAddr("224.0.0.1")}, time.Now().Add(time.Second)); !errors.As(err, &ue) {
		t.Fatalf("Renew of a multicast address = %v, want a LeaseUnsupportedError", err)
	}
	must("Renew", l.Renew(both, time.Now().Add(10*time.Second)))
	leases("after Renew", both...)
	must("Release v6", l.Release([]netip.Addr{v6}))
	leases("after Release of v6", v4)
	must("Release v6 again", l.Release([]netip.Addr{v6}))
	must("Renew of nothing", l.Renew(nil, time.Now().Add(time.Second)))

	damage()
	is("Check after flush ruleset", l.Check(), ErrLeaseDamaged)
	is("Renew after flush ruleset", l.Renew(both, time.Now().Add(time.Second)), ErrLeaseDamaged)
	_, err := l.Leases()
	is("Leases after flush ruleset", err, ErrLeaseDamaged)
	is("Release after flush ruleset", l.Release(both), ErrLeaseDamaged)

	must("Install again", l.Install(both))
	must("Check after Install again", l.Check())
	leases("after Install again (no lease is restored)")
	must("Renew", l.Renew(both, time.Now().Add(10*time.Second)))
	must("Install with v4b for v6", l.Install([]netip.Addr{v4, v4b}))
	leases("after Install with another list", v4)
	must("Remove", l.Remove())
	must("Check after Remove", l.Check())
	must("Remove again", l.Remove())
}

func TestLeaseFakeContract(t *testing.T) {
	f := NewFakeLease(nil)
	leaseContract(t, f, f.Damage)
}

func TestLeaseFakeAnswersOnlyWhileLeased(t *testing.T) {
	now := time.Unix(1000, 0)
	f := NewFakeLease(func() time.Time { return now })
	vip := netip.MustParseAddr("10.0.0.1")
	if !f.Answers(vip) {
		t.Fatal("a VIP not managed is answered for: nothing filters it")
	}
	if err := f.Install([]netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	if f.Answers(vip) {
		t.Fatal("answers for a managed VIP without a lease")
	}
	if err := f.Renew([]netip.Addr{vip}, now.Add(1500*time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(999 * time.Microsecond)
	if !f.Answers(vip) {
		t.Fatal("no answer within the lease")
	}
	now = now.Add(time.Microsecond) // 1.5ms was truncated to 1ms
	if f.Answers(vip) {
		t.Fatal("answers at the lease's end")
	}
	if err := f.Renew([]netip.Addr{vip}, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := f.Release([]netip.Addr{vip}); err != nil || f.Answers(vip) {
		t.Fatalf("Release = %v, answers %v; want no answers at once", err, f.Answers(vip))
	}
	f.Damage()
	if !f.Answers(vip) {
		t.Fatal("no answer after flush ruleset: nothing filters then")
	}
	boom := errors.New("netlink: no buffer space")
	if err := f.Install([]netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	f.FailNext(boom)
	if err := f.Renew([]netip.Addr{vip}, now.Add(time.Second)); !errors.Is(err, boom) || f.Answers(vip) {
		t.Fatalf("failed Renew = %v, answers %v; want the error and nothing changed", err, f.Answers(vip))
	}
	want := []string{"install 10.0.0.1", "renew 10.0.0.1 for 1ms", "renew 10.0.0.1 for 1s", "release 10.0.0.1",
		"damage", "install 10.0.0.1", "renew 10.0.0.1 for 1s"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Fatalf("Calls = %q\nwant    %q", got, want)
	}
	if got := f.Calls(); len(got) != 0 {
		t.Fatalf("Calls did not forget: %q", got)
	}
}
