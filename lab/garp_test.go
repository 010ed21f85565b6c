//go:build lab

package lab_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// TestGratuitousARPUpdatesClient checks, apart from any agent, what raftlb
// relies on: a real neighbour whose ARP cache maps the VIP to m30 maps it
// to m40 as soon as m40 takes the VIP and announces it with a gratuitous
// ARP of the form raftlb sends (the lab's own frame: the judge shares no
// code with raftlb). The agent's own announcements are judged in the
// scenarios (TestRaftlbSpecReachesTheKernel's refreshes, the fail-overs).
func TestGratuitousARPUpdatesClient(t *testing.T) {
	l := lab.New(t)
	vip := netip.MustParseAddr(lab.VIP)
	client, err := lab.OpenNS(lab.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	l.Run(lab.M30, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	// Any connection attempt resolves the VIP (a refused one too).
	p, err := l.StartProbe("probe-arp", lab.VIP+":9", "--interval", "20ms", "--duration", "100ms")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	m30, _ := l.MAC(lab.M30, "eth0")
	m40, _ := l.MAC(lab.M40, "eth0")
	if got, _ := client.NeighMAC("eth0", vip); got != m30 {
		t.Fatalf("client ARP entry %q, want m30's %s", got, m30)
	}
	l.Run(lab.M30, "ip", "addr", "del", lab.VIP+"/32", "dev", "eth0")
	l.Run(lab.M40, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	t0 := time.Now()
	l.Run(lab.M40, l.Bin("raftlb-lab"), "garp", "--iface", "eth0", "--ip", lab.VIP)
	sent := time.Since(t0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := client.NeighMAC("eth0", vip)
		if err != nil {
			t.Fatal(err)
		}
		if got == m40 {
			t.Logf("client switched to m40 %s after the gratuitous ARP (sending took %s)", time.Since(t0)-sent, sent)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client still maps the VIP to %q 5 s after m40's gratuitous ARP, want %s", got, m40)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
