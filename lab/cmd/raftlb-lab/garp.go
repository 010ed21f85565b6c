package main

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/internal/cli"
)

// runGARP sends one gratuitous ARP with raftlb's own sender, so a lab
// scenario can check what a neighbour does with it, apart from the agent.
func runGARP(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("garp", stderr)
	iface := fs.String("iface", "eth0", "interface to send on")
	ip := fs.String("ip", "", "the address to announce")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := netip.ParseAddr(*ip)
	if err != nil {
		return fmt.Errorf("%w: --ip %q: %v", cli.ErrUsage, *ip, err)
	}
	if err := (director.RawARP{}).Gratuitous(*iface, a); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent gratuitous ARP for %s on %s\n", a, *iface)
	return nil
}
