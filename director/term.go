package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/retry"
)

// barrierTimeout bounds one Barrier at the start of a term.
const barrierTimeout = 5 * time.Second

// term is one DC term: everything this node does from gaining leadership
// in Raft term n to losing it, in one place. run goes through the steps
// of establish in a fixed order, then turns every event into one call of
// handle, and revoke undoes it all in reverse, the VIPs first. Tests call
// the steps directly.
type term struct {
	d   *Director
	n   uint64
	log *slog.Logger
	// ctx is the term's: cancelled when it ends. Set by run.
	ctx context.Context
	// elected is when this node learned it leads in term n; verifiedAt is
	// when its leadership was last verified in term n (zero: never).
	elected    time.Time
	verifiedAt time.Time
	// answersChecked is when renew last checked the answer lease's table.
	answersChecked time.Time
	// contacts is, per holder that did not let go, when its last
	// successful verification was sent at the latest (takeover.go).
	contacts map[string]time.Time

	// wg counts the term's own goroutines (the membership step); revoke
	// waits for them. The health monitor and the ARP watches wait for
	// their own.
	wg            sync.WaitGroup
	stopMembers   context.CancelFunc
	stopChecks    context.CancelFunc
	mon           *health.Monitor
	healthChanged chan struct{}
	ann           *announcements

	// held is every VIP this term has placed on an interface (VIP →
	// interface); nil until the first claim. heldCopy is the same for
	// the resource goroutine, which only reads it.
	held     map[netip.Addr]string
	heldCopy atomic.Pointer[map[netip.Addr]string]
	// recheck fires evTakeover: a VIP added at run time waits for its
	// takeover.
	recheck   *time.Timer
	burstLeft int
	// moving: a move of the DC role (standby, a preferred DC that
	// preempts) is under way on its own goroutine.
	moving atomic.Bool
	// handingOff: this term cannot direct and hands leadership over
	// (direct.go); it acts on no event meanwhile.
	handingOff bool
	// fencing is the nodes a takeover's fencing runs for (fence.go).
	fenceMu sync.Mutex
	fencing map[string]bool
	burst   *time.Timer
	// res is the resource goroutine (resources.go); resWake tells it the
	// VIPs held changed.
	res     atomic.Pointer[resourceRun]
	resWake chan struct{}

	// inbox is what other goroutines ask of the term (inbox.go); done is
	// closed once the term reads it no more. phase says what a request
	// may do now.
	inbox chan request
	done  chan struct{}
	phase phase
	// handingOver: a hand-over on purpose has begun (beginHandOver):
	// balancing has stopped, and a loss of leadership keeps the VIPs
	// for the grace. resumeWanted: it failed, and the established term
	// claims and balances again.
	handingOver  bool
	resumeWanted bool
	// seen is what the term last acted on of the replicated state: a
	// change of nothing but its own records does not wake it (wakes).
	seen stateKey
	// phases times the term's way to its first announcement (phases.go).
	phases phases
}

func (d *Director) newTerm(n uint64) *term {
	t := &term{d: d, n: n, log: d.logger.With("term", n), healthChanged: make(chan struct{}, 1), burst: time.NewTimer(time.Hour), recheck: time.NewTimer(time.Hour),
		inbox: make(chan request), done: make(chan struct{})}
	t.burst.Stop()
	t.recheck.Stop()
	if d.dp != nil {
		t.ann = newAnnouncements(d.dp.ARP, t.log)
		t.ann.conflict = func(vip netip.Addr) {
			t.event(events.Event{Type: events.AddressConflict, VIP: vip.String(), Message: "another host announces a VIP this DC holds"})
		}
	}
	return t
}

// event is one reason for a DC to act.
type event int

const (
	evSpec     event = iota // the spec changed: place the VIPs, reconcile
	evMembers               // a node came or went: reconcile
	evHealth                // a real server's health changed: reconcile
	evTick                  // the periodic reconcile, repairing edits behind our back
	evBurst                 // the next gratuitous ARP of the takeover burst
	evRefresh               // the periodic gratuitous ARP
	evRenew                 // the VIP lease's renewal
	evTakeover              // a VIP waiting for its takeover may be takeable now
)

var eventNames = [...]string{"spec", "membership", "health", "tick", "burst", "refresh", "renew", "takeover"}

func (e event) String() string { return eventNames[e] }

// run is the term's lifecycle: establish, then the event loop, and revoke
// on the way out. A start that keeps failing hands leadership to another
// node; if none takes it, the start is tried again, as it is after a
// hand-over called off before the term was established.
func (t *term) run(ctx context.Context) {
	t.ctx = ctx
	t.startPhases()
	t.d.current.Store(t)
	defer t.d.current.Store(nil)
	t.event(events.Event{Type: events.DCGained, Message: "this node is now the DC"})
	defer t.event(events.Event{Type: events.DCLost, Message: "this node is no longer the DC"})
	defer t.revoke()
	// Subscribed before establish: a change committed while the term
	// starts is seen by the loop, not left for the next tick.
	members, cancelMembers := t.d.c.SubscribeMembership()
	defer cancelMembers()
	specs, cancelSpecs := t.d.c.FSM().Subscribe()
	defer cancelSpecs()
	// What the term has seen is what it saw when it subscribed: a change
	// committed during establish wakes the loop (evSpec), which acts on
	// it (a node put in standby meanwhile moves the DC).
	t.seen = keyOf(t.d.c.FSM().State(), t.d.c.Name(), t.n)
	pause := t.d.cfg.Retry
	for {
		err := t.establish(ctx)
		if err == nil {
			if !t.loop(ctx, members, specs) {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		t.giveUp(err)
		if !t.pause(ctx, pause) {
			return
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// event publishes e as this term's.
func (t *term) event(e events.Event) {
	e.Term = t.n
	t.d.cfg.Events.Publish(e)
}

// establish takes up the DC's duties, in this order:
//
//  1. Barrier: the FSM holds everything committed before this term, so
//     nothing below acts on a stale spec or node registry.
//  2. Membership: live nodes are admitted to Raft and the registry, for
//     as long as the term lasts; the fence devices' checks run too
//     (devicecheck.go).
//  3. Health checks start. A server not probed yet counts as up, so a new
//     DC keeps the servers it inherits until they fail `fall` checks.
//  4. Takeover: a VIP whose recorded holder did not let go is fenced, or
//     waited out, or taken at once, as the spec's policy says
//     (takeover.go).
//  5. Claim: verify leadership in this term, record the claim in the log,
//     program the IPVS table, move the VIPs onto their interface (with
//     the lease), announce them.
//  6. Resources: once every VIP is held, the spec's resources start in
//     order, on a goroutine of their own (resources.go).
//
// A node without a data plane stops after step 2. establish may be called
// again after it failed; steps already taken are not repeated.
func (t *term) establish(ctx context.Context) error {
	if err := t.retry(ctx, "barrier", func() error { return t.d.c.Barrier(barrierTimeout) }); err != nil {
		return err
	}
	t.phases.mark(phaseBarrier)
	t.startMembership(ctx)
	t.startDeviceChecks(ctx)
	if t.d.dp == nil {
		t.log.Info("DC without a data plane: coordinating the cluster, holding no VIP, handing leadership to a node that can direct")
		t.handingOff = true
		t.startHandOff(ctx, "this node has no data plane (a witness, or --dataplane none)")
		return nil
	}
	if can, why := t.d.c.CanDirect(); !can && t.handOff(why) {
		t.handingOff = true // the loop idles until leadership has gone
		return nil
	}
	t.startHealth()
	if err := t.awaitTakeover(ctx); err != nil {
		return fmt.Errorf("takeover: %w", err)
	}
	t.phases.mark(phaseTakeover)
	if t.handingOver {
		return nil // handing over before the claim: the loop idles, holding nothing
	}
	if err := t.arm(); err != nil {
		t.d.claimFailedNow(err)
		return err
	}
	if err := t.retry(ctx, "claim", t.claim); err != nil {
		if ctx.Err() == nil {
			t.d.claimFailedNow(err)
		}
		return err
	}
	if t.handingOver {
		return nil // a hand-over began between two attempts; it flushed what the claim placed
	}
	t.startResources()
	t.phase = established
	return nil
}

// retry runs step until it succeeds, up to GiveUpAfter attempts, pausing
// between them (doubling, up to 2 s).
func (t *term) retry(ctx context.Context, what string, step func() error) error {
	err := retry.Do(ctx, retry.Policy{Attempts: t.d.cfg.GiveUpAfter, Interval: t.d.cfg.Retry, MaxInterval: 2 * time.Second, Pause: t.pause}, func(_ context.Context, attempt int) error {
		if t.handingOver {
			return nil // nothing more to start: the duties are being handed over
		}
		err := step()
		if err != nil {
			t.log.Warn(what+" failed", "attempt", attempt, "of", t.d.cfg.GiveUpAfter, "err", err)
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("%s failed %d times: %w", what, t.d.cfg.GiveUpAfter, err)
}

// giveUp hands leadership to another voter: this node cannot do what a DC
// must.
func (t *term) giveUp(err error) {
	t.log.Error("cannot carry out the DC's duties: handing leadership to another node", "err", err)
	if t.handOff(err.Error()) {
		return
	}
	if terr := t.d.c.TransferLeadership(err.Error()); terr != nil {
		t.log.Error("leadership transfer failed: staying DC and starting over", "err", terr)
	}
}

// loop turns every event into one call of handle, and answers every
// request, until the term ends (false) or a hand-over that began before
// the term was established is called off (true: establish again).
func (t *term) loop(ctx context.Context, members, specs <-chan struct{}) (again bool) {
	var tick, refresh, renew <-chan time.Time
	if t.d.dp != nil {
		r := time.NewTicker(t.d.cfg.ReconcileInterval)
		defer r.Stop()
		tick = r.C
		l := time.NewTicker(t.d.cfg.Lease.RenewEvery())
		defer l.Stop()
		renew = l.C
		if t.d.cfg.GARPRefresh > 0 {
			g := time.NewTicker(t.d.cfg.GARPRefresh)
			defer g.Stop()
			refresh = g.C
		}
	}
	for {
		var ev event
		select {
		case <-ctx.Done():
			return false
		case r := <-t.inbox:
			t.serve(r)
			if t.phase != established && !t.handingOver && !t.handingOff {
				return true
			}
			if !t.resumeWanted {
				continue
			}
			t.resumeWanted = false
			if err := t.resume(); err != nil {
				t.log.Warn("balancing again after the failed hand-over failed", "err", err)
			}
			continue
		case <-specs:
			if !t.wakes() {
				continue // nothing but this term's own records changed
			}
			ev = evSpec
		case <-members:
			ev = evMembers
		case <-t.healthChanged:
			ev = evHealth
		case <-tick:
			ev = evTick
		case <-t.burst.C:
			ev = evBurst
		case <-refresh:
			ev = evRefresh
		case <-renew:
			ev = evRenew
		case <-t.recheck.C:
			ev = evTakeover
		}
		if err := t.handle(ev); err != nil {
			t.log.Warn("DC step failed", "event", ev.String(), "err", err)
		} else {
			t.d.touch()
		}
	}
}

// errNoDataplane: the event asks for kernel work on a node without a
// data plane.
var errNoDataplane = errors.New("no data plane")

// handle acts on one event. Every event may lead to a write to the kernel,
// so leadership in this term is verified first (invariant 2).
func (t *term) handle(ev event) error {
	if t.d.dp == nil || t.handingOff {
		return nil // membership runs on its own; nothing else to do
	}
	if t.handingOver && ev != evRenew && ev != evBurst && ev != evRefresh {
		return nil // balancing stopped; the VIPs held stay leased and announced until the successor takes them
	}
	if err := t.verify(); err != nil {
		return err
	}
	switch ev {
	case evSpec, evTakeover:
		t.maybeMove()
		return t.place()
	case evMembers, evHealth, evTick:
		if ev == evMembers {
			t.maybeMove()
		}
		return t.reconcile()
	case evBurst:
		return t.announceBurst()
	case evRefresh:
		return t.announce()
	case evRenew:
		return t.renew()
	}
	return fmt.Errorf("unknown event %d", ev)
}

// verify confirms, by a round of contact with a quorum, that this node
// still leads in this term.
//
// The verification counts from the moment it was sent, not from when the
// answers came back, as Raft's leader lease counts. Why that bounds the
// old holder for its successor (quorum.Lease.OldHolderGone): the
// verification succeeds only if a majority of voters acknowledged this
// node as leader in term n after it was sent. A voter that has granted
// its vote in a later term acknowledges no term-n leader from then on,
// and the majority that elects a successor intersects every majority of
// term n. So a verification that succeeded was sent before the successor
// was elected, and every write it allows (within the write window of the
// send) is made before elected + WriteWindow. Counted from the answers, a
// reply delayed in the network would stretch the window past the
// successor's election by that delay.
func (t *term) verify() error {
	sent := time.Now()
	if err := t.d.c.VerifyLeader(t.n); err != nil {
		return fmt.Errorf("leadership not verified: %w", err)
	}
	t.verifiedAt = sent
	t.d.feed()
	return nil
}

// allowed is asked right before every write to the kernel: a verification
// allows writes for the lease's write window only (on the monotonic
// clock), so a stall between the check and the write never yields a write
// long after the verification; past the window it verifies again.
func (t *term) allowed() error {
	if !t.verifiedAt.IsZero() && time.Since(t.verifiedAt) <= t.d.cfg.Lease.WriteWindow() {
		return nil
	}
	return t.verify()
}

// startMembership runs the membership step for the rest of the term: at
// once, on every gossip change and every MembershipInterval.
func (t *term) startMembership(ctx context.Context) {
	if t.stopMembers != nil {
		return
	}
	mctx, cancel := context.WithCancel(ctx)
	t.stopMembers = cancel
	changes, unsubscribe := t.d.c.SubscribeMembership()
	t.onMembership(mctx, changes, unsubscribe, true, func() bool {
		t.d.c.ReconcileMembers(mctx)
		return false
	})
}

// onMembership runs step on the term's goroutine group on every
// membership change and every MembershipInterval (and at once when now),
// until step reports it is done or ctx ends; it owns unsubscribe.
func (t *term) onMembership(ctx context.Context, changes <-chan struct{}, unsubscribe func(), now bool, step func() (done bool)) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer unsubscribe()
		tick := time.NewTicker(t.d.cfg.MembershipInterval)
		defer tick.Stop()
		for {
			if now && step() {
				return
			}
			now = true
			select {
			case <-ctx.Done():
				return
			case <-changes:
			case <-tick.C:
			}
		}
	}()
}

// startHealth starts the health monitor; reconcile tells it what to probe.
func (t *term) startHealth() {
	if t.mon != nil {
		return
	}
	var observe func(health.Key, time.Duration)
	if m := t.d.cfg.Metrics; m != nil {
		observe = m.Probed
	}
	t.mon = health.NewMonitor(health.MonitorConfig{Logger: t.d.logger, Dial: t.d.cfg.HealthDial, Exec: t.d.cfg.Exec, Observe: observe, OnChange: func(k health.Key, st health.State) {
		e := events.Event{Type: events.ServerUp, Service: k.Service.String(), Server: k.Server.String(), Message: "real server up"}
		if !st.Up {
			e.Type, e.Message, e.Error = events.ServerDown, "real server down", st.LastError
		}
		t.event(e)
		select {
		case t.healthChanged <- struct{}{}:
		default:
		}
	}})
	t.d.monitor.Store(t.mon)
}

func sortedVIPs(m map[netip.Addr]string) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}
