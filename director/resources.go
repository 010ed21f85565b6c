package director

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/resources"
	rspec "github.com/raftlb/raftlb/spec"
)

// The spec's resources move with the DC (package resources runs them).
// Where they stand in the term:
//
//   - Start: after the claim, once this term holds every VIP of the spec,
//     in spec order. The VIP comes first because the balanced service
//     needs none of them (a takeover does not wait for a mount) and
//     because holding every VIP is the proof that the previous holder let
//     go: its release is recorded, or it was fenced. Resources need
//     takeover fence (fsm), so a holder that did not let go is fenced
//     before anything starts here.
//   - Stop: in reverse. A DC that hands over on purpose stops them before
//     it records its release, so its successor starts them only after
//     they stopped here. A DC that lost leadership lets go of its VIPs
//     first (their lease must end before another DC is elected), then
//     stops them, and reports its release only if every stop succeeded.
//   - A start that fails stops what was started, and this node hands the
//     DC role on and says it cannot direct for noDirectRetry (or until the
//     spec changes). A stop that fails is never a release: the node hands
//     leadership over without a record, and the next DC fences it.
//   - monitor runs every resource's interval; a resource found stopped or
//     failing restarts the list (stopped in reverse, started in order),
//     and a restart that fails is a start failure.

// resourceRun is a term's resource goroutine.
type resourceRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// stop ends the goroutine (an action under way finishes first) and waits.
func (r *resourceRun) stop() {
	if r == nil {
		return
	}
	r.end()
	<-r.done
}

// finished says the goroutine has ended.
func (r *resourceRun) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// end ends the goroutine without waiting: nothing starts from now on.
func (r *resourceRun) end() {
	if r != nil {
		r.once.Do(r.cancel)
	}
}

// startResources starts the term's resource goroutine, unless it runs:
// at the end of establish, and again after a hand-over that failed (which
// had stopped the resources and ended the goroutine).
func (t *term) startResources() {
	if t.d.res == nil {
		return
	}
	if r := t.res.Load(); r != nil && !r.finished() {
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	run := &resourceRun{cancel: cancel, done: make(chan struct{})}
	t.resWake = make(chan struct{}, 1)
	t.res.Store(run)
	go func() {
		defer close(run.done)
		t.runResources(ctx)
	}()
}

// wakeResources tells the resource goroutine that the VIPs held changed.
func (t *term) wakeResources() {
	if t.resWake == nil {
		return
	}
	select {
	case t.resWake <- struct{}{}:
	default:
	}
}

// holdsEveryVIP says whether this term holds every VIP of spec.
func (t *term) holdsEveryVIP(spec rspec.Spec) bool {
	held := t.heldNow()
	for _, v := range spec.VIPs {
		if _, ok := held[v.Address]; !ok {
			return false
		}
	}
	return len(spec.VIPs) > 0
}

// runResources keeps the spec's resources started while the term lasts.
func (t *term) runResources(ctx context.Context) {
	g := t.d.res
	specs, cancel := t.d.c.FSM().Subscribe()
	defer cancel()
	var retryAt time.Time
	var retryVersion uint64
	for {
		spec := t.d.c.FSM().Spec()
		if spec.Version != retryVersion {
			retryAt = time.Time{} // a new spec is tried at once
		}
		wantStart := t.holdsEveryVIP(spec) && !g.Matches(spec.Resources) && !time.Now().Before(retryAt)
		if wantStart && g.StopFailed() {
			// Started again, a resource whose stop failed might run twice
			// here, or beside another node's: the node must be fenced.
			t.escalate(errors.New("a resource's stop failed earlier on this node"))
			return
		}
		if wantStart {
			if len(g.Started()) > 0 {
				t.log.Info("the spec's resources changed: stopping the running ones, in reverse, to start the new list")
				if err := g.Stop(); err != nil {
					t.escalate(err)
					return
				}
			}
			if len(spec.Resources) > 0 {
				t.log.Info("starting the resources, in order", "resources", len(spec.Resources))
				if !t.startResourceList(ctx, spec, &retryAt, &retryVersion) {
					return
				}
			}
		}
		if failed, err := g.MonitorDue(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("a resource failed its monitor: restarting the resources", "resource", failed.Name, "err", err)
			if serr := g.Stop(); serr != nil {
				t.escalate(serr)
				return
			}
			if !t.startResourceList(ctx, spec, &retryAt, &retryVersion) {
				return
			}
		}
		wait := time.Second
		if next := g.NextDue(); !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-specs:
		case <-t.resWake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// startResourceList starts spec's resources, each after a verification
// in this term. A start that failed and was stopped cleanly hands the DC
// role on and is not tried again before retryAt (unless the spec
// changes); one whose stops failed too escalates, and the goroutine must
// end (false).
func (t *term) startResourceList(ctx context.Context, spec rspec.Spec, retryAt *time.Time, retryVersion *uint64) bool {
	g := t.d.res
	err := g.Start(ctx, spec.Resources, func() error { return t.d.c.VerifyLeader(t.n) })
	switch {
	case err == nil || ctx.Err() != nil:
		return true
	case !g.Clean():
		t.escalate(err)
		return false
	}
	*retryAt, *retryVersion = time.Now().Add(noDirectRetry), spec.Version
	t.resourceStartFailed(err)
	return true
}

// resourceStartFailed: the resources are stopped again; this node says it
// cannot direct for a while and hands the DC role to another node, with
// the graceful hand-over (its release is recorded: nothing runs here).
func (t *term) resourceStartFailed(err error) {
	why := "a resource failed to start: " + err.Error()
	t.d.cannotDirectNow(why)
	if !t.moving.CompareAndSwap(false, true) {
		return
	}
	t.log.Error("handing the DC role to another node: a resource failed to start here", "err", err)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		moved, merr := t.d.c.MoveDC(t.ctx, "")
		if merr != nil {
			t.moving.Store(false)
			t.log.Error("no node took the DC role: staying DC, with the VIPs and without the resources; trying them again later", "err", merr, "retry_in", noDirectRetry)
			return
		}
		t.log.Info("DC role handed on after a resource failed to start", "to", moved)
	}()
}

// escalate: a stop failed, so a resource may still run here. The node
// must not be trusted to have let go (Pacemaker fences a node whose stop
// failed): it records no release and hands leadership over, and the next
// DC fences it before it starts anything.
func (t *term) escalate(err error) {
	why := "a resource failed to stop: " + err.Error()
	t.d.cannotDirectNow(why)
	t.log.Error("a resource failed to stop: this node must not be trusted to have let go; handing leadership over without recording a release, so the next DC fences this node", "err", err)
	if terr := t.d.c.TransferLeadership(why); terr != nil {
		t.log.Error("leadership transfer failed: staying DC with a resource that failed to stop", "err", terr)
	}
}

// stopResources ends the term's resource goroutine and stops what it
// started, in reverse; it reports whether nothing may still run here.
func (t *term) stopResources() bool {
	if t.d.res == nil {
		return true
	}
	t.res.Load().stop()
	if len(t.d.res.Started()) > 0 {
		t.log.Info("stopping the resources, in reverse")
		if err := t.d.res.Stop(); err != nil {
			t.log.Error("a resource failed to stop: this node records no release; the next DC fences it", "err", err)
		}
	}
	return t.d.res.Clean()
}

// stopLeftResources runs at start-up, and when a frozen term ends: stop
// every resource of the spec (a stop of what is not running succeeds), as
// a node may run what its last run started. It reports whether the node
// is clean.
func (d *Director) stopLeftResources(why string) bool {
	if d.res == nil {
		return true
	}
	spec := d.c.FSM().Spec()
	if len(spec.Resources) == 0 && d.res.Clean() {
		return true
	}
	d.logger.Info("stopping the spec's resources, in reverse: this node is not DC", "why", why)
	if err := d.res.StopAll(spec.Resources); err != nil {
		d.logger.Error("a resource failed to stop: this node does not report its release; a DC fences it before taking over", "err", err)
	}
	return d.res.Clean()
}

// cannotDirectNow records that this node cannot direct, for why, until
// the spec changes or noDirectRetry has passed.
func (d *Director) cannotDirectNow(why string) {
	d.noDirectMu.Lock()
	d.claimFailed, d.claimFailedVersion, d.claimFailedAt = why, d.c.FSM().Spec().Version, time.Now()
	d.noDirectMu.Unlock()
	d.c.SetCannotDirect(why)
}

// resourceNotice publishes a resource's change of state.
func (d *Director) resourceNotice(name, state string, err error) {
	e := events.Event{Resource: name}
	switch state {
	case resources.StateStarted:
		e.Type, e.Message = events.ResourceStarted, "resource started"
	case resources.StateStopped:
		e.Type, e.Message = events.ResourceStopped, "resource stopped"
	case resources.StateFailed:
		e.Type, e.Message = events.ResourceFailed, "resource failed"
	case resources.StateStopFailed:
		e.Type, e.Message = events.ResourceStopFailed, "resource failed to stop: this node must be fenced before it runs anywhere else"
	default:
		return
	}
	if err != nil {
		e.Error = err.Error()
	}
	if t := d.current.Load(); t != nil {
		e.Term = t.n
	}
	d.cfg.Events.Publish(e)
}

// Resources is the spec's resources as this node runs them, for status.
func (d *Director) Resources() []resources.Status {
	if d.res == nil {
		return nil
	}
	return d.res.Status(d.c.FSM().Spec().Resources)
}

// resourceProblems lists what of spec's resources this node would not run.
func (d *Director) resourceProblems(spec rspec.Spec) []rspec.Problem {
	var out []rspec.Problem
	for i, r := range spec.Resources {
		if d.cfg.Resources == nil {
			out = append(out, rspec.Problem{Path: fmt.Sprintf("resources[%d]", i), Message: "this agent runs no resources"})
			continue
		}
		if err := d.cfg.Resources.Check(r); err != nil {
			out = append(out, rspec.Problem{Path: fmt.Sprintf("resources[%d]", i), Message: err.Error()})
		}
	}
	return out
}
