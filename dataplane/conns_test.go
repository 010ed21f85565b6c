package dataplane

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const connsSample = `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED     899
IP  AC5F4564 0000 AC5F4564 0C38 AC5F451E 0C38 NONE            19
TCP fd95:69::20 9C40 fd95:69::100 0C38 fd95:69::30 0C38 FIN_WAIT        119
`

func TestParseConns(t *testing.T) {
	got, err := ParseConns([]byte(connsSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Conn{
		{Proto: "TCP", Client: netip.MustParseAddrPort("172.95.69.100:20000"), VIP: netip.MustParseAddrPort("172.95.69.100:3128"), Dest: netip.MustParseAddrPort("172.95.69.30:3128"), State: "ESTABLISHED", Expires: 899 * time.Second},
		{Proto: "IP", Client: netip.MustParseAddrPort("172.95.69.100:0"), VIP: netip.MustParseAddrPort("172.95.69.100:3128"), Dest: netip.MustParseAddrPort("172.95.69.30:3128"), State: "NONE", Expires: 19 * time.Second},
		{Proto: "TCP", Client: netip.MustParseAddrPort("[fd95:69::20]:40000"), VIP: netip.MustParseAddrPort("[fd95:69::100]:3128"), Dest: netip.MustParseAddrPort("[fd95:69::30]:3128"), State: "FIN_WAIT", Expires: 119 * time.Second},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{
		"TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED\n",
		"TCP AC5F456 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED 1\n",
		"TCP AC5F4564 4E2 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED 1\n",
		"TCP fe80::1%eth0 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED 1\n",
		"TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED soon\n",
	} {
		if _, err := ParseConns([]byte(bad)); err == nil || !strings.Contains(err.Error(), "ip_vs_conn line 1") {
			t.Errorf("%q: %v, want an error naming the line", bad, err)
		}
	}
}

// FuzzParseConns: the connection table's parser never panics, and what it
// accepts has valid addresses.
func FuzzParseConns(f *testing.F) {
	f.Add([]byte(connsSample))
	f.Add([]byte("Pro FromIP\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		conns, err := ParseConns(b)
		if err != nil {
			return
		}
		for _, c := range conns {
			if !c.Client.IsValid() || !c.VIP.IsValid() || !c.Dest.IsValid() {
				t.Errorf("accepted %+v", c)
			}
		}
	})
}
