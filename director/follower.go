package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// The follower: what every node does while it is not DC — it follows
// leadership and starts a term when it leads (one at a time, the next
// only once the previous has released everything), audits that it holds
// no VIP on an interface and no IPVS service for one, keeps a frozen
// term's VIPs (freeze.go) and reports a release the log could not record
// (takeover.go). Its state lives in the Director, apart from any term's.

// Run follows leadership until ctx ends: each term in which this node
// leads runs in its own goroutine, and the next event waits until the
// previous term has released everything. On the way out it gives back
// whatever it held.
func (d *Director) Run(ctx context.Context) error {
	leaders, cancelLeaders := d.c.Leadership()
	defer cancelLeaders()
	specs, cancelSpecs := d.c.FSM().Subscribe()
	defer cancelSpecs()

	// A node is never DC until proven: drop IPVS rules a previous run may
	// have left for our VIPs (only the DC may balance them) and keep the
	// VIPs on lo. VIPs the last run left on an interface are let go of
	// (realserver's Start took them off), and the DC is told.
	if d.dp != nil {
		// What the last run started is stopped before its release is
		// reported.
		clean := d.stopLeftResources("the agent starts")
		if left := d.dp.RS.LeftByLastRun(); len(left) > 0 && clean {
			d.released.set(fsm.ReleaseVIPs{Node: d.c.Name(), VIPs: left, Reason: fsm.ReleaseRestart, At: time.Now()})
		}
	}
	d.touch()
	d.logFollow(d.follow())
	d.checkCanDirect(d.c.FSM().Spec())
	close(d.startedUp)
	audit := time.NewTicker(d.cfg.AuditInterval)
	defer audit.Stop()

	var renew <-chan time.Time
	if d.dp != nil {
		r := time.NewTicker(d.cfg.Lease.RenewEvery())
		defer r.Stop()
		renew = r.C
	}

	var run *termRun
	defer func() {
		d.stopping.Store(true)
		run.stop()
		if d.frozen.get() != nil {
			d.frozen.set(nil)
			d.stopLeftResources("the agent stops")
			if err := d.follow(); err != nil {
				d.logFollow(err)
				return // the watchdog stays armed: nothing feeds it now
			}
			d.disarm()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-leaders:
			// Whatever the event, the previous term's duties end first:
			// two "leader" events in a row mean lost and regained.
			run.stop()
			run = nil
			switch {
			case ev.IsLeader:
				// A new term claims what a frozen one kept.
				d.frozen.set(nil)
				run = d.startTerm(ctx, ev)
			case d.frozen.get() == nil:
				d.logFollow(d.follow())
			}
		case <-specs:
			d.checkCanDirect(d.c.FSM().Spec())
			if run == nil && d.frozen.get() == nil {
				d.logFollow(d.follow())
			}
		case <-renew:
			if run == nil && d.frozen.get() != nil {
				d.renewFrozen()
			}
		case <-audit.C:
			// A node that is not DC, or a DC without a data plane (whose
			// term has no periodic duty), works if this loop runs; a DC
			// with one, if its term handles its events (term.handle).
			if run == nil || d.dp == nil {
				d.touch()
			}
			switch {
			case run != nil:
			case d.frozen.get() != nil:
				d.checkFrozen()
			default:
				d.audit()
				d.reportRelease(ctx)
			}
			d.checkCanDirect(d.c.FSM().Spec())
		}
	}
}

// audit is what a node that is not DC checks on a ticker: no VIP on an
// interface, no IPVS service for one. Either would make it answer ARP or
// balance beside the DC; each is repaired and logged.
func (d *Director) audit() {
	if d.dp == nil {
		return
	}
	for _, vip := range d.dp.RS.OnInterface() {
		d.logger.Warn("audit: this node is not DC but carries a VIP on its interface; taking it off", "vip", vip)
	}
	d.logFollow(d.follow())
	if err := d.dp.RS.CheckAnswers(); err != nil {
		d.logger.Error("audit: the table that gates the VIPs' answers was damaged (ruleset flushed?): installed again", "err", err)
	}
}

func (d *Director) logFollow(err error) {
	if err != nil {
		d.logger.Error("giving back the VIPs and IPVS services failed", "err", err)
	}
}

// termRun is one term's goroutine.
type termRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Director) startTerm(ctx context.Context, ev cluster.LeaderEvent) *termRun {
	tctx, cancel := context.WithCancel(ctx)
	r := &termRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := d.newTerm(ev.Term)
		// The election's time bounds a lease wait; unknown, it is now
		// (never earlier: a wait must not end too soon).
		t.elected = ev.At
		if t.elected.IsZero() {
			t.elected = time.Now()
		}
		t.run(tctx)
	}()
	return r
}

// stop ends the term and waits until it has released what it held.
func (r *termRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// follow is the state of a node that is not DC: VIPs on lo, none on an
// interface, no IPVS services for them.
func (d *Director) follow() error {
	if d.dp == nil {
		return nil
	}
	spec := d.c.FSM().Spec()
	err := d.dp.RS.Apply(spec.VIPs, nil, time.Time{})
	if err != nil {
		err = fmt.Errorf("placing VIPs on lo: %w", err)
	}
	err = errors.Join(err, d.flush(spec))
	d.syncAs(dataplane.SyncBackup)
	return err
}

// owned is the set of VIPs whose IPVS services raftlb manages: those in
// the spec and those the real-server manager still carries.
func (d *Director) owned(spec spec.Spec) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, v := range spec.VIPs {
		out[v.Address] = true
	}
	for _, a := range d.dp.RS.ManagedVIPs() {
		out[a] = true
	}
	return out
}

// flush deletes the IPVS services of our VIPs. Deleting never claims
// anything, so it needs no leadership. Only one goroutine calls it at a
// time: the term's, or the follower's loop while no term runs.
func (d *Director) flush(spec spec.Spec) error {
	cur, err := d.dp.IPVS.Services()
	if err != nil {
		return fmt.Errorf("reading IPVS table: %w", err)
	}
	owned := d.owned(spec)
	var errs []error
	for _, s := range cur {
		if !owned[s.Key.VIP] {
			continue
		}
		if err := d.dp.IPVS.DelService(s.Key); err != nil {
			errs = append(errs, fmt.Errorf("removing IPVS service %s: %w", s.Key, err))
			continue
		}
		d.writes.Add(1)
		d.logger.Info("IPVS service removed: not DC", "service", s.Key.String())
	}
	return errors.Join(errs...)
}
