package inproc

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Checker is the invariant verifier of an in-process cluster, in the
// spirit of hashicorp/raft's fuzzy verifier. It watches every node's fake
// kernel as the writes happen and records a violation when
//
//   - two nodes carry a VIP on an interface (both would answer ARP) for
//     longer than MaxOverlap (invariant 1: zero outside a hand-over, whose
//     grace bounds it);
//   - a node that is not the DC — not the Raft leader in the highest term
//     any running node knows — adds or changes an IPVS rule (invariants 2
//     and 6; removing rules needs no leadership).
//
// Convergence (invariant 4) is checked by the Cluster at the end of a
// scenario.
type Checker struct {
	// MaxOverlap is the longest two nodes may both carry a VIP.
	MaxOverlap time.Duration

	// leader reports whether node leads, and in which term; highest is
	// the highest term of the running nodes.
	leader  func(node string) (bool, uint64)
	highest func() uint64
	now     func() time.Time

	mu         sync.Mutex
	holders    map[netip.Addr]map[string]bool
	overlapAt  map[netip.Addr]time.Time // when a second holder appeared
	longest    time.Duration
	ignored    map[string]bool // crashed: nothing they do counts
	violations []string
}

// NewChecker returns a checker; leader and highest answer from the
// cluster's nodes at the instant of a write.
func NewChecker(maxOverlap time.Duration, leader func(string) (bool, uint64), highest func() uint64) *Checker {
	return &Checker{
		MaxOverlap: maxOverlap, leader: leader, highest: highest, now: time.Now,
		holders: map[netip.Addr]map[string]bool{}, overlapAt: map[netip.Addr]time.Time{}, ignored: map[string]bool{},
	}
}

// Addr is node's kernel address change, as realserver.Fake writes it:
// "add eth0 172.95.69.100/32", "lease eth0 172.95.69.100/32 2s",
// "renew …", "del …", "expire eth0 172.95.69.100/32".
func (c *Checker) Addr(node, write string) {
	f := strings.Fields(write)
	if len(f) < 3 || f[1] == "lo" || f[0] == "renew" {
		return
	}
	p, err := netip.ParsePrefix(f[2])
	if err != nil {
		c.violate("unreadable address write %q by %s", write, node)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ignored[node] {
		return
	}
	switch f[0] {
	case "add", "lease":
		c.hold(p.Addr(), node, true)
	case "del", "expire":
		c.hold(p.Addr(), node, false)
	}
}

// hold records node starting or ending to carry vip. The caller holds mu.
func (c *Checker) hold(vip netip.Addr, node string, on bool) {
	hs := c.holders[vip]
	if hs == nil {
		hs = map[string]bool{}
		c.holders[vip] = hs
	}
	before := len(hs)
	if on {
		hs[node] = true
	} else {
		delete(hs, node)
	}
	now := c.now()
	switch {
	case before < 2 && len(hs) >= 2:
		c.overlapAt[vip] = now
	case before >= 2 && len(hs) < 2:
		c.endOverlap(vip, now)
	}
}

func (c *Checker) endOverlap(vip netip.Addr, now time.Time) {
	d := now.Sub(c.overlapAt[vip])
	delete(c.overlapAt, vip)
	c.longest = max(c.longest, d)
	if d > c.MaxOverlap {
		c.violations = append(c.violations, fmt.Sprintf("two nodes carried %s on an interface for %s (at most %s allowed)", vip, d, c.MaxOverlap))
	}
}

// IPVS is node's IPVS write, as dataplane.FakeIPVS writes it:
// "add-dest 172.95.69.100:3128/tcp -> 127.0.1.1:3128 w1".
func (c *Checker) IPVS(node, write string) {
	kind, _, _ := strings.Cut(write, " ")
	if strings.HasPrefix(kind, "del-") {
		return // removing rules claims nothing
	}
	c.mu.Lock()
	ignored := c.ignored[node]
	c.mu.Unlock()
	if ignored {
		return
	}
	leads, term := c.leader(node)
	if high := c.highest(); !leads || term < high {
		c.violate("IPVS write %q by %s, which is not the DC (leader %v in term %d; the highest term is %d)", write, node, leads, term, high)
	}
}

// Crashed tells the checker that node's machine died: it holds nothing
// from now on, and whatever its stopped processes still write is not the
// machine's doing.
func (c *Checker) Crashed(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ignored[node] = true
	for vip, hs := range c.holders {
		if hs[node] {
			c.hold(vip, node, false)
		}
	}
}

// Revived undoes Crashed: the machine is back (with an empty kernel).
func (c *Checker) Revived(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ignored, node)
}

func (c *Checker) violate(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

// Violations returns what was broken so far; an overlap still going on
// counts up to now.
func (c *Checker) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.violations...)
	now := c.now()
	for vip, at := range c.overlapAt {
		if d := now.Sub(at); d > c.MaxOverlap {
			out = append(out, fmt.Sprintf("two nodes carry %s on an interface, for %s so far (at most %s allowed)", vip, d, c.MaxOverlap))
		}
	}
	return out
}

// LongestOverlap is the longest time two nodes carried a VIP at once.
func (c *Checker) LongestOverlap() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	longest := c.longest
	for _, at := range c.overlapAt {
		longest = max(longest, c.now().Sub(at))
	}
	return longest
}
