// Package realserver runs on every node: it keeps each VIP of the spec on
// lo as a host route (/32 or /128) so the node accepts direct-routed
// packets for it, sets the ARP sysctls that keep a real server silent about
// the VIP and the IPVS ones that keep a removed real server's connections
// from catching a reused client port, and moves a VIP from lo to the
// interface when this node becomes DC and back when it stops being DC. It
// never programs IPVS.
package realserver
