package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/lab"
)

type (
	ARPReport       = lab.ARPReport
	ARPWindow       = lab.ARPWindow
	ARPChange       = lab.ARPChange
	ARPAnnouncement = lab.ARPAnnouncement
)

// runARPWatch is the client-side ARP judge: every interval it asks
// who-has VIP on the LAN and records which MACs answer, and every
// gratuitous ARP for the VIP it sees. Each round asks from its own
// address of a small pool (--tag-base and the next --tags addresses, unused
// on the LAN), so an answer is counted in the round that asked, however
// late it arrives.
func runARPWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("arpwatch", stderr)
	iface := fs.String("iface", "eth0", "interface to ask on")
	vipFlag := fs.String("vip", "", "the IPv4 VIP to ask for (required)")
	interval := fs.Duration("interval", 20*time.Millisecond, "time between two questions")
	tagBase := fs.String("tag-base", "172.95.69.200", "first of the unused LAN addresses the rounds ask from")
	tags := fs.Int("tags", 50, "how many addresses from --tag-base the rounds cycle through")
	duration := fs.Duration("duration", 0, "how long to watch (0: until SIGTERM or SIGINT)")
	out := fs.String("out", "", "write the JSON report to this file instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	vip, err := netip.ParseAddr(*vipFlag)
	if err != nil || !vip.Is4() {
		return fmt.Errorf("%w: --vip %q: want an IPv4 address", cli.ErrUsage, *vipFlag)
	}
	base, err := netip.ParseAddr(*tagBase)
	if err != nil || !base.Is4() {
		return fmt.Errorf("%w: --tag-base %q: want an IPv4 address", cli.ErrUsage, *tagBase)
	}
	if *interval <= 0 || *tags < 2 || *tags > 250 || *duration < 0 {
		return fmt.Errorf("%w: --interval must be positive, --tags 2…250, --duration not negative", cli.ErrUsage)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	w, err := newARPWatcher(*iface, vip, base, *tags)
	if err != nil {
		return err
	}
	defer w.close()
	fmt.Fprintf(stdout, "watching ARP for %s on %s every %v\n", vip, *iface, *interval)
	r := w.run(ctx, *interval)
	fmt.Fprintf(stderr, "arpwatch %s: %d rounds, %d with two or more MACs, %d silent, answers %v\n",
		r.VIP, r.Rounds, r.TwoMACRounds, r.SilentRounds, r.Answers)
	return writeReport(*out, stdout, r)
}

// arpRound is one question and the MACs that answered it.
type arpRound struct {
	at   time.Time
	macs map[string]bool
}

type arpWatcher struct {
	fd    int
	ifi   *net.Interface
	vip   netip.Addr
	tags  []netip.Addr
	mu    sync.Mutex
	round []*arpRound        // every round asked, in order
	byTag map[netip.Addr]int // tag → index of the latest round that asked from it
	ann   []ARPAnnouncement
}

func newARPWatcher(iface string, vip, base netip.Addr, n int) (*arpWatcher, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%s has no Ethernet address", iface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind to %s: %w", iface, err)
	}
	tv := unix.NsecToTimeval((5 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &arpWatcher{fd: fd, ifi: ifi, vip: vip, byTag: map[netip.Addr]int{}}
	a := base
	for range n {
		w.tags = append(w.tags, a)
		a = a.Next()
	}
	return w, nil
}

func (w *arpWatcher) close() { unix.Close(w.fd) }

// run asks every interval until ctx ends, keeps listening a little longer
// for late answers, and summarises.
func (w *arpWatcher) run(ctx context.Context, interval time.Duration) ARPReport {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.listen(done)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		tag := w.tags[n%len(w.tags)]
		w.mu.Lock()
		w.round = append(w.round, &arpRound{at: time.Now(), macs: map[string]bool{}})
		w.byTag[tag] = len(w.round) - 1
		w.mu.Unlock()
		addr := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: w.ifi.Index, Halen: 6}
		copy(addr.Addr[:], broadcast)
		_ = unix.Sendto(w.fd, whoHas(w.ifi.HardwareAddr, tag, w.vip), 0, addr)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	// Answers to the last questions may still be on their way.
	time.Sleep(max(4*interval, 100*time.Millisecond))
	close(done)
	wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	// The last rounds could not all be answered before the end; drop the
	// unanswered tail so it does not read as silence.
	rounds := w.round
	for len(rounds) > 0 && len(rounds[len(rounds)-1].macs) == 0 && time.Since(rounds[len(rounds)-1].at) < 2*interval {
		rounds = rounds[:len(rounds)-1]
	}
	return summarizeARP(w.vip, interval, start, time.Now(), rounds, w.ann)
}

func (w *arpWatcher) listen(done <-chan struct{}) {
	buf := make([]byte, 256)
	for {
		select {
		case <-done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f, ok := parseARP(buf[:n])
		if !ok || f.senderIP != w.vip {
			continue
		}
		now := time.Now()
		w.mu.Lock()
		switch {
		case f.targetIP == w.vip: // gratuitous: announcing the VIP to everyone
			w.ann = append(w.ann, ARPAnnouncement{At: now, MAC: f.senderMAC.String()})
		case f.op == 2:
			if i, asked := w.byTag[f.targetIP]; asked {
				w.round[i].macs[f.senderMAC.String()] = true
			}
		}
		w.mu.Unlock()
	}
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// whoHas is a broadcast ARP request for target from mac, asking as sender.
func whoHas(mac net.HardwareAddr, sender, target netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], broadcast)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:16], 1)      // Ethernet
	binary.BigEndian.PutUint16(f[16:18], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:22], 1) // request
	s, t := sender.As4(), target.As4()
	copy(f[22:28], mac)
	copy(f[28:32], s[:])
	copy(f[38:42], t[:]) // target hardware address: zero, unknown
	return f
}

// arpFrame is the part of an ARP frame the judge reads.
type arpFrame struct {
	op                 uint16
	senderMAC          net.HardwareAddr
	senderIP, targetIP netip.Addr
}

// parseARP reads an IPv4-over-Ethernet ARP request or reply; anything else
// is not one.
func parseARP(b []byte) (arpFrame, bool) {
	if len(b) < 42 || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_ARP ||
		binary.BigEndian.Uint16(b[14:16]) != 1 || binary.BigEndian.Uint16(b[16:18]) != 0x0800 || b[18] != 6 || b[19] != 4 {
		return arpFrame{}, false
	}
	op := binary.BigEndian.Uint16(b[20:22])
	if op != 1 && op != 2 {
		return arpFrame{}, false
	}
	return arpFrame{
		op:        op,
		senderMAC: slices.Clone(net.HardwareAddr(b[22:28])),
		senderIP:  netip.AddrFrom4([4]byte(b[28:32])),
		targetIP:  netip.AddrFrom4([4]byte(b[38:42])),
	}, true
}

// summarizeARP turns the rounds into the report: answer counts, the
// windows in which two or more MACs answered or none did, and the changes
// of the answering set.
func summarizeARP(vip netip.Addr, interval time.Duration, start, end time.Time, rounds []*arpRound, ann []ARPAnnouncement) ARPReport {
	r := ARPReport{
		VIP: vip.String(), IntervalMS: ms(interval), Start: start, End: end, Rounds: len(rounds),
		Answers: map[string]int{}, TwoMACWindows: []ARPWindow{}, SilentWindows: []ARPWindow{},
		Changes: []ARPChange{}, Announcements: slices.Clone(ann),
	}
	if r.Announcements == nil {
		r.Announcements = []ARPAnnouncement{}
	}
	var prev []string
	var cur *ARPWindow
	curKind := 0 // 0 none, 1 two MACs, 2 silent
	flush := func() {
		if cur == nil {
			return
		}
		if curKind == 1 {
			r.TwoMACWindows = append(r.TwoMACWindows, *cur)
		} else {
			r.SilentWindows = append(r.SilentWindows, *cur)
		}
		cur, curKind = nil, 0
	}
	for i, rd := range rounds {
		macs := make([]string, 0, len(rd.macs))
		for m := range rd.macs {
			macs = append(macs, m)
			r.Answers[m]++
		}
		slices.Sort(macs)
		if i == 0 || !slices.Equal(macs, prev) {
			r.Changes = append(r.Changes, ARPChange{At: rd.at, MACs: macs})
		}
		prev = macs
		kind := 0
		switch {
		case len(macs) >= 2:
			kind = 1
			r.TwoMACRounds++
		case len(macs) == 0:
			kind = 2
			r.SilentRounds++
		}
		if kind != curKind {
			flush()
		}
		if kind == 0 {
			continue
		}
		if cur == nil {
			cur, curKind = &ARPWindow{Start: rd.at}, kind
		}
		cur.Rounds++
		cur.DurationMS = ms(rd.at.Sub(cur.Start) + interval)
		for _, m := range macs {
			if !slices.Contains(cur.MACs, m) {
				cur.MACs = append(cur.MACs, m)
			}
		}
		slices.Sort(cur.MACs)
	}
	flush()
	return r
}
