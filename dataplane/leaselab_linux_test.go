package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
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
