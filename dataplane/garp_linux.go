package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// RawARP is the real ARP sender and watcher.
type RawARP struct{}

// gratuitousFrame builds a broadcast ARP request for ip from mac with
// sender and target protocol address both ip — the form keepalived and
// arping -U send, which updates existing entries in neighbours' caches.
func gratuitousFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // destination: broadcast
	copy(f[6:12], mac)                                       // source
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:16], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(f[16:18], 0x0800) // protocol type: IPv4
	f[18], f[19] = 6, 4                          // address lengths
	binary.BigEndian.PutUint16(f[20:22], 1)      // operation: request
	a := ip.As4()
	copy(f[22:28], mac)  // sender hardware address
	copy(f[28:32], a[:]) // sender protocol address: the VIP
	copy(f[32:38], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[38:42], a[:]) // target protocol address: the VIP
	return f
}

// arpSender returns the sender protocol address of an Ethernet frame
// carrying an IPv4-over-Ethernet ARP request or reply whose sender
// hardware address is not own. Anything else — short, other protocols,
// other address types, probes with no sender address, our own frames —
// is ignored: the frame comes from the network.
func arpSender(frame []byte, own net.HardwareAddr) (netip.Addr, bool) {
	if len(frame) < 42 ||
		binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_ARP ||
		binary.BigEndian.Uint16(frame[14:16]) != 1 || // Ethernet
		binary.BigEndian.Uint16(frame[16:18]) != 0x0800 || // IPv4
		frame[18] != 6 || frame[19] != 4 {
		return netip.Addr{}, false
	}
	if op := binary.BigEndian.Uint16(frame[20:22]); op != 1 && op != 2 {
		return netip.Addr{}, false
	}
	if bytes.Equal(frame[22:28], own) {
		return netip.Addr{}, false
	}
	ip := netip.AddrFrom4([4]byte(frame[28:32]))
	if ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip, true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ethernet(iface string) (*net.Interface, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%s has no Ethernet address", iface)
	}
	return ifi, nil
}

// Gratuitous implements ARP: a gratuitous ARP request for an IPv4 VIP, an
// unsolicited neighbour advertisement for an IPv6 one, sent as a raw
// Ethernet frame so that neither depends on the address's state.
func (RawARP) Gratuitous(iface string, ip netip.Addr) error {
	what, proto, dst, frame := "gratuitous ARP", uint16(unix.ETH_P_ARP), broadcastMAC, gratuitousFrame
	if !ip.Is4() {
		what, proto, dst, frame = "unsolicited neighbour advertisement", unix.ETH_P_IPV6, allNodesMAC, unsolicitedNA
	}
	ifi, err := ethernet(iface)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return fmt.Errorf("%s: raw socket: %w", what, err)
	}
	defer unix.Close(fd)
	addr := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index, Halen: 6}
	copy(addr.Addr[:], dst)
	if err := unix.Sendto(fd, frame(ifi.HardwareAddr, ip), 0, addr); err != nil {
		return fmt.Errorf("%s on %s for %s: %w", what, iface, ip, err)
	}
	return nil
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allNodesMAC is the Ethernet group of ff02::1 (33:33 and its low 32 bits).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes    = netip.MustParseAddr("ff02::1")
)

// unsolicitedNA builds an unsolicited neighbour advertisement (RFC 4861
// 7.2.6) for ip from mac, to all nodes: override flag set, solicited flag
// clear, with the target link-layer address option. A neighbour with an
// entry for ip replaces its MAC (and marks it stale, so it confirms
// reachability on next use); the IPv6 counterpart of gratuitous ARP, as
// keepalived sends it. The source address is the VIP itself.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) []byte {
	const ethLen, ipLen, naLen = 14, 40, 32 // NA: 24 bytes and an 8-byte option
	f := make([]byte, ethLen+ipLen+naLen)
	copy(f[0:6], allNodesMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_IPV6)
	h := f[ethLen:]
	h[0] = 0x60                               // version 6
	binary.BigEndian.PutUint16(h[4:6], naLen) // payload length
	h[6], h[7] = unix.IPPROTO_ICMPV6, 255     // next header; hop limit 255, which receivers require
	src, dst := ip.As16(), allNodes.As16()
	copy(h[8:24], src[:])
	copy(h[24:40], dst[:])
	na := h[ipLen:]
	na[0] = 136            // neighbour advertisement
	na[4] = 0x20           // flags: override
	copy(na[8:24], src[:]) // target: the VIP
	na[24], na[25] = 2, 1  // option: target link-layer address, 8 bytes
	copy(na[26:32], mac)
	binary.BigEndian.PutUint16(na[2:4], icmpv6Checksum(src, dst, na))
	return f
}

// icmpv6Checksum is the Internet checksum of an ICMPv6 message (whose
// checksum field is zero) with the IPv6 pseudo-header (RFC 8200 8.1).
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[0:4], uint32(len(msg)))
	tail[7] = unix.IPPROTO_ICMPV6
	add(tail[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// watchPoll is how often a blocked ARP read wakes up to check its context.
const watchPoll = 200 * time.Millisecond

// Watch implements ARP with an AF_PACKET socket bound to iface. It holds
// one OS thread while it runs; the director runs it only while DC.
func (RawARP) Watch(ctx context.Context, iface string, fn func(sender netip.Addr)) error {
	ifi, err := ethernet(iface)
	if err != nil {
		return fmt.Errorf("watching ARP: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("watching ARP: raw socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("watching ARP on %s: %w", iface, err)
	}
	tv := unix.NsecToTimeval(watchPoll.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("watching ARP on %s: %w", iface, err)
	}
	buf := make([]byte, 256)
	for ctx.Err() == nil {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("watching ARP on %s: %w", iface, err)
		}
		// Frames queued before the bind may come from other interfaces;
		// our own sends come back as outgoing.
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Ifindex != ifi.Index || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if ip, ok := arpSender(buf[:n], ifi.HardwareAddr); ok {
			fn(ip)
		}
	}
	return nil
}
