package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/raftlb/raftlb/internal/cli"
)

// runGARP sends one gratuitous ARP, so a scenario can play another host
// announcing an address: a neighbour switching its cache, the judge seeing
// an announcement, the DC logging a conflict. The frame is the lab's own
// (gratuitousARP), not raftlb's sender: a judge shares no code with the
// system it judges.
func runGARP(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("garp", stderr)
	iface := fs.String("iface", "eth0", "interface to send on")
	ip := fs.String("ip", "", "the IPv4 address to announce")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := netip.ParseAddr(*ip)
	if err != nil || !a.Is4() {
		return fmt.Errorf("%w: --ip %q: want an IPv4 address", cli.ErrUsage, *ip)
	}
	if err := sendGratuitousARP(*iface, a); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent gratuitous ARP for %s on %s\n", a, *iface)
	return nil
}

// gratuitousARP is an ARP announcement (RFC 5227 section 2.3; arping -U):
// a broadcast request from mac whose sender and target protocol addresses
// are both ip. A neighbour that has an entry for ip replaces its MAC.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) []byte {
	return whoHas(mac, ip, ip)
}

// sendGratuitousARP sends gratuitousARP from iface's MAC as a raw Ethernet
// frame (AF_PACKET), so that it depends on no address being configured.
func sendGratuitousARP(iface string, ip netip.Addr) error {
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
	addr := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(addr.Addr[:], broadcast)
	if err := unix.Sendto(fd, gratuitousARP(ifi.HardwareAddr, ip), 0, addr); err != nil {
		return fmt.Errorf("gratuitous ARP on %s for %s: %w", iface, ip, err)
	}
	return nil
}
