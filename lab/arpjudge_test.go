//go:build lab

package lab_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// TestARPJudgeCanFail proves the client-side ARP judge, apart from raftlb:
// with the VIP put by hand on one node's interface it sees one MAC in every
// round; on two nodes' (neither ARP-silenced) it reports rounds in which
// both answered; on none, silence. A judge that cannot fail would pass
// every nemesis scenario.
func TestARPJudgeCanFail(t *testing.T) {
	l := lab.New(t)
	mac := func(n string) string {
		m, err := l.MAC(n, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	judge := func(name string) lab.ARPReport { return listen(t, l, name) }

	l.Run(lab.M30, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	one := judge("arp-one-holder")
	if one.TwoMACRounds != 0 || one.SilentRounds != 0 || one.Answers[mac(lab.M30)] != one.Rounds {
		t.Errorf("one holder: %d two-MAC rounds, %d silent, answers %v of %d rounds; want m30 (%s) in every round and nothing else",
			one.TwoMACRounds, one.SilentRounds, one.Answers, one.Rounds, mac(lab.M30))
	}

	l.Run(lab.M40, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	two := judge("arp-two-holders")
	want := []string{mac(lab.M30), mac(lab.M40)}
	slices.Sort(want)
	if two.TwoMACRounds == 0 || len(two.TwoMACWindows) == 0 || !slices.Equal(two.TwoMACWindows[0].MACs, want) {
		t.Errorf("two holders: %d two-MAC rounds, windows %+v; want rounds in which %v both answered", two.TwoMACRounds, two.TwoMACWindows, want)
	}
	if two.LongestTwoMACMS() < 100 {
		t.Errorf("two holders for the whole watch, but the longest two-MAC window is %.0f ms", two.LongestTwoMACMS())
	}

	l.Run(lab.M30, "ip", "addr", "del", lab.VIP+"/32", "dev", "eth0")
	l.Run(lab.M40, "ip", "addr", "del", lab.VIP+"/32", "dev", "eth0")
	none := judge("arp-no-holder")
	if none.SilentRounds != none.Rounds || len(none.Answers) != 0 {
		t.Errorf("no holder: %d of %d rounds silent, answers %v; want silence", none.SilentRounds, none.Rounds, none.Answers)
	}

	// A gratuitous ARP is seen as an announcement, with its sender.
	w, err := l.StartARPWatch("arp-announcement", lab.VIP)
	if err != nil {
		t.Fatal(err)
	}
	l.Run(lab.M50, l.Bin("raftlb-lab"), "garp", "--iface", "eth0", "--ip", lab.VIP)
	// The send has returned: the frame is on the bridge before the
	// judge is told to stop, and it listens a while after that.
	r, err := w.Stop(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Announcements) != 1 || r.Announcements[0].MAC != mac(lab.M50) {
		t.Errorf("announcements %+v, want one from m50 (%s)", r.Announcements, mac(lab.M50))
	}
}

// TestKernelAnswerJudgeCanFail proves the kernels' ARP judge (AnswersARP)
// apart from raftlb and against the wire: the VIP put by hand on m30's and
// m40's interfaces, m40 with a lease table made by hand that manages the
// VIP and grants it no lease — the wire hears only m30, and the kernel
// judge says m30 answers and m40 does not; with a lease element of 3 s
// added, both answer and both judges say so.
func TestKernelAnswerJudgeCanFail(t *testing.T) {
	l := lab.New(t)
	vipAddr := netip.MustParseAddr(lab.VIP)
	for _, n := range []string{lab.M30, lab.M40} {
		l.Run(n, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	}
	table := fmt.Sprintf(`add table arp raftlb_lease
add set arp raftlb_lease vips { type ipv4_addr; }
add set arp raftlb_lease lease { type ipv4_addr; flags timeout; }
add chain arp raftlb_lease output { type filter hook output priority 0; }
add rule arp raftlb_lease output arp operation reply arp saddr ip @vips arp saddr ip != @lease drop
add element arp raftlb_lease vips { %s }
`, lab.VIP)
	f := filepath.Join(l.LogDir(), "lease.nft")
	if err := os.WriteFile(f, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Run(lab.M40, "nft", "-f", f)
	nss := map[string]*lab.NS{}
	for _, n := range []string{lab.M30, lab.M40} {
		ns, err := lab.OpenNS(n)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		nss[n] = ns
	}
	answers := func(n string) bool {
		t.Helper()
		ok, err := nss[n].AnswersARP("eth0", vipAddr)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	wire := func(name string) lab.ARPReport { return listen(t, l, name) }
	m30, err := l.MAC(lab.M30, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if r := wire("arp-unleased"); r.TwoMACRounds != 0 || r.Answers[m30] == 0 || len(r.Answers) != 1 {
		t.Errorf("m40 managed without a lease: the wire heard %v (%d two-MAC rounds); want m30 alone", r.Answers, r.TwoMACRounds)
	}
	if !answers(lab.M30) || answers(lab.M40) {
		t.Errorf("m40 managed without a lease: the kernel judge says m30 %v, m40 %v; want m30 alone", answers(lab.M30), answers(lab.M40))
	}
	l.Run(lab.M40, "nft", "add", "element", "arp", "raftlb_lease", "lease", "{ "+lab.VIP+" timeout 3s }")
	if !answers(lab.M40) {
		t.Error("m40 with a live lease: the kernel judge says it does not answer")
	}
	if r := wire("arp-leased"); r.TwoMACRounds == 0 {
		t.Errorf("m40 with a live lease: the wire heard %v with no two-MAC round; want both", r.Answers)
	}
}

// listen runs the client's ARP judge for 600 ms and returns its report.
func listen(t *testing.T, l *lab.Lab, name string) lab.ARPReport {
	t.Helper()
	w, err := l.StartARPWatch(name, lab.VIP, "--duration", "600ms")
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rounds < 10 {
		t.Fatalf("%s: only %d rounds in 600 ms", name, r.Rounds)
	}
	return r
}
