package director

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ARP sends gratuitous ARP. The real implementation writes raw Ethernet
// frames on an AF_PACKET socket; tests record the calls.
type ARP interface {
	Gratuitous(iface string, ip netip.Addr) error
}

// RawARP is the real ARP sender.
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

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Gratuitous implements ARP. IPv6 VIPs are skipped: they need unsolicited
// neighbour advertisements, which raftlb does not send yet.
func (RawARP) Gratuitous(iface string, ip netip.Addr) error {
	if !ip.Is4() {
		return nil
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("gratuitous ARP: %s has no Ethernet address", iface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP: raw socket: %w", err)
	}
	defer unix.Close(fd)
	addr := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	if err := unix.Sendto(fd, gratuitousFrame(ifi.HardwareAddr, ip), 0, addr); err != nil {
		return fmt.Errorf("gratuitous ARP on %s for %s: %w", iface, ip, err)
	}
	return nil
}
