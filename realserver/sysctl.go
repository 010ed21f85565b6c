package realserver

import (
	"fmt"
	"strings"
)

// sysctl is one kernel setting with the reason raftlb needs it.
type sysctl struct {
	key   string
	value string
	why   string
}

// nodeSysctls is every kernel setting the agent makes on a node with the
// kernel data plane: the ARP table below and the IPVS connection handling,
// with the connection synchronisation's when the node runs it.
func nodeSysctls(ifaces []string, connSync bool) []sysctl {
	out := append(arpSysctls(ifaces), ipvsSysctls...)
	if connSync {
		out = append(out, syncSysctls...)
	}
	return out
}

// syncSysctls shape IPVS connection synchronisation (the DC's kernel sends
// every connection it balances to the others, which keep a copy: the next
// DC forwards an established connection's next packet to the same real
// server). Every node is also a real server, so a copy must never make a
// node balance.
var syncSysctls = []sysctl{
	{"net/ipv4/vs/backup_only", "1",
		"while this node keeps copies (the backup sync daemon: every node but the DC), its IPVS does not direct: a copied entry must not make a real server forward a packet it should serve itself to another one (the double-balancing loop)"},
	{"net/ipv4/vs/sync_persist_mode", "0",
		"send both the connections and the persistence templates, so a persistent client's next connection still reaches its server after a failover"},
	{"net/ipv4/vs/sync_threshold", "3 0",
		"no sync period by packet count (the second value 0): with sync_refresh_period, a TCP connection is sent as soon as it is established, not at its third packet, and a long idle one (SSH) is known to the next DC"},
	{"net/ipv4/vs/sync_refresh_period", "10",
		"send a connection again at most every 10 s while its state is unchanged, so a copy does not expire on the backups while the connection lives"},
	{"net/ipv4/vs/conn_reuse_mode", "3",
		"schedule afresh a new connection whose client port matches a closing one (FIN_WAIT, the last state direct routing shows): a copy made on a backup is bound to no real server, so expire_nodest_conn never reaches it, and without this a reused port follows a copy to a removed real server for two minutes (seen in the lab's graceful stop)"},
}

// ipvsSysctls make IPVS forget connections whose real server is gone.
// IPVS keeps an entry per client connection so that later packets follow
// the first; in direct routing it sees only the client's half, and a closed
// connection sits in FIN_WAIT for two minutes (an open one for fifteen). By
// default a new SYN that reuses such an entry's client port, as a busy
// client does, follows it, and if that real server has been removed (dead,
// failed its checks, or the whole service removed when this node stopped
// being DC) the kernel drops it without a word until the entry expires.
// The lab's port-reuse scenario shows exactly that: every reused port whose
// earlier connection went to a dead node timed out. Every node sets these,
// not only the DC: a former DC's table still holds entries of its term, and
// they would catch its next term's connections. kube-proxy's IPVS mode sets
// the same two.
var ipvsSysctls = []sysctl{
	{"net/ipv4/vs/expire_nodest_conn", "1",
		"expire the connections of a removed real server (kernel 5.9 and later at once, older ones on their next packet) so a reused client port is scheduled afresh instead of dropped"},
	{"net/ipv4/vs/expire_quiescent_template", "1",
		"expire persistence templates of a real server at weight 0 (on_fail: quiescent) so persistent clients move on with their next connection"},
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

// applySysctls sets the table, remembering each previous value once so
// Shutdown restores what the operator had.
func (m *Manager) applySysctls() error {
	for _, s := range nodeSysctls(m.ifaces(), m.connSync) {
		cur, err := m.k.Sysctl(s.key)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.key, err)
		}
		if _, seen := m.prev[s.key]; !seen {
			m.prev[s.key] = cur
		}
		if sameSysctl(cur, s.value) {
			continue
		}
		if err := m.k.SetSysctl(s.key, s.value); err != nil {
			return fmt.Errorf("set %s=%s (%s): %w", s.key, s.value, s.why, err)
		}
		m.logger.Info("sysctl set", "key", s.key, "value", s.value, "was", cur, "why", s.why)
	}
	return nil
}

// sameSysctl compares a value read back with one written: the kernel
// prints a vector's values apart by tabs ("3\t0" for "3 0").
func sameSysctl(read, written string) bool {
	return strings.Join(strings.Fields(read), " ") == written
}
