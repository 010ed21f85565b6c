package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel tests run in two throwaway network namespaces joined by a
// veth pair: A holds the VIPs on its veth and the lease table; B probes
// who-has VIP (and, for IPv6, neighbour solicitations) over its own
// sockets and timestamps the answers in the kernel. Nothing leaves the
// two namespaces.

var (
	leaseVIP4  = netip.MustParseAddr("10.200.0.100")
	leaseVIP4b = netip.MustParseAddr("10.200.0.101")
	leaseVIP6  = netip.MustParseAddr("fd00:10:200::100")
	leaseB4    = netip.MustParseAddr("10.200.0.2")
	leaseB6    = netip.MustParseAddr("fd00:10:200::2")
)

type leaseLab struct {
	a, b  netns.NsHandle
	lease *NFTLease
	vb    *net.Interface // B's end, as seen in B
}

// leaseInNS runs fn on a thread in namespace ns.
func leaseInNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays in ns: leave it locked so that the runtime
		// ends it with this goroutine instead of reusing it.
		return fmt.Errorf("back to the test's namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func newLeaseLab(t *testing.T) *leaseLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the VIP lease tests create network namespaces and nftables tables: run as root")
	}
	var a, b netns.NsHandle
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("network namespaces unavailable: %v", err)
	}
	a, errA := netns.New()
	b, errB := netns.New()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the test's namespace: %v", err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	orig.Close()
	if errA != nil || errB != nil {
		t.Skipf("cannot create network namespaces: %v %v", errA, errB)
	}
	t.Cleanup(func() { a.Close(); b.Close() })

	ha, err := netlink.NewHandleAt(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lva"}, PeerName: "lvb", PeerNamespace: netlink.NsFd(b)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Skipf("cannot create a veth pair: %v", err)
	}
	setup := func(h *netlink.Handle, name string, addrs ...string) {
		link, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range addrs {
			a, err := netlink.ParseAddr(s)
			if err != nil {
				t.Fatal(err)
			}
			a.Flags = unix.IFA_F_NODAD
			if err := h.AddrAdd(link, a); err != nil {
				t.Fatalf("add %s to %s: %v", s, name, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	setup(ha, "lva", "10.200.0.1/24", leaseVIP4.String()+"/32", leaseVIP4b.String()+"/32",
		"fd00:10:200::1/64", leaseVIP6.String()+"/128")
	setup(hb, "lvb", leaseB4.String()+"/24", leaseB6.String()+"/64")

	// Wait for both ends to have a carrier and IPv6 to be configured on
	// them (a link-local address): until then B has no route to a
	// solicited-node multicast address.
	ready := func(h *netlink.Handle, name string) bool {
		link, err := h.LinkByName(name)
		if err != nil || link.Attrs().OperState != netlink.OperUp {
			return false
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_V6)
		return err == nil && slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() })
	}
	testkit.WaitForWithin(t, 5*time.Second, "the veth pair up with IPv6", func() bool { return ready(ha, "lva") && ready(hb, "lvb") })

	l := &leaseLab{a: a, b: b}
	err = leaseInNS(b, func() error {
		var err error
		l.vb, err = net.InterfaceByName("lvb")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	l.lease, err = NewNFTLease(NFTLeaseConfig{NetNS: int(a)})
	if err != nil {
		t.Skipf("nftables unavailable: %v", err)
	}
	t.Cleanup(func() { l.lease.Close() })
	return l
}

// nft returns a second nftables connection in A: the operator's.
func (l *leaseLab) nft(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.a)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leaseProbe sends a question for target from B every interval and keeps
// the kernel's receive time of every answer.
type leaseProbe struct {
	fd      int
	send    func() error
	answer  func([]byte) bool
	mu      sync.Mutex
	sent    []time.Time
	answers []time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startARPProbe probes who-has target over AF_PACKET on B's veth.
func (l *leaseLab) startARPProbe(t *testing.T, target netip.Addr, interval time.Duration) *leaseProbe {
	t.Helper()
	var fd int
	err := leaseInNS(l.b, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(leaseHtons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: leaseHtons(unix.ETH_P_ARP), Ifindex: l.vb.Index})
	})
	if err != nil {
		t.Fatalf("ARP probe socket in B: %v", err)
	}
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	frame := make([]byte, 0, 42)
	frame = append(frame, bcast...)
	frame = append(frame, l.vb.HardwareAddr...)
	frame = append(frame, 0x08, 0x06)                   // ARP
	frame = append(frame, 0, 1, 0x08, 0x00, 6, 4, 0, 1) // ethernet, IPv4, request
	frame = append(frame, l.vb.HardwareAddr...)
	frame = append(frame, leaseB4.AsSlice()...)
	frame = append(frame, 0, 0, 0, 0, 0, 0)
	frame = append(frame, target.AsSlice()...)
	to := &unix.SockaddrLinklayer{Protocol: leaseHtons(unix.ETH_P_ARP), Ifindex: l.vb.Index, Halen: 6}
	copy(to.Addr[:], bcast)
	want := target.As4()
	p := &leaseProbe{
		fd:   fd,
		send: func() error { return unix.Sendto(fd, frame, 0, to) },
		answer: func(b []byte) bool {
			return len(b) >= 42 && b[12] == 0x08 && b[13] == 0x06 && b[20] == 0 && b[21] == 2 && [4]byte(b[28:32]) == want
		},
	}
	p.start(t, interval)
	return p
}

// startNDProbe sends neighbour solicitations for target from B over a raw
// ICMPv6 socket (the kernel fills in the checksum) and watches for
// advertisements of target.
func (l *leaseLab) startNDProbe(t *testing.T, target netip.Addr, interval time.Duration) *leaseProbe {
	t.Helper()
	var fd int
	err := leaseInNS(l.b, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: leaseB6.As16()}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, l.vb.Index)
	})
	if err != nil {
		t.Fatalf("ND probe socket in B: %v", err)
	}
	t16 := target.As16()
	msg := []byte{135, 0, 0, 0, 0, 0, 0, 0} // neighbour solicitation
	msg = append(msg, t16[:]...)
	msg = append(msg, 1, 1) // source link-layer address option
	msg = append(msg, l.vb.HardwareAddr...)
	// The solicited-node multicast address of target.
	snm := [16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]}
	to := &unix.SockaddrInet6{Addr: snm, ZoneId: uint32(l.vb.Index)}
	p := &leaseProbe{
		fd:   fd,
		send: func() error { return unix.Sendto(fd, msg, 0, to) },
		answer: func(b []byte) bool {
			return len(b) >= 24 && b[0] == 136 && [16]byte(b[8:24]) == t16
		},
	}
	p.start(t, interval)
	return p
}

func (p *leaseProbe) start(t *testing.T, interval time.Duration) {
	t.Helper()
	if err := unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20000}); err != nil {
		t.Fatal(err)
	}
	p.stop = make(chan struct{})
	p.wg.Add(2)
	go func() { // sender
		defer p.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			now := time.Now().Round(0)
			if err := p.send(); err == nil {
				p.mu.Lock()
				p.sent = append(p.sent, now)
				p.mu.Unlock()
			}
		}
	}()
	go func() { // receiver
		defer p.wg.Done()
		buf := make([]byte, 1500)
		oob := make([]byte, 128)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			n, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, 0)
			if err != nil || !p.answer(buf[:n]) {
				continue
			}
			at := time.Now().Round(0)
			if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, cm := range cms {
					if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SCM_TIMESTAMPNS && len(cm.Data) >= 16 {
						sec := int64(binary.NativeEndian.Uint64(cm.Data[0:8]))
						nsec := int64(binary.NativeEndian.Uint64(cm.Data[8:16]))
						at = time.Unix(sec, nsec)
					}
				}
			}
			p.mu.Lock()
			p.answers = append(p.answers, at)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.close)
}

func (p *leaseProbe) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.wg.Wait()
	unix.Close(p.fd)
}

// between counts the answers and the probes sent in [from, to).
func (p *leaseProbe) between(from, to time.Time) (answers, sent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := func(x time.Time) bool { return !x.Before(from) && x.Before(to) }
	for _, x := range p.answers {
		if in(x) {
			answers++
		}
	}
	for _, x := range p.sent {
		if in(x) {
			sent++
		}
	}
	return answers, sent
}

// unanswered returns the send times of the probes sent in [from, to) that
// got no answer in the span within after them, and how many were sent.
func (p *leaseProbe) unanswered(from, to time.Time, within time.Duration) (missed []time.Duration, sent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sent {
		if s.Before(from) || !s.Before(to) {
			continue
		}
		sent++
		if !slices.ContainsFunc(p.answers, func(a time.Time) bool { return !a.Before(s) && a.Sub(s) < within }) {
			missed = append(missed, s.Sub(from))
		}
	}
	return missed, sent
}

// last returns the last answer before to.
func (p *leaseProbe) last(to time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var l time.Time
	for _, x := range p.answers {
		if x.Before(to) && x.After(l) {
			l = x
		}
	}
	return l
}

// wallNow is the wall clock, comparable with the kernel's timestamps.
func wallNow() time.Time { return time.Now().Round(0) }

// expect waits out [from, to) and checks that the probe got answers (or
// none) in it, having sent at least a few probes.
func (p *leaseProbe) expect(t *testing.T, what string, from, to time.Time, answered bool) {
	t.Helper()
	// What is judged is the kernel's silence over a span of time: no
	// event marks an answer that did not come, so the span is waited out
	// and the prober's record read afterwards.
	time.Sleep(time.Until(to) + 30*time.Millisecond)
	a, s := p.between(from, to)
	if s < 3 {
		t.Fatalf("%s: only %d probes sent in %v: the machine is too busy to judge", what, s, to.Sub(from))
	}
	if answered && a == 0 {
		t.Errorf("%s: no answer to %d probes in %v, want answers", what, s, to.Sub(from))
	}
	if !answered && a > 0 {
		t.Errorf("%s: %d answers to %d probes in %v, want none", what, a, s, to.Sub(from))
	}
}

func leaseHtons(v uint16) uint16 { return v<<8 | v>>8 }

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
