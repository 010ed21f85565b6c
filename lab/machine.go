//go:build lab

package lab

// What a test reads from and changes in a machine's kernel: sysctls, its
// cable, addresses, the neighbour (ARP) table, the IPVS tables.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Sysctl sets sysctls in namespace ns, each given as "key=value" (e.g.
// "net.ipv4.conf.all.arp_ignore=1"), in one process. It writes /proc/sys
// directly: the VM runs the host's binaries, and the host need not have
// procps.
func (l *Lab) Sysctl(ns string, settings ...string) error {
	args := []string{"sh", "-c", `while [ $# -gt 0 ]; do printf '%s\n' "$2" >"$1" || exit 1; shift 2; done`, "sysctl"}
	for _, kv := range settings {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("sysctl %q: want key=value", kv)
		}
		args = append(args, "/proc/sys/"+strings.ReplaceAll(k, ".", "/"), v)
	}
	_, err := l.Exec(ns, args...)
	return err
}

// SilenceARP makes ns a well-behaved LVS-DR real server: it answers ARP
// only for addresses on the interface the request came in on (so not for
// a VIP on lo), and never uses the VIP as the source of its own ARP
// requests. Set it before the VIP goes on lo, or the node may answer for
// it in between. raftlb's realserver package does this itself.
func (l *Lab) SilenceARP(ns string) error {
	return l.Sysctl(ns,
		"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
		"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2")
}

// CablePull takes ns off the LAN the way pulling its cable would: the
// bridge port goes down, and eth0 inside ns loses carrier but keeps its
// addresses.
func (l *Lab) CablePull(ns string) error {
	_, err := l.Exec("", "ip", "link", "set", BridgePort(ns), "down")
	return err
}

// CablePlug puts ns back on the LAN.
func (l *Lab) CablePlug(ns string) error {
	_, err := l.Exec("", "ip", "link", "set", BridgePort(ns), "up")
	return err
}

// MAC is the hardware address of dev in ns.
func (l *Lab) MAC(ns, dev string) (string, error) {
	var links []struct {
		Address string `json:"address"`
	}
	if err := l.execJSON(ns, &links, "-j", "link", "show", "dev", dev); err != nil {
		return "", err
	}
	if len(links) != 1 {
		return "", fmt.Errorf("%s: %d links named %s", ns, len(links), dev)
	}
	return links[0].Address, nil
}

// Addrs are the addresses on dev in ns, as "172.95.69.100/32" (IPv6 too).
func (l *Lab) Addrs(ns, dev string) ([]string, error) {
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := l.execJSON(ns, &links, "-j", "addr", "show", "dev", dev); err != nil {
		return nil, err
	}
	var addrs []string
	for _, link := range links {
		for _, a := range link.AddrInfo {
			addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
		}
	}
	return addrs, nil
}

// Neighbour is one entry of a neighbour (ARP) table.
type Neighbour struct {
	IP    string   `json:"dst"`
	Dev   string   `json:"dev"`
	MAC   string   `json:"lladdr"` // empty while INCOMPLETE or FAILED
	State []string `json:"state"`  // REACHABLE, STALE, DELAY, PERMANENT, …
}

// ErrNoNeighbour is returned when a neighbour table has no entry for an IP.
var ErrNoNeighbour = errors.New("no neighbour entry")

// Neigh is ns's neighbour-table entry for ip.
func (l *Lab) Neigh(ns, ip string) (Neighbour, error) {
	var ns1 []Neighbour
	if err := l.execJSON(ns, &ns1, "-j", "neigh", "show", "to", ip); err != nil {
		return Neighbour{}, err
	}
	if len(ns1) == 0 {
		return Neighbour{}, fmt.Errorf("%s: %s: %w", ns, ip, ErrNoNeighbour)
	}
	return ns1[0], nil
}

// ClientARP is the MAC the client would send packets for ip to: for the
// VIP, the MAC of whichever machine answered its ARP last. It is an error
// if the client has no resolved entry.
func (l *Lab) ClientARP(ip string) (string, error) {
	n, err := l.Neigh(Client, ip)
	if err != nil {
		return "", err
	}
	if n.MAC == "" {
		return "", fmt.Errorf("client: %s unresolved (%s)", ip, strings.Join(n.State, ","))
	}
	return n.MAC, nil
}

// FlushClientARP forgets what the client has learnt for ip, so that its
// next packet asks again (as after a client's ARP cache expiry).
func (l *Lab) FlushClientARP(ip string) error {
	_, err := l.Exec("", "ip", "-n", Client, "neigh", "flush", "to", ip)
	return err
}

// IPVS is the IPVS table of ns with its counters.
func (l *Lab) IPVS(ns string) ([]Service, error) {
	list, err := l.Exec(ns, "ipvsadm", "-Ln")
	if err != nil {
		return nil, err
	}
	svcs, err := parseIPVSList(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ns, err)
	}
	stats, err := l.Exec(ns, "ipvsadm", "-Ln", "--stats", "--exact")
	if err != nil {
		return nil, err
	}
	if err := mergeIPVSStats(svcs, stats); err != nil {
		return nil, fmt.Errorf("%s: %w", ns, err)
	}
	return svcs, nil
}

// IPVSConns is the IPVS connection table of ns. (/proc/net is the reading
// process's namespace's, hence the exec.)
func (l *Lab) IPVSConns(ns string) ([]Conn, error) {
	out, err := l.Exec(ns, "cat", "/proc/net/ip_vs_conn")
	if err != nil {
		return nil, err
	}
	conns, err := parseIPVSConns(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ns, err)
	}
	return conns, nil
}

// execJSON runs `ip -n NS ARGS` (ip's own namespace switch: one exec
// instead of two) and decodes its JSON output into v.
func (l *Lab) execJSON(ns string, v any, args ...string) error {
	argv := append([]string{"ip"}, args...)
	if ns != "" {
		argv = append([]string{"ip", "-n", ns}, args...)
	}
	out, err := l.Exec("", argv...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}
