//go:build lab

package lab_test

import (
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
	judge := func(name string) lab.ARPReport {
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
