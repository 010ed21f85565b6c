package director

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
)

// Dataplane is the kernel side a DC drives: where the VIPs live (the
// real-server manager), the IPVS table and ARP. A node without one
// (--dataplane none) coordinates the cluster but holds no VIP.
type Dataplane struct {
	RS   *realserver.Manager
	IPVS dataplane.IPVS
	ARP  dataplane.ARP
	// Sync, when set, runs IPVS connection synchronisation (sync.go).
	Sync *ConnSync
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
	// CopyWait bounds how long a DC about to hand over on purpose waits
	// for every other node that can direct to hold a copy of its
	// connections (IPVS connection sync: planned.go); negative: no wait.
	CopyWait time.Duration
	// CopyStall ends that wait sooner when no copy arrived anywhere for
	// this long.
	CopyStall time.Duration
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
	if c.CopyWait == 0 {
		c.CopyWait = DefaultCopyWait
	}
	if c.CopyStall == 0 {
		c.CopyStall = DefaultCopyStall
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
	c.RegisterError("director.not-dc", ErrNotDC)
	c.Handle(releaseOp, d.serveRelease)
	c.Handle(fenceOp, d.serveFence)
	c.Handle(fenceConfirmOp, d.serveConfirm)
	c.Handle(checkSpecOp, d.serveCheckSpec)
	c.Handle(checkProgramsOp, d.serveCheckPrograms)
	c.Handle(connCopiesOp, d.serveConnCopies)
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
// A hand-over first waits, still balancing, until the other nodes hold
// copies of this DC's connections (awaitCopies): the term keeps renewing
// its lease meanwhile, as the wait runs here, not on its goroutine.
func (d *Director) handOver(begun bool) {
	kind := reqHandOverFailed
	if begun {
		kind = reqHandOver
		d.awaitCopies()
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
	// TakeoverPhase is told how long one phase of a takeover took, from
	// the old DC's last sign of life to this one's first announcement
	// (phases.go).
	TakeoverPhase(phase string, d time.Duration)
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

func (d *Director) ifaceOf(v spec.VIP) string {
	if v.Interface != "" {
		return v.Interface
	}
	return d.dp.RS.DefaultInterface()
}
