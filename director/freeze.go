package director

import (
	"net/netip"
	"sync"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// With no_quorum: freeze (accepted only with takeover: fence), a DC that
// loses its leadership without handing over keeps serving what it holds:
// its VIPs stay on their interface, their lease renewed, and its IPVS
// table stays as it was, unchanged. It lets go as soon as it learns of
// another DC: that DC fenced it (or an operator confirmed it down) before
// taking the VIPs over, so the majority never shares a VIP with it. Until
// then, no verification stands behind the renewals: freeze trades the
// lease's guarantee for the fence's.

// frozenTerm is what a frozen former DC keeps.
type frozenTerm struct {
	term  uint64
	vips  []netip.Addr
	since time.Time
}

// freezer holds the frozen term, if any; the term's goroutine sets it,
// Run's reads and ends it.
type freezer struct {
	mu sync.Mutex
	f  *frozenTerm
}

func (z *freezer) set(f *frozenTerm) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.f = f
}

func (z *freezer) get() *frozenTerm {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.f
}

// freezes reports whether a term that lost its leadership keeps what it
// holds: the spec says freeze, and the agent is not stopping.
func (t *term) freezes() bool {
	return t.d.dp != nil && t.held != nil && !t.d.stopping.Load() &&
		t.d.c.FSM().State().Spec.Policy.NoQuorum == spec.NoQuorumFreeze
}

// renewFrozen extends the frozen VIPs' lease from now (no verification
// stands behind it), and reports a lapse.
func (d *Director) renewFrozen() {
	lapsed, err := d.dp.RS.Renew(time.Now())
	if err != nil {
		d.logger.Error("frozen: renewing the VIPs' lease failed", "err", err)
	} else {
		d.feed() // the agent is alive and serving
	}
	if len(lapsed) > 0 {
		d.logger.Warn("frozen: the VIPs' lease had lapsed (this agent was starved); they are back on the interface", "vips", lapsed)
	}
}

// checkFrozen ends the freeze once another node is known as DC: it let go
// of the VIPs by fencing (or a confirmation) already, and this node
// releases at once and says so.
func (d *Director) checkFrozen() {
	f := d.frozen.get()
	if f == nil {
		return
	}
	leader := d.c.Leader()
	if leader == "" || leader == d.c.Name() {
		return
	}
	d.frozen.set(nil)
	d.logger.Warn("frozen: another node is DC; releasing the VIPs and IPVS services kept since quorum was lost", "dc", leader, "frozen_for", time.Since(f.since).Round(time.Millisecond))
	if err := d.follow(); err != nil {
		d.logFollow(err)
	} else {
		d.disarm()
	}
	if !d.stopLeftResources("a frozen term ends") {
		return // not a release: the DC fences this node
	}
	d.released.set(fsm.ReleaseVIPs{Node: d.c.Name(), Term: f.term, VIPs: f.vips, Reason: fsm.ReleaseQuorumLost, At: time.Now()})
}
