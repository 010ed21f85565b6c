package director

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/spec"
)

// The claim and what keeps it: a DC's term places the VIPs (claim, place),
// renews their lease, announces them (the burst and the refresh), and
// keeps the kernel's IPVS table in line with the spec (reconcile). Every
// write here follows a verification of leadership in the term (allowed).

// renew extends the lease of every VIP this term holds, in place. A VIP
// whose lease had lapsed (this agent was starved past it) is back on the
// interface and is announced again.
//
// At most once every answerCheckEvery it first checks that the table
// gating the VIPs' answers is intact (an operator may have flushed the
// ruleset); one found damaged is installed again, and this renewal lets
// the kernel answer again.
func (t *term) renew() error {
	if err := t.allowed(); err != nil {
		return err
	}
	if time.Since(t.answersChecked) >= answerCheckEvery {
		t.answersChecked = time.Now()
		if err := t.d.dp.RS.CheckAnswers(); err != nil {
			t.log.Error("the table that gates the VIPs' answers was damaged (ruleset flushed?): installed again and renewed; until then a dead DC would have answered until its address lifetime ended", "err", err)
		}
	}
	lapsed, err := t.d.dp.RS.Renew(t.verifiedAt)
	if t.grantedLate() {
		err = errors.Join(err, errLateGrant)
	}
	if len(lapsed) > 0 {
		t.burstLeft = t.d.cfg.GARPCount
		t.burst.Reset(0)
	}
	return err
}

// errLateGrant: a write that granted answers reached the kernel after its
// verification's window had closed; what it granted was ended.
var errLateGrant = errors.New("the agent was stalled between its verification and the write: the VIPs' answers were ended until the next verified renewal")

// grantedLate is asked right after every write that lets the kernel answer
// for the VIPs (a claim, a renewal). allowed checked the write window
// before the write, but nothing stops the process between that check and
// the kernel's commit: a DC stopped there (SIGSTOP, a stalled VM) commits
// its renewal late. The kernel still ends the answers at the renewal's
// deadline, counted from the verification (dataplane.NFTLease), which is
// what a successor waits for (quorum.Lease.OldHolderGone); but the
// element's timeout, the backstop should the wall clock be stepped back,
// then runs from the late commit. So the time is checked again once the
// write has returned: past the window and a stall's slack
// (quorum.Lease.WriteLateAfter), the answers are ended at once (the
// addresses stay, silent); the next renewal, after a fresh verification,
// grants them again.
func (t *term) grantedLate() bool {
	if time.Since(t.verifiedAt) <= t.d.cfg.Lease.WriteLateAfter() {
		return false
	}
	if err := t.d.dp.RS.SilenceAnswers(); err != nil {
		t.log.Error("ending the VIPs' answers after a late write failed: the answer lease ends them", "err", err)
	}
	t.log.Warn("a write that lets the kernel answer for the VIPs came after its verification's window (the agent was stalled): the answers are ended until the next verified renewal", "since_verification", time.Since(t.verifiedAt).Round(time.Millisecond))
	return true
}

// answerCheckEvery is how often the DC and the followers check the table
// that gates the VIPs' answers (realserver.Manager.CheckAnswers).
const answerCheckEvery = time.Second

// claim is the takeover: verify, then place. A claim that fails takes
// back what it placed: a DC that does not hold its VIPs balances nothing.
func (t *term) claim() error {
	if err := t.verify(); err != nil {
		return err
	}
	t.phases.mark(phaseVerify)
	if err := t.place(); err != nil {
		if ferr := t.d.follow(); ferr != nil {
			t.log.Error("taking back a failed claim failed", "err", ferr)
		}
		t.setHeld(nil)
		return err
	}
	return nil
}

// place programs the IPVS table for the spec, then moves its VIPs onto
// their interfaces (the table is ready when the first packet arrives) and
// starts a burst of gratuitous ARP for any VIP new to this term. A VIP new
// to this term is recorded as claimed first; one whose recorded holder
// did not let go waits for its takeover (and is checked again shortly).
// The caller has verified leadership.
func (t *term) place() error {
	if t.d.dp == nil {
		return errNoDataplane
	}
	state := t.d.c.FSM().State()
	spec := state.Spec
	if err := t.reconcile(); err != nil {
		t.log.Error("IPVS reconcile failed", "err", err)
	}
	t.phases.mark(phaseIPVS)
	hold := map[netip.Addr]bool{}
	var fresh []netip.Addr
	for _, v := range spec.VIPs {
		if _, ok := t.held[v.Address]; ok {
			hold[v.Address] = true
			continue
		}
		if ok, h, _ := t.takeable(state, v.Address); !ok {
			t.log.Warn("not placing a VIP yet: its recorded holder has not let go", "vip", v.Address, "holder", h.Node, "holder_term", h.Term, "takeover", spec.Policy.TakeoverPolicy())
			t.startFenceFor(h.Node, spec.Policy.TakeoverPolicy())
			t.recheck.Reset(takeoverRecheck)
			continue
		}
		hold[v.Address] = true
		fresh = append(fresh, v.Address)
	}
	if err := t.commitClaim(fresh); err != nil {
		return err
	}
	t.phases.mark(phaseCommit)
	if err := t.allowed(); err != nil {
		return err
	}
	if err := t.d.dp.RS.Apply(spec.VIPs, hold, t.verifiedAt); err != nil {
		return fmt.Errorf("claiming VIPs: %w", err)
	}
	// Held all the same: a late grant is silenced, not undone; the next
	// renewal grants the answers again.
	late := t.grantedLate()
	now := map[netip.Addr]string{}
	for _, v := range spec.VIPs {
		if !hold[v.Address] {
			continue
		}
		now[v.Address] = t.d.ifaceOf(v)
		if _, ok := t.held[v.Address]; !ok {
			t.log.Info("VIP claimed", "vip", v.Address, "interface", now[v.Address], "lease", t.d.cfg.Lease.Duration)
			t.event(events.Event{Type: events.VIPClaimed, VIP: v.Address.String(), Message: "VIP claimed on " + now[v.Address]})
		}
	}
	t.setHeld(now)
	t.wakeResources()
	t.ann.hold(now)
	if len(fresh) > 0 {
		t.phases.mark(phasePlace)
		t.burstLeft = t.d.cfg.GARPCount
		t.burst.Reset(0)
	}
	if late {
		return errLateGrant
	}
	return nil
}

// takeoverRecheck is how soon a VIP waiting for its takeover is looked at
// again.
const takeoverRecheck = 500 * time.Millisecond

// setHeld records what this term holds.
func (t *term) setHeld(held map[netip.Addr]string) {
	t.held = held
	c := maps.Clone(held)
	t.heldCopy.Store(&c)
}

// heldNow is what this term holds, for other goroutines.
func (t *term) heldNow() map[netip.Addr]string {
	if p := t.heldCopy.Load(); p != nil {
		return *p
	}
	return nil
}

// announceBurst sends the next round of the takeover burst.
func (t *term) announceBurst() error {
	if t.burstLeft <= 0 {
		return nil
	}
	if err := t.announce(); err != nil {
		return err
	}
	t.burstLeft--
	t.reportPhases()
	t.log.Info("VIPs announced (gratuitous ARP, or unsolicited neighbour advertisement for IPv6)", "burst_left", t.burstLeft)
	if t.burstLeft > 0 {
		t.burst.Reset(t.d.cfg.GARPSpacing)
	}
	return nil
}

// announce sends one gratuitous ARP (for IPv6, an unsolicited neighbour
// advertisement) for every VIP this term holds. The caller has verified
// leadership.
func (t *term) announce() error {
	var errs []error
	for _, vip := range sortedVIPs(t.held) {
		if err := t.allowed(); err != nil {
			return err
		}
		if err := t.d.dp.ARP.Gratuitous(t.held[vip], vip); err != nil {
			errs = append(errs, fmt.Errorf("gratuitous ARP for %s: %w", vip, err))
		} else {
			t.d.garps.Add(1)
		}
	}
	return errors.Join(errs...)
}

// reconcile brings the kernel table in line with the spec, the online
// nodes and the health checks, by diff. The caller has verified
// leadership in this term.
func (t *term) reconcile() error {
	d := t.d
	if t.handingOver {
		return nil // balancing stopped for the hand-over
	}
	d.syncAs(dataplane.SyncMaster)
	state := d.c.FSM().State()
	online := d.c.OnlineNodes()
	isOnline := func(n string) bool { return online[n] }
	var healthOf func(spec.ServiceKey, netip.AddrPort) bool
	if t.mon != nil {
		t.mon.Set(checkTargets(state, isOnline))
		states := t.mon.States()
		healthOf = func(k spec.ServiceKey, a netip.AddrPort) bool {
			st, ok := states[health.Key{Service: k, Server: a}]
			return !ok || st.Up
		}
	}
	stopping := d.c.StoppingNodes()
	desired := Desired(state, isOnline, func(n string) bool { return stopping[n] }, healthOf)
	start := time.Now()
	if m := d.cfg.Metrics; m != nil {
		defer func() { m.Reconciled(time.Since(start)) }()
	}
	current, err := d.dp.IPVS.Services()
	if err != nil {
		return fmt.Errorf("reading IPVS table: %w", err)
	}
	ops := dataplane.Plan(current, desired, d.owned(state.Spec))
	d.reconciles.Add(1)
	if len(ops) == 0 {
		return nil
	}
	n, err := dataplane.Apply(d.dp.IPVS, ops, t.allowed)
	d.writes.Add(uint64(n))
	for _, o := range ops[:n] {
		t.log.Info("IPVS "+o.Kind, "service", o.Service.Key.String(), "real_server", destString(o.Dest))
	}
	if err != nil {
		return fmt.Errorf("IPVS reconcile: %w", err)
	}
	return nil
}

// checkTargets lists the real servers to health-check: every backend of
// every service that has a check. The fallback server is not checked, as
// with ldirectord.
func checkTargets(state fsm.State, online func(string) bool) map[health.Key]health.Spec {
	out := map[health.Key]health.Spec{}
	for _, svc := range state.Spec.Services {
		if svc.HealthCheck == nil {
			continue
		}
		hc := *svc.HealthCheck
		// A spec in the log from before the floors runs at the floor.
		hc.Interval = max(hc.Interval, spec.MinInterval(hc.Type))
		for _, b := range state.Backends(svc, online) {
			out[health.Key{Service: svc.Key(), Server: b.AddrPort()}] = health.Spec{
				Check:  hc,
				Target: health.Target{Addr: b.AddrPort(), VIP: netip.AddrPortFrom(svc.VIP, svc.Port)},
			}
		}
	}
	return out
}

func destString(d dataplane.Dest) string {
	if !d.Addr.IsValid() {
		return ""
	}
	return d.AddrPort().String()
}
