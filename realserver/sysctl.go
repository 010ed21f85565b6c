package realserver

import "fmt"

// sysctl is one kernel setting with the reason raftlb needs it.
type sysctl struct {
	key   string
	value string
	why   string
}

// arpSysctls is the declarative table of the ARP settings LVS direct
// routing needs on every node ("the ARP problem"). The kernel applies the
// larger of the "all" and the per-interface value, so both are set: the
// intent stays explicit and survives someone lowering "all".
func arpSysctls(ifaces []string) []sysctl {
	out := []sysctl{
		{"net/ipv4/conf/all/arp_ignore", "1",
			"answer ARP only for addresses on the interface the request arrived on: the VIP sits on lo, so a real server stays silent and only the DC (VIP on its interface) answers"},
		{"net/ipv4/conf/all/arp_announce", "2",
			"never use the VIP as the source address of our own ARP requests, which would teach neighbours the VIP's MAC is ours"},
	}
	for _, i := range ifaces {
		out = append(out,
			sysctl{fmt.Sprintf("net/ipv4/conf/%s/arp_ignore", i), "1", "as all/arp_ignore, on the VIP interface"},
			sysctl{fmt.Sprintf("net/ipv4/conf/%s/arp_announce", i), "2", "as all/arp_announce, on the VIP interface"})
	}
	return out
}
