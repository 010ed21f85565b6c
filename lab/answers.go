//go:build lab

package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// The agents gate what a DC's kernel answers for a VIP by a lease in
// nftables (README, "The ARP lease"): a table `arp raftlb_lease` whose
// output chain drops the node's ARP replies for a VIP of its `vips` set
// unless the VIP has a live element in its `lease` set. The judges read
// that table themselves, through their own netlink connection: a node
// answers who-has VIP when the VIP is on its interface and nothing drops
// the answer — no such table, the VIP not in `vips`, or a live `lease`
// element. A table the judge cannot read counts as no table (the node
// answers): the judge errs towards seeing two answerers, never fewer.

// AnswersARP reports whether n's kernel answers who-has ip on dev.
func (n *NS) AnswersARP(dev string, ip netip.Addr) (bool, error) {
	on, err := n.HasAddr(dev, ip)
	if err != nil || !on {
		return on, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.nftConn()
	if err != nil {
		return false, err
	}
	t := &nftables.Table{Name: "raftlb_lease", Family: nftables.TableFamilyARP}
	key := ip.AsSlice()
	has := func(set string) bool {
		s, err := c.GetSetByName(t, set)
		if err != nil {
			return false
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return false
		}
		return slices.ContainsFunc(elems, func(e nftables.SetElement) bool { return slices.Equal(e.Key, key) })
	}
	if !has("vips") {
		return true, nil // nothing drops its answers
	}
	return has("lease"), nil
}

// nftConn is the namespace's nftables connection, opened once. The
// caller holds n.mu.
func (n *NS) nftConn() (*nftables.Conn, error) {
	if n.nft != nil {
		return n.nft, nil
	}
	h, err := netns.GetFromName(n.name)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", n.name, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.AsLasting())
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("nftables in %s: %w", n.name, err)
	}
	n.nft, n.nftNS = c, h
	return c, nil
}

// WatchAnswering starts polling, every 5 ms, which nodes' kernels answer
// who-has ip on dev (AnswersARP): the kernels' own account of invariant
// 1, beside the client's ARP judge.
func WatchAnswering(nss map[string]*NS, dev string, ip netip.Addr) *HolderWatch {
	names := make([]string, 0, len(nss))
	for n := range nss {
		names = append(names, n)
	}
	return Watch(names, 5*time.Millisecond, func(n string) (bool, error) { return nss[n].AnswersARP(dev, ip) })
}
