package dataplane

import (
	"context"
	"net/netip"
)

// ARP sends gratuitous ARP and watches other hosts' ARP. The real
// implementation uses AF_PACKET sockets; tests record the calls.
type ARP interface {
	Gratuitous(iface string, ip netip.Addr) error
	// Watch calls fn with the sender address of every ARP packet that
	// another host sends on iface (a neighbour announcing or answering
	// for that address), until ctx ends.
	Watch(ctx context.Context, iface string, fn func(sender netip.Addr)) error
}
