package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestWhoHasParsesBack(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0xac, 0x5f, 0x45, 0x0a}
	sender, target := netip.MustParseAddr("172.95.69.200"), netip.MustParseAddr("172.95.69.100")
	f, ok := parseARP(whoHas(mac, sender, target))
	if !ok || f.op != 1 || !bytes.Equal(f.senderMAC, mac) || f.senderIP != sender || f.targetIP != target {
		t.Fatalf("parseARP(whoHas) = %+v, %v", f, ok)
	}
	// A reply: the same layout with op 2 and the roles swapped.
	reply := whoHas(net.HardwareAddr{0x02, 0, 0xac, 0x5f, 0x45, 0x1e}, target, sender)
	reply[21] = 2
	if f, ok := parseARP(reply); !ok || f.op != 2 || f.senderIP != target || f.targetIP != sender {
		t.Fatalf("parseARP(reply) = %+v, %v", f, ok)
	}
	for _, bad := range [][]byte{nil, reply[:41], append([]byte{}, make([]byte, 42)...)} {
		if _, ok := parseARP(bad); ok {
			t.Errorf("parseARP(%x) accepted a frame that is not ARP", bad)
		}
	}
}

// TestSummarizeARP: the judge's arithmetic on a story of one holder, then
// two, then none, then the new one.
func TestSummarizeARP(t *testing.T) {
	const iv = 20 * time.Millisecond
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var rounds []*arpRound
	add := func(n int, macs ...string) {
		for range n {
			set := map[string]bool{}
			for _, m := range macs {
				set[m] = true
			}
			rounds = append(rounds, &arpRound{at: t0.Add(time.Duration(len(rounds)) * iv), macs: set})
		}
	}
	add(5, "old")
	add(3, "old", "new")
	add(2)
	add(4, "new")
	r := summarizeARP(netip.MustParseAddr("172.95.69.100"), iv, t0, t0.Add(time.Second), rounds, nil)
	if r.Rounds != 14 || r.Answers["old"] != 8 || r.Answers["new"] != 7 {
		t.Errorf("rounds %d answers %v, want 14 rounds, old 8, new 7", r.Rounds, r.Answers)
	}
	if r.TwoMACRounds != 3 || len(r.TwoMACWindows) != 1 || r.TwoMACWindows[0].DurationMS != 60 || !slices.Equal(r.TwoMACWindows[0].MACs, []string{"new", "old"}) {
		t.Errorf("two-MAC rounds %d windows %+v, want one 60 ms window of old and new", r.TwoMACRounds, r.TwoMACWindows)
	}
	if !r.TwoMACWindows[0].Start.Equal(t0.Add(5 * iv)) {
		t.Errorf("two-MAC window starts at %v, want the sixth round", r.TwoMACWindows[0].Start)
	}
	if r.SilentRounds != 2 || len(r.SilentWindows) != 1 || r.SilentWindows[0].DurationMS != 40 {
		t.Errorf("silent rounds %d windows %+v, want one 40 ms window", r.SilentRounds, r.SilentWindows)
	}
	if r.LongestTwoMACMS() != 60 || r.LongestSilentMS() != 40 {
		t.Errorf("longest two-MAC %v silent %v, want 60 and 40", r.LongestTwoMACMS(), r.LongestSilentMS())
	}
	var story [][]string
	for _, c := range r.Changes {
		story = append(story, c.MACs)
	}
	want := [][]string{{"old"}, {"new", "old"}, {}, {"new"}}
	if !slices.EqualFunc(story, want, func(a, b []string) bool { return slices.Equal(a, b) }) {
		t.Errorf("changes %v, want %v", story, want)
	}
	// One holder throughout: nothing to report.
	one := summarizeARP(netip.MustParseAddr("172.95.69.100"), iv, t0, t0, rounds[:5], nil)
	if one.TwoMACRounds != 0 || one.SilentRounds != 0 || len(one.TwoMACWindows) != 0 || len(one.Changes) != 1 {
		t.Errorf("one holder: %+v", one)
	}
}

func TestARPWatchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"arpwatch"},
		{"arpwatch", "--vip", "fd95:69::100"},
		{"arpwatch", "--vip", "172.95.69.100", "--tags", "1"},
		{"arpwatch", "--vip", "172.95.69.100", "--interval", "0s"},
		{"arpwatch", "--vip", "172.95.69.100", "--tag-base", "nope"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}
