package lab

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// Captured from ipvsadm 1.31 on the lab's 6.1 kernel.
const ipvsList = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.95.69.100:80 rr persistent 20
  -> 172.95.69.40:80              Route   3      2          7         
  -> 172.95.69.100:80             Local   1      0          0         
UDP  172.95.69.100:53 sh ops
  -> 172.95.69.50:53              Masq    1      0          0         
TCP  [2001:db8::1]:80 mh (mh-fallback,mh-port)
TCP  172.95.69.101:3128 wlc persistent 300 mask 255.255.255.0
FWM  7 wlc
`

const ipvsStats = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  172.95.69.100:80                   50      250        0    13000        0
  -> 172.95.69.40:80                    30      150        0     7800        0
  -> 172.95.69.100:80                   20      100        0     5200        0
UDP  172.95.69.100:53                    1        1        1       60       80
  -> 172.95.69.50:53                     1        1        1       60       80
TCP  [2001:db8::1]:80                    0        0        0        0        0
FWM  7                                   0        0        0        0        0
`

func TestParseIPVS(t *testing.T) {
	svcs, err := parseIPVSList(ipvsList)
	if err != nil {
		t.Fatal(err)
	}
	if err := mergeIPVSStats(svcs, ipvsStats); err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []Service{
		{
			Proto: "TCP", Addr: ap("172.95.69.100:80"), Scheduler: "rr", Persistent: 20 * time.Second,
			Stats: Stats{Conns: 50, InPkts: 250, InBytes: 13000},
			Dests: []Dest{
				{Addr: ap("172.95.69.40:80"), Forward: "Route", Weight: 3, ActiveConns: 2, InactiveConns: 7,
					Stats: Stats{Conns: 30, InPkts: 150, InBytes: 7800}},
				{Addr: ap("172.95.69.100:80"), Forward: "Local", Weight: 1,
					Stats: Stats{Conns: 20, InPkts: 100, InBytes: 5200}},
			},
		},
		{
			Proto: "UDP", Addr: ap("172.95.69.100:53"), Scheduler: "sh", OnePacket: true,
			Stats: Stats{1, 1, 1, 60, 80},
			Dests: []Dest{{Addr: ap("172.95.69.50:53"), Forward: "Masq", Weight: 1, Stats: Stats{1, 1, 1, 60, 80}}},
		},
		{Proto: "TCP", Addr: ap("[2001:db8::1]:80"), Scheduler: "mh", Flags: []string{"mh-fallback", "mh-port"}},
		{Proto: "TCP", Addr: ap("172.95.69.101:3128"), Scheduler: "wlc", Persistent: 300 * time.Second, Netmask: "255.255.255.0"},
		{Proto: "FWM", FWMark: 7, Scheduler: "wlc"},
	}
	if !reflect.DeepEqual(svcs, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", svcs, want)
	}

	s, ok := FindService(svcs, "TCP 172.95.69.100:80")
	if !ok {
		t.Fatal("FindService: TCP 172.95.69.100:80 not found")
	}
	if d, ok := s.Dest("172.95.69.40:80"); !ok || d.Weight != 3 {
		t.Errorf("Dest(172.95.69.40:80) = %+v, %v", d, ok)
	}
	if _, ok := FindService(svcs, "FWM 7"); !ok {
		t.Error("FindService: FWM 7 not found")
	}
	if _, ok := FindService(svcs, "TCP [2001:db8::1]:80"); !ok {
		t.Error("FindService: IPv6 service not found")
	}
}

func TestParseIPVSEmpty(t *testing.T) {
	svcs, err := parseIPVSList("IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	if err != nil || len(svcs) != 0 {
		t.Fatalf("got %v, %v; want no services", svcs, err)
	}
}

func TestParseIPVSErrors(t *testing.T) {
	for _, in := range []string{
		"  -> 172.95.69.40:80 Route 1 0 0\n", // a real server with no service
		"TCP  172.95.69.100 rr\n",            // no port
		"ICMP 172.95.69.100:80 rr\n",
		"TCP  172.95.69.100:80\n",                 // no scheduler
		"TCP  172.95.69.100:80 rr persistent x\n", // bad timeout
		"TCP  172.95.69.100:80 rr\n  -> 1.2.3.4:80 Route one 0 0\n",
	} {
		if svcs, err := parseIPVSList(in); err == nil {
			t.Errorf("%q: parsed as %+v, want an error", in, svcs)
		}
	}
	svcs, _ := parseIPVSList("TCP  172.95.69.100:80 rr\n")
	if err := mergeIPVSStats(svcs, "TCP  172.95.69.100:80 1K 2 3 4 5\n"); err == nil {
		t.Error("stats without --exact: want an error")
	}
}

// The layout of the 6.1 kernel's ip_vs_conn_seq_show, with a persistence
// template (protocol IP, client port 0) and an IPv6 connection.
const ipvsConns = `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP AC5F450A 4E20 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT        119
IP  AC5F450A 0000 AC5F4564 0C38 AC5F4528 0C38 NONE            299
TCP 2001:0db8:0000:0000:0000:0000:0000:0064 A000 2001:0db8:0000:0000:0000:0000:0000:0001 0050 2001:0db8:0000:0000:0000:0000:0000:0028 0050 ESTABLISHED     899
`

func TestParseIPVSConns(t *testing.T) {
	got, err := parseIPVSConns(ipvsConns)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []Conn{
		{"TCP", ap("172.95.69.10:20000"), ap("172.95.69.100:3128"), ap("172.95.69.30:3128"), "FIN_WAIT", 119 * time.Second},
		{"IP", ap("172.95.69.10:0"), ap("172.95.69.100:3128"), ap("172.95.69.40:3128"), "NONE", 299 * time.Second},
		{"TCP", ap("[2001:db8::64]:40960"), ap("[2001:db8::1]:80"), ap("[2001:db8::28]:80"), "ESTABLISHED", 899 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT\n",
		"TCP AC5F45 4E20 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT 1\n",
		"TCP AC5F4564 4E2000 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT 1\n",
		"TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT soon\n",
	} {
		if _, err := parseIPVSConns(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
