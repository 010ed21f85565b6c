package dataplane

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

// The unsolicited NA's fields, as RFC 4861 7.1.2 and 7.2.6 want them; that
// a Linux neighbour accepts it is shown in the lab (TestRaftlbIPv6).
func TestUnsolicitedNA(t *testing.T) {
	v6 := netip.MustParseAddr("fd95:69::100")
	f := unsolicitedNA(ownMAC, v6)
	if len(f) != 86 {
		t.Fatalf("frame is %d bytes, want 86", len(f))
	}
	if !bytes.Equal(f[0:6], []byte{0x33, 0x33, 0, 0, 0, 1}) || !bytes.Equal(f[6:12], ownMAC) || f[12] != 0x86 || f[13] != 0xdd {
		t.Errorf("Ethernet header % x, want 33:33:00:00:00:01 from ours, type IPv6", f[0:14])
	}
	ip := f[14:54]
	src, _ := netip.AddrFromSlice(ip[8:24])
	dst, _ := netip.AddrFromSlice(ip[24:40])
	if ip[0]>>4 != 6 || ip[4] != 0 || ip[5] != 32 || ip[6] != 58 || ip[7] != 255 || src != v6 || dst.String() != "ff02::1" {
		t.Errorf("IPv6 header % x: want version 6, payload 32, ICMPv6, hop limit 255, %s → ff02::1", ip, v6)
	}
	na := f[54:]
	target, _ := netip.AddrFromSlice(na[8:24])
	if na[0] != 136 || na[1] != 0 || na[4] != 0x20 || na[5]|na[6]|na[7] != 0 || target != v6 {
		t.Errorf("NA % x: want type 136, code 0, only the override flag, target %s", na[:24], v6)
	}
	if na[24] != 2 || na[25] != 1 || !bytes.Equal(na[26:32], ownMAC) {
		t.Errorf("option % x: want the target link-layer address %s", na[24:], ownMAC)
	}
	// A receiver sums the message with its checksum: all ones.
	if got := icmpv6Checksum(v6.As16(), dst.As16(), na); got != 0 {
		t.Errorf("checksum does not verify (residue %#04x)", got)
	}
	// A known vector worked by hand: ::1 → ::1, an 8-byte echo request
	// (type 128) sums to 1 + 1 + 8 + 58 + 0x8000 = 0x8044, complemented.
	one := netip.IPv6Loopback().As16()
	if got := icmpv6Checksum(one, one, []byte{128, 0, 0, 0, 0, 0, 0, 0}); got != 0x7fbb {
		t.Errorf("echo request checksum %#04x, want 0x7fbb", got)
	}
}
