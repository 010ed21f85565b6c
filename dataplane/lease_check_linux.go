package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Check: whether the lease table is there and intact (an operator's
// `nft flush ruleset` removes it), per family in use.

// Check implements VIPLease: per family in use, the table is there and
// not dormant, its two chains are output filter hooks at priority 0 with
// policy accept, each holding exactly its rule (the deadline rule with the
// deadline last committed), the sets have their types, and the vips set
// holds exactly the managed VIPs.
func (l *NFTLease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		return nil
	}
	want := splitFamilies(l.managed)
	for i, f := range leaseFamilies() {
		if i == 1 && !l.v6 {
			continue
		}
		if err := l.check(f, want[i]); err != nil {
			return fmt.Errorf("%w: %s: call Install to restore it (leases are not restored: renew after the next verification)", ErrLeaseDamaged, err)
		}
	}
	return nil
}

func (l *NFTLease) check(f leaseFamily, want []netip.Addr) error {
	name := f.what + " " + l.name
	tables, err := l.conn.ListTablesOfFamily(f.family)
	if err != nil {
		return fmt.Errorf("list %s tables: %w", f.what, err)
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == l.name })
	if i < 0 {
		return fmt.Errorf("table %s is missing (was the ruleset flushed?)", name)
	}
	if tables[i].Flags&unix.NFT_TABLE_F_DORMANT != 0 {
		return fmt.Errorf("table %s is dormant: its chains do not run", name)
	}
	if err := l.checkChain(f, "output", "the lease rule", f.rule()); err != nil {
		return err
	}
	if err := l.checkChain(f, "deadline", "the deadline rule", f.deadline(l.until)); err != nil {
		return err
	}
	for _, s := range []*nftables.Set{l.vipSet(f), l.leaseSet(f)} {
		got, err := l.conn.GetSetByName(l.table(f), s.Name)
		if err != nil {
			return fmt.Errorf("set %s %s is missing: %w", name, s.Name, err)
		}
		if got.KeyType.Name != s.KeyType.Name || got.HasTimeout != s.HasTimeout {
			return fmt.Errorf("set %s %s is of another kind (key %s, timeout %v)", name, s.Name, got.KeyType.Name, got.HasTimeout)
		}
	}
	els, err := l.conn.GetSetElements(l.vipSet(f))
	if err != nil {
		return fmt.Errorf("read set %s vips: %w", name, err)
	}
	var have []netip.Addr
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			have = append(have, a)
		}
	}
	slices.SortFunc(have, netip.Addr.Compare)
	if !slices.Equal(have, want) {
		return fmt.Errorf("set %s vips holds %v, want %v", name, have, want)
	}
	return nil
}

// checkChain checks that chain is a filter chain on the output hook at
// priority 0 with policy accept, holding exactly rule.
func (l *NFTLease) checkChain(f leaseFamily, chain, what string, rule []expr.Any) error {
	name := f.what + " " + l.name + " " + chain
	c, err := l.conn.ListChain(l.table(f), chain)
	if err != nil {
		return fmt.Errorf("chain %s is missing: %w", name, err)
	}
	if c.Type != nftables.ChainTypeFilter || c.Hooknum == nil || *c.Hooknum != f.hook ||
		c.Priority == nil || *c.Priority != *nftables.ChainPriorityFilter ||
		(c.Policy != nil && *c.Policy != nftables.ChainPolicyAccept) {
		return fmt.Errorf("chain %s is not a filter chain on hook output at priority 0 with policy accept", name)
	}
	rules, err := l.conn.GetRules(l.table(f), c)
	if err != nil {
		return fmt.Errorf("read rules of %s: %w", name, err)
	}
	if len(rules) != 1 {
		return fmt.Errorf("chain %s has %d rules, want exactly %s", name, len(rules), what)
	}
	if !leaseSameRule(rules[0].Exprs, rule) {
		return fmt.Errorf("the rule in %s is not %s", name, what)
	}
	return nil
}

// leaseSameRule compares a rule read back from the kernel with ours:
// lookups by set name (the kernel's set IDs are per batch). google/nftables
// (v0.3.0) does not decode a byteorder expression and leaves it out of a
// rule it reads back, so ours is compared without it: a deadline rule
// whose conversion an operator removed by hand would pass.
func leaseSameRule(got, want []expr.Any) bool {
	want = slices.DeleteFunc(slices.Clone(want), func(e expr.Any) bool {
		_, ok := e.(*expr.Byteorder)
		return ok
	})
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		switch w := want[i].(type) {
		case *expr.Lookup:
			g, ok := got[i].(*expr.Lookup)
			if !ok || g.SetName != w.SetName || g.SourceRegister != w.SourceRegister || g.Invert != w.Invert || g.IsDestRegSet {
				return false
			}
		case *expr.Cmp:
			g, ok := got[i].(*expr.Cmp)
			if !ok || g.Op != w.Op || g.Register != w.Register || !bytes.Equal(g.Data, w.Data) {
				return false
			}
		default:
			if !reflect.DeepEqual(got[i], want[i]) {
				return false
			}
		}
	}
	return true
}
