package director

import (
	"context"
	"time"

	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/retry"
)

// revoke gives up the term's duties in the reverse order of establish,
// the VIPs first. How depends on how the term ends, one method each:
//
//   - revokeHandedOver: this node handed its duties over on purpose; it
//     keeps the VIPs until the successor has announced them;
//   - revokeFrozen: leadership lost under no_quorum: freeze; the VIPs and
//     the table stay until another DC is known (freeze.go);
//   - revokeLost: leadership lost; the VIPs go at once.
//
// Then the ARP watches, the health checks and the membership step wind
// down, and revoke waits for every goroutine of the term.
func (t *term) revoke() {
	t.phase = revoking
	t.burst.Stop()
	t.recheck.Stop()
	t.res.Load().end() // no resource starts from now on
	switch {
	case t.d.dp == nil:
	case t.handingOver:
		t.revokeHandedOver()
	case t.freezes():
		t.revokeFrozen()
	default:
		t.revokeLost()
	}
	t.windDown()
}

// revokeHandedOver keeps the VIPs until the successor has announced them
// (clients whose ARP caches still point here are answered by this node's
// own service meanwhile; two nodes answer ARP for this bounded window),
// or the grace ends, or the hand-over is called off; then lets go. The
// release was recorded when the hand-over began (beginHandOver).
func (t *term) revokeHandedOver() {
	if t.held != nil && t.d.cfg.HandOverGrace > 0 {
		t.log.Info("handing over: keeping the VIPs until the successor announces them", "at_most", t.d.cfg.HandOverGrace)
		start := time.Now()
		switch {
		case t.awaitSuccessor():
			t.log.Info("the successor announced every VIP", "after", time.Since(start).Round(time.Millisecond))
		case !t.handingOver:
			t.log.Warn("hand-over called off without a successor: releasing the VIPs at once")
		default:
			t.log.Warn("no successor announced every VIP within the grace; releasing them anyway", "grace", t.d.cfg.HandOverGrace)
		}
	}
	t.letGo()
	t.stopResources()
}

// awaitSuccessor waits, answering requests, until every held IPv4 VIP has
// been announced by another host since the hand-over began, the grace
// ends, or the hand-over is called off; it reports whether all were
// announced. Only ARP is watched: a DC holding an IPv6 VIP keeps the
// whole grace.
func (t *term) awaitSuccessor() bool {
	deadline := time.NewTimer(t.d.cfg.HandOverGrace)
	defer deadline.Stop()
	for {
		if t.ann.allAnnounced() {
			return true
		}
		if !t.handingOver {
			return false
		}
		select {
		case <-t.ann.changed:
		case r := <-t.inbox:
			t.serve(r)
		case <-deadline.C:
			return false
		}
	}
}

// revokeFrozen keeps the VIPs and the table (no_quorum: freeze): the
// follower renews them until another DC is known, which fences this node
// first (freeze.go). The resources keep running, as the VIPs do.
func (t *term) revokeFrozen() {
	t.d.frozen.set(&frozenTerm{term: t.n, vips: sortedVIPs(t.held), since: time.Now()})
	t.log.Warn("leadership lost with no_quorum: freeze: keeping the VIPs and the IPVS table until another DC is known (it fences this node first)", "vips", sortedVIPs(t.held))
	t.ann.stop()
	if r := t.res.Load(); r != nil {
		<-r.done
	}
}

// revokeLost lets go at once: leadership is lost, and the lease must end
// before another DC can be elected. The log cannot be written now, so the
// release is reported to the next DC known (reportRelease), and only if
// every resource stopped here.
func (t *term) revokeLost() {
	var rel *fsm.ReleaseVIPs
	if t.held != nil {
		rel = &fsm.ReleaseVIPs{Node: t.d.c.Name(), Term: t.n, VIPs: sortedVIPs(t.held), Reason: fsm.ReleaseQuorumLost, At: time.Now()}
	}
	t.letGo()
	if clean := t.stopResources(); rel != nil && clean {
		t.d.released.set(*rel)
	}
}

// letGo takes the VIPs off their interfaces and removes the IPVS
// services, disarms the watchdog after a clean release, and stops
// watching ARP.
func (t *term) letGo() {
	released := sortedVIPs(t.held)
	if t.release() {
		t.d.disarm()
	}
	for _, v := range released {
		t.event(events.Event{Type: events.VIPReleased, VIP: v.String(), Message: "VIP released: back on lo"})
	}
	t.log.Info("DC duties released: VIPs back on lo, IPVS services removed")
	t.ann.stop()
}

// windDown stops what every term runs whatever its end: the health
// checks, the membership step, the fence devices' checks; then the term
// reads no more requests, and waits for its goroutines (only the term's
// goroutine adds to its WaitGroup, so none is added from here on).
func (t *term) windDown() {
	if t.mon != nil {
		t.d.monitor.Store(nil)
		t.mon.Stop()
	}
	if t.stopMembers != nil {
		t.stopMembers()
	}
	if t.stopChecks != nil {
		t.stopChecks()
	}
	close(t.done)
	t.wg.Wait()
}

// releaseTries bounds the retries of a release that fails: by then the
// lease has certainly dropped the VIPs from the interface.
const releaseTries = 10

// release takes the VIPs off their interface and removes the IPVS
// services, retrying a failure (a netlink error) with a growing pause.
func (t *term) release() bool {
	err := retry.Do(context.Background(), retry.Policy{Attempts: releaseTries, Interval: 50 * time.Millisecond, MaxInterval: time.Second},
		func(_ context.Context, attempt int) error {
			err := t.d.follow()
			if err != nil {
				t.log.Error("releasing the VIPs failed; retrying", "attempt", attempt, "err", err)
			}
			return err
		})
	if err != nil {
		t.log.Error("the VIPs could not be released; the kernel drops them from the interface when their lease ends (and an armed watchdog resets the machine)", "lease", t.d.cfg.Lease.Duration, "err", err)
		return false
	}
	return true
}
