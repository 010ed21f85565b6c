//go:build lab

package lab

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// PacketCounter counts, in one namespace, the packets an nftables rule
// matches: a table of its own with a named counter, read back through
// netlink (microseconds, where running nft costs a tenth of a second
// under TCG), so a poll can read it in the same breath as the IPVS table.
type PacketCounter struct {
	l         *Lab
	ns, table string
}

// CountPackets installs, in namespace ns, a rule on hook (input, output)
// that counts the packets matching match (nft syntax, e.g. "ip saddr
// 172.95.69.30 tcp dport 3128") and then applies verdict ("drop", or ""
// to let them pass). The count starts at zero.
func (l *Lab) CountPackets(ns, table, hook, match, verdict string) (*PacketCounter, error) {
	return l.countThen(ns, table, hook, match, verdict, "")
}

// Blackhole drops, in namespace ns, every packet matching drop on hook,
// silently, and counts those of them that also match count (a
// connection's SYNs, say, and not the retransmitted FINs of one that
// was closing when the hole opened).
func (l *Lab) Blackhole(ns, table, hook, count, drop string) (*PacketCounter, error) {
	return l.countThen(ns, table, hook, drop+" "+count, "", fmt.Sprintf("add rule inet %s c %s drop\n", table, drop))
}

// countThen installs the counting rule and then more rules after it.
func (l *Lab) countThen(ns, table, hook, match, verdict, then string) (*PacketCounter, error) {
	rules := fmt.Sprintf("add table inet %[1]s\nadd counter inet %[1]s matched\n"+
		"add chain inet %[1]s c { type filter hook %[2]s priority 0 ; }\n"+
		"add rule inet %[1]s c %[3]s counter name matched %[4]s\n", table, hook, match, verdict) + then
	f := filepath.Join(l.logDir, ns+"-"+table+".nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		return nil, err
	}
	if _, err := l.Exec(ns, "nft", "-f", f); err != nil {
		return nil, err
	}
	return &PacketCounter{l: l, ns: ns, table: table}, nil
}

// Read returns how many packets the rule has matched.
func (c *PacketCounter) Read() (uint64, error) {
	h, err := netns.GetFromName(c.ns)
	if err != nil {
		return 0, fmt.Errorf("namespace %s: %w", c.ns, err)
	}
	defer h.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return 0, fmt.Errorf("nftables in %s: %w", c.ns, err)
	}
	o, err := conn.GetObject(&nftables.CounterObj{Table: &nftables.Table{Name: c.table, Family: nftables.TableFamilyINet}, Name: "matched"})
	if err != nil {
		return 0, fmt.Errorf("counter %s in %s: %w", c.table, c.ns, err)
	}
	co, ok := o.(*nftables.CounterObj)
	if !ok {
		return 0, fmt.Errorf("counter %s in %s: got %T", c.table, c.ns, o)
	}
	return co.Packets, nil
}

// Remove deletes the rule's table.
func (c *PacketCounter) Remove() error {
	_, err := c.l.Exec(c.ns, "nft", "delete", "table", "inet", c.table)
	return err
}
