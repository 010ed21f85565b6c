package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/resources"
)

// Cluster is what the director needs from the cluster node.
type Cluster interface {
	Leadership() (<-chan cluster.LeaderEvent, func())
	Barrier(timeout time.Duration) error
	VerifyLeader(term uint64) error
	FSM() *fsm.FSM
	OnlineNodes() map[string]bool
	// StoppingNodes lists the nodes whose agents are stopping: drained.
	StoppingNodes() map[string]bool
	SubscribeMembership() (<-chan struct{}, func())
	// ReconcileMembers admits live nodes to Raft and promotes non-voters;
	// only the DC calls it.
	ReconcileMembers(ctx context.Context)
	// TransferLeadership gives the DC role to another voter because this
	// node cannot carry out its duties (reason says why).
	TransferLeadership(reason string) error
	// OnHandOver registers a function called with true just before a
	// hand-over on purpose begins and with false if it failed.
	OnHandOver(fn func(begun bool))
	// Name is this node's name.
	Name() string
	// Commit commits a command on the DC (VIP holders, fencing records).
	Commit(t fsm.CommandType, payload any) (uint64, error)
	// Leader is the node this one knows as DC ("" none).
	Leader() string
	// CanDirect is whether this node can hold the VIPs (and why not);
	// SetCannotDirect tells the peers it cannot ("" : it can again).
	// Directors lists the live voters that can; TransferLeadershipTo
	// hands leadership to one.
	CanDirect() (bool, string)
	SetCannotDirect(reason string)
	Directors() []string
	TransferLeadershipTo(to, reason string) error
	// MoveDC hands the DC role, gracefully, to a node that can direct.
	MoveDC(ctx context.Context, to string) (string, error)
	// LiveMembers lists the live members; CallNode asks one an RPC
	// operation.
	LiveMembers() map[string]bool
	CallNode(ctx context.Context, name, op string, req, resp any) error
	// Handle registers an RPC operation; CallDC asks the DC one.
	Handle(op string, h cluster.Handler)
	CallDC(ctx context.Context, op string, req, resp any) error
}

// Dataplane is the kernel side a DC drives: where the VIPs live (the
// real-server manager), the IPVS table and ARP. A node without one
// (--dataplane none) coordinates the cluster but holds no VIP.
type Dataplane struct {
	RS   *realserver.Manager
	IPVS dataplane.IPVS
	ARP  dataplane.ARP
}

// Config tunes the director. Zero fields take the defaults.
type Config struct {
	// GARPCount gratuitous ARPs are sent per VIP on takeover, GARPSpacing
	// apart (keepalived's garp_master_repeat).
	GARPCount   int
	GARPSpacing time.Duration
	// GARPRefresh repeats one gratuitous ARP per VIP while DC, so a
	// neighbour that missed the burst converges (garp_master_refresh);
	// negative disables it.
	GARPRefresh time.Duration
	// ReconcileInterval re-reads the kernel table even without a change,
	// repairing anything edited behind raftlb's back.
	ReconcileInterval time.Duration
	// MembershipInterval re-checks gossip against the Raft configuration
	// even without a gossip event.
	MembershipInterval time.Duration
	// HandOverGrace bounds how long a DC that hands its duties over on
	// purpose keeps the VIPs after losing leadership: it lets go as soon
	// as it has seen the successor announce every VIP (gratuitous ARP), so
	// clients never find nobody holding a VIP. Balancing stops at once. A
	// DC that loses quorum releases at once, without a grace.
	HandOverGrace time.Duration
	// Retry is the pause between attempts of a step of the term's start
	// that failed (barrier, claim); it doubles up to 2 s. After
	// GiveUpAfter failed attempts the node hands leadership to another
	// voter instead of retrying on.
	Retry       time.Duration
	GiveUpAfter int
	// Lease is the VIP lease; the data plane's real-server manager must
	// use the same. Zero takes quorum.DefaultLease.
	Lease quorum.Lease
	// AuditInterval is how often a node that is not DC checks that it
	// holds no VIP on an interface and no IPVS service for one.
	AuditInterval time.Duration
	// HealthDial opens the health checks' connections (nil: a plain
	// net.Dialer); tests confine them to loopback.
	HealthDial health.DialFunc
	// Watchdog arms the machine's watchdog for a term that takes the
	// VIPs (watchdog.go); nil: none.
	Watchdog func() (Watchdog, error)
	// Metrics receives what the director measures (metrics.Observer);
	// nil: nothing.
	Metrics Metrics
	// Events receives what the director does (events.Bus); nil drops it.
	Events *events.Bus
	// Exec is this node's policy for the spec's exec health checks (the
	// directories their programs may come from, the user, the number at
	// once); nil runs none.
	Exec *health.Exec
	// Fencer runs fence agents for a takeover with policy fence and for
	// an operator's raftlb fence; nil: this agent cannot fence.
	Fencer Fencer
	// Resources runs the spec's resources while this node is DC; nil:
	// this agent runs none (and a spec with resources is refused).
	Resources *resources.Group
	Logger    *slog.Logger
}

func (c *Config) defaults() {
	if c.GARPCount == 0 {
		c.GARPCount = 3
	}
	if c.GARPSpacing == 0 {
		c.GARPSpacing = 100 * time.Millisecond
	}
	if c.GARPRefresh == 0 {
		c.GARPRefresh = 5 * time.Second
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 5 * time.Second
	}
	if c.MembershipInterval == 0 {
		c.MembershipInterval = time.Second
	}
	if c.HandOverGrace == 0 {
		c.HandOverGrace = 3 * time.Second
	}
	if c.Retry == 0 {
		c.Retry = 100 * time.Millisecond
	}
	if c.GiveUpAfter == 0 {
		c.GiveUpAfter = 5
	}
	if c.Lease.Duration == 0 {
		c.Lease.Duration = quorum.DefaultLease
	}
	if c.AuditInterval == 0 {
		c.AuditInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Director runs on every node and acts only while the node is the
// verified DC: each Raft term in which it leads is one term (term.go).
type Director struct {
	c      Cluster
	dp     *Dataplane // nil: no data plane
	cfg    Config
	logger *slog.Logger

	// startedUp is closed once Run has done its start-up cleanup (what the
	// last run left stopped, the VIPs on lo, no IPVS rules): StartedUp.
	startedUp chan struct{}

	beat       atomic.Int64  // when the director last showed it works (Beat)
	garps      atomic.Uint64 // gratuitous ARPs (IPv6: neighbour advertisements) sent
	writes     atomic.Uint64 // IPVS writes since start
	reconciles atomic.Uint64 // table comparisons since start

	// monitor runs the health checks while this node is DC; nil otherwise.
	monitor atomic.Pointer[health.Monitor]
	// current is the running term, if any: requests for it go to its
	// inbox (inbox.go).
	current atomic.Pointer[term]
	// released is what this node let go of without being able to record
	// it (it had lost quorum, or its agent restarted), for the DC to
	// record.
	released releaseReport
	// fenceFailures counts the fencings of a takeover that failed.
	fenceFailures atomic.Uint64
	// frozen is a former term's VIPs kept under no_quorum: freeze;
	// stopping says Run is on its way out (a term then never freezes).
	frozen   freezer
	stopping atomic.Bool
	// wd is the armed watchdog, if any.
	wd atomic.Pointer[Watchdog]
	// claimFailed is why this node's last claim failed, for the spec
	// version it failed on (direct.go).
	noDirectMu         sync.Mutex
	claimFailed        string
	claimFailedVersion uint64
	claimFailedAt      time.Time
	// res is this node's resources (nil: it runs none).
	res *resources.Group
}

// New returns a Director. dp nil means the node has no data plane.
func New(c Cluster, dp *Dataplane, cfg Config) *Director {
	cfg.defaults()
	d := &Director{c: c, dp: dp, cfg: cfg, logger: cfg.Logger.With("component", "director"), startedUp: make(chan struct{})}
	if cfg.Resources != nil && dp != nil {
		d.res = cfg.Resources
		d.res.Attach(d.logger, d.resourceNotice)
	}
	c.OnHandOver(d.handOver)
	c.Handle(releaseOp, d.serveRelease)
	c.Handle(fenceOp, d.serveFence)
	c.Handle(fenceConfirmOp, d.serveConfirm)
	c.Handle(checkSpecOp, d.serveCheckSpec)
	c.Handle(checkProgramsOp, d.serveCheckPrograms)
	return d
}

// StartedUp is closed once Run has cleaned up after the last run: the
// resources it left stopped, the VIPs back on lo, its IPVS rules gone. A
// supervisor is told the agent is ready only after it (READY=1).
func (d *Director) StartedUp() <-chan struct{} { return d.startedUp }

// Health returns the health of every checked real server while this node
// is DC, and nil otherwise.
func (d *Director) Health() map[health.Key]health.State {
	if m := d.monitor.Load(); m != nil {
		return m.States()
	}
	return nil
}

// handOver is called by the cluster on the goroutine that hands DC duties
// over: just before the transfer (begun), and after one that failed. It
// asks the live term (beginHandOver, handOverFailed) and returns once the
// term has acted: balancing has stopped before a successor can be elected.
func (d *Director) handOver(begun bool) {
	kind := reqHandOverFailed
	if begun {
		kind = reqHandOver
	}
	if a := d.ask(context.Background(), request{kind: kind}); a.err != nil && begun {
		d.logger.Info("handing over with no DC term here: nothing to stop", "err", a.err)
	}
}

// Metrics receives the director's measurements.
type Metrics interface {
	// Reconciled is told how long one comparison of the kernel's IPVS
	// table with the spec took, with the writes it made.
	Reconciled(time.Duration)
	// Probed is told how long one health probe of a real server took.
	Probed(health.Key, time.Duration)
}

// GARPs returns the gratuitous ARPs (for IPv6, unsolicited neighbour
// advertisements) sent since start.
func (d *Director) GARPs() uint64 { return d.garps.Load() }

// Beat is when the director last showed that it works: a node that is
// not DC each audit tick, a DC each event its term handled (the lease's
// renewals at least every RenewEvery). A hung agent stops beating; the
// systemd watchdog is fed only while it beats.
func (d *Director) Beat() time.Time { return time.Unix(0, d.beat.Load()) }

func (d *Director) touch() { d.beat.Store(time.Now().UnixNano()) }

// Writes returns the number of IPVS writes made since start.
func (d *Director) Writes() uint64 { return d.writes.Load() }

// Reconciles returns how many times the DC compared its table with the
// kernel's since start, whether that wrote anything or not.
func (d *Director) Reconciles() uint64 { return d.reconciles.Load() }

// Table returns the kernel's IPVS services for the VIPs this node manages.
func (d *Director) Table() ([]dataplane.Service, error) {
	if d.dp == nil {
		return nil, dataplane.ErrNoKernel
	}
	all, err := d.dp.IPVS.Services()
	if err != nil {
		return nil, err
	}
	owned := d.owned(d.c.FSM().Spec())
	var out []dataplane.Service
	for _, s := range all {
		if owned[s.Key.VIP] {
			out = append(out, s)
		}
	}
	return out, nil
}

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
	err := d.dp.RS.Apply(spec.VIPs, nil)
	if err != nil {
		err = fmt.Errorf("placing VIPs on lo: %w", err)
	}
	return errors.Join(err, d.flush(spec))
}

// owned is the set of VIPs whose IPVS services raftlb manages: those in
// the spec and those the real-server manager still carries.
func (d *Director) owned(spec fsm.Spec) map[netip.Addr]bool {
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
func (d *Director) flush(spec fsm.Spec) error {
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

func (d *Director) ifaceOf(v fsm.VIP) string {
	if v.Interface != "" {
		return v.Interface
	}
	return d.dp.RS.DefaultInterface()
}
