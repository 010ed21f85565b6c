package director

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

var (
	ownMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x30}
	otherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x40}
)

func TestARPSender(t *testing.T) {
	garp := gratuitousFrame(otherMAC, vip)
	reply := gratuitousFrame(otherMAC, m40)
	reply[21] = 2
	probe := gratuitousFrame(otherMAC, vip)
	copy(probe[28:32], []byte{0, 0, 0, 0})
	badOp := gratuitousFrame(otherMAC, vip)
	badOp[21] = 3
	ipv6 := gratuitousFrame(otherMAC, vip)
	ipv6[16], ipv6[17] = 0x86, 0xdd
	notARP := gratuitousFrame(otherMAC, vip)
	notARP[12], notARP[13] = 0x08, 0x00
	for _, tc := range []struct {
		name  string
		frame []byte
		want  netip.Addr
	}{
		{"another host's gratuitous ARP", garp, vip},
		{"another host's reply", reply, m40},
		{"padded to the Ethernet minimum", append(bytes.Clone(garp), make([]byte, 18)...), vip},
		{"our own", gratuitousFrame(ownMAC, vip), netip.Addr{}},
		{"a probe without sender address", probe, netip.Addr{}},
		{"an unknown operation", badOp, netip.Addr{}},
		{"another protocol type", ipv6, netip.Addr{}},
		{"not ARP", notARP, netip.Addr{}},
		{"truncated", garp[:41], netip.Addr{}},
		{"empty", nil, netip.Addr{}},
	} {
		got, ok := arpSender(tc.frame, ownMAC)
		if ok != tc.want.IsValid() || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
}

// FuzzARPSender: frames come from the network. Whatever arrives, the
// parser does not panic, and what it accepts is an ARP frame from another
// host whose sender address it returns.
func FuzzARPSender(f *testing.F) {
	f.Add(gratuitousFrame(otherMAC, vip))
	f.Add(gratuitousFrame(ownMAC, vip))
	f.Add([]byte{})
	f.Add(make([]byte, 42))
	f.Fuzz(func(t *testing.T, frame []byte) {
		ip, ok := arpSender(frame, ownMAC)
		if !ok {
			return
		}
		if len(frame) < 42 || bytes.Equal(frame[22:28], ownMAC) || ip != netip.AddrFrom4([4]byte(frame[28:32])) || ip.IsUnspecified() {
			t.Fatalf("accepted %x as from %v", frame, ip)
		}
	})
}
