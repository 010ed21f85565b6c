package director

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/realserver"
)

// Cluster is what the director needs from the cluster node.
type Cluster interface {
	Leadership() (<-chan cluster.LeaderEvent, func())
	Barrier(timeout time.Duration) error
	VerifyLeader(term uint64) error
	FSM() *fsm.FSM
	OnlineNodes() map[string]bool
	SubscribeMembership() (<-chan struct{}, func())
	// HandingOver is true while this node gives its DC duties away on
	// purpose; a node that loses them (quorum lost) is not handing over.
	HandingOver() bool
	// OnHandOver registers a function called with true just before a
	// hand-over begins and with false if it failed.
	OnHandOver(fn func(begun bool))
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
	// HandOverGrace bounds how long a DC that hands its duties over on
	// purpose keeps the VIPs after losing leadership: it lets go as soon
	// as it has seen the successor announce every VIP (gratuitous ARP), so
	// clients never find nobody holding a VIP. Balancing stops at once. A
	// DC that loses quorum releases at once, without a grace.
	HandOverGrace time.Duration
	// HealthDial opens the health checks' connections (nil: a plain
	// net.Dialer); tests confine them to loopback.
	HealthDial health.DialFunc
	Logger     *slog.Logger
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
	if c.HandOverGrace == 0 {
		c.HandOverGrace = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Director runs on every node and acts only while the node is the
// verified DC.
type Director struct {
	c      Cluster
	rs     *realserver.Manager
	ipvs   IPVS
	arp    ARP
	cfg    Config
	logger *slog.Logger

	writes atomic.Uint64 // IPVS writes since start
	// ipvsMu orders IPVS writes: a reconcile and the flush that begins a
	// hand-over never interleave.
	ipvsMu sync.Mutex
	// resume asks the DC loop to reconcile after a failed hand-over.
	resume chan struct{}

	// monitor runs the health checks while this node is DC; nil otherwise.
	monitor atomic.Pointer[health.Monitor]
}

// Health returns the health of every checked real server while this node
// is DC, and nil otherwise.
func (d *Director) Health() map[health.Key]health.State {
	if m := d.monitor.Load(); m != nil {
		return m.States()
	}
	return nil
}

// New returns a Director.
func New(c Cluster, rs *realserver.Manager, ipvs IPVS, arp ARP, cfg Config) *Director {
	cfg.defaults()
	d := &Director{c: c, rs: rs, ipvs: ipvs, arp: arp, cfg: cfg, logger: cfg.Logger.With("component", "director"), resume: make(chan struct{}, 1)}
	c.OnHandOver(d.handOver)
	return d
}

// handOver runs on the goroutine that hands DC duties over. Balancing
// stops before the successor can be elected, so no instant has two
// directors forwarding to each other (invariant 6); the VIPs stay until
// the successor announces them (see lead). If the hand-over fails, the DC
// loop rebuilds its table.
func (d *Director) handOver(begun bool) {
	if begun {
		d.logger.Info("handing over: balancing stops; this node's own service answers until the successor takes the VIPs")
		d.flush(d.c.FSM().Spec())
		return
	}
	d.logger.Warn("hand-over failed: balancing again")
	select {
	case d.resume <- struct{}{}:
	default:
	}
}

// Writes returns the number of IPVS writes made since start.
func (d *Director) Writes() uint64 { return d.writes.Load() }

// Table returns the kernel's IPVS services for the VIPs this node manages.
func (d *Director) Table() ([]Service, error) {
	all, err := d.ipvs.Services()
	if err != nil {
		return nil, err
	}
	owned := d.owned(d.c.FSM().Spec())
	var out []Service
	for _, s := range all {
		if owned[s.Key.VIP] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Run follows leadership until ctx ends. On the way out it gives back
// whatever it held: IPVS services for its VIPs, and the VIPs to lo.
func (d *Director) Run(ctx context.Context) error {
	leaders, cancelLeaders := d.c.Leadership()
	defer cancelLeaders()
	specs, cancelSpecs := d.c.FSM().Subscribe()
	defer cancelSpecs()

	// A node is never DC until proven: drop IPVS rules a previous run may
	// have left for our VIPs (only the DC may balance them) and keep the
	// VIPs on lo.
	d.follow()

	var run *termRun
	defer func() { run.stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-leaders:
			// Whatever the event, the previous term's duties end first:
			// two "leader" events in a row mean lost and regained.
			run.stop()
			run = nil
			if ev.IsLeader {
				run = d.startTerm(ctx, ev.Term)
			} else {
				d.follow()
			}
		case <-specs:
			if run == nil {
				d.follow()
			}
		}
	}
}

// termRun is the DC loop of one Raft term.
type termRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Director) startTerm(ctx context.Context, term uint64) *termRun {
	lctx, cancel := context.WithCancel(ctx)
	r := &termRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		d.lead(lctx, term)
	}()
	return r
}

// stop ends the term's loop and waits until it has released what it held.
func (r *termRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// follow is the state of a node that is not DC: VIPs on lo, no IPVS
// services for them.
func (d *Director) follow() {
	spec := d.c.FSM().Spec()
	if err := d.rs.Apply(spec.VIPs, false); err != nil {
		d.logger.Error("placing VIPs on lo failed", "err", err)
	}
	d.flush(spec)
}

// owned is the set of VIPs whose IPVS services raftlb manages: those in
// the spec and those the real-server manager still carries.
func (d *Director) owned(spec fsm.Spec) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, v := range spec.VIPs {
		out[v.Address] = true
	}
	for _, a := range d.rs.ManagedVIPs() {
		out[a] = true
	}
	return out
}

// flush deletes the IPVS services of our VIPs. Deleting never claims
// anything, so it needs no leadership.
func (d *Director) flush(spec fsm.Spec) {
	d.ipvsMu.Lock()
	defer d.ipvsMu.Unlock()
	cur, err := d.ipvs.Services()
	if err != nil {
		d.logger.Error("reading IPVS table failed", "err", err)
		return
	}
	owned := d.owned(spec)
	for _, s := range cur {
		if !owned[s.Key.VIP] {
			continue
		}
		if err := d.ipvs.DelService(s.Key); err != nil {
			d.logger.Error("removing IPVS service failed", "service", s.Key.String(), "err", err)
			continue
		}
		d.writes.Add(1)
		d.logger.Info("IPVS service removed: not DC", "service", s.Key.String())
	}
}

// lead is the DC's loop for one term.
func (d *Director) lead(ctx context.Context, term uint64) {
	log := d.logger.With("term", term)
	ann := newAnnouncements(d.arp, log, d.c.HandingOver)
	defer func() {
		if d.c.HandingOver() && d.cfg.HandOverGrace > 0 {
			// The successor was elected on our request; balancing
			// stopped before that (handOver). Keep the VIPs on the
			// interface until the successor has announced them, so
			// clients whose ARP caches still point here are answered (by
			// this node's own service) instead of finding nobody. Two
			// nodes answer ARP for this bounded window.
			log.Info("handing over: keeping the VIPs until the successor announces them", "at_most", d.cfg.HandOverGrace)
			start := time.Now()
			switch {
			case ann.waitSuccessor(d.cfg.HandOverGrace):
				log.Info("the successor announced every VIP", "after", time.Since(start).Round(time.Millisecond))
			case !d.c.HandingOver():
				log.Warn("hand-over called off without a successor: releasing the VIPs at once")
			default:
				log.Warn("no successor announced every VIP within the grace; releasing them anyway", "grace", d.cfg.HandOverGrace)
			}
		}
		d.follow()
		log.Info("DC duties released: VIPs back on lo, IPVS services removed")
		ann.stop()
	}()
	// Barrier: act on everything committed before this term.
	for {
		err := d.c.Barrier(5 * time.Second)
		if err == nil {
			break
		}
		log.Warn("barrier failed; retrying", "err", err)
		if !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}

	// Fencing goes here: before taking the VIPs over, a node that holds
	// them and cannot be proven dead is fenced (STONITH), and the takeover
	// waits for the fence to succeed. The fencing issue adds that step.

	// Health checks run while this node is DC. A server not yet probed
	// counts as up, so a new DC keeps the healthy servers it inherits.
	healthChanged := make(chan struct{}, 1)
	mon := health.NewMonitor(health.MonitorConfig{Logger: d.logger, Dial: d.cfg.HealthDial, OnChange: func(health.Key, health.State) {
		select {
		case healthChanged <- struct{}{}:
		default:
		}
	}})
	d.monitor.Store(mon)
	defer func() {
		d.monitor.Store(nil)
		mon.Stop()
	}()

	membership, cancelMembership := d.c.SubscribeMembership()
	defer cancelMembership()
	specs, cancelSpecs := d.c.FSM().Subscribe()
	defer cancelSpecs()
	reconcile := time.NewTicker(d.cfg.ReconcileInterval)
	defer reconcile.Stop()
	var refresh <-chan time.Time
	if d.cfg.GARPRefresh > 0 {
		t := time.NewTicker(d.cfg.GARPRefresh)
		defer t.Stop()
		refresh = t.C
	}
	burst := time.NewTimer(0)
	defer burst.Stop()
	burstLeft := 0
	held := map[netip.Addr]string{} // VIP → interface

	claim := func() bool {
		if err := d.c.VerifyLeader(term); err != nil {
			log.Warn("not claiming: leadership not verified", "err", err)
			return false
		}
		spec := d.c.FSM().Spec()
		d.reconcile(log, spec)
		if err := d.rs.Apply(spec.VIPs, true); err != nil {
			log.Error("claiming VIPs failed", "err", err)
			return false
		}
		fresh := false
		now := map[netip.Addr]string{}
		for _, v := range spec.VIPs {
			now[v.Address] = d.ifaceOf(v)
			if _, ok := held[v.Address]; !ok {
				fresh = true
				log.Info("VIP claimed", "vip", v.Address, "interface", now[v.Address])
			}
		}
		held = now
		ann.hold(held)
		if fresh {
			burstLeft = d.cfg.GARPCount
			burst.Reset(0)
		}
		return true
	}
	for !claim() {
		if !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-specs:
			claim()
		case <-membership:
			if d.c.VerifyLeader(term) == nil {
				d.reconcile(log, d.c.FSM().Spec())
			}
		case <-healthChanged:
			if d.c.VerifyLeader(term) == nil {
				d.reconcile(log, d.c.FSM().Spec())
			}
		case <-reconcile.C:
			if d.c.VerifyLeader(term) == nil {
				d.reconcile(log, d.c.FSM().Spec())
			}
		case <-d.resume:
			if d.c.VerifyLeader(term) == nil {
				d.reconcile(log, d.c.FSM().Spec())
			}
		case <-burst.C:
			if burstLeft > 0 && d.sendGARP(log, term) {
				log.Info("VIPs announced (gratuitous ARP, or unsolicited neighbour advertisement for IPv6)", "burst_left", burstLeft-1)
				burstLeft--
				if burstLeft > 0 {
					burst.Reset(d.cfg.GARPSpacing)
				}
			}
		case <-refresh:
			d.sendGARP(log, term)
		}
	}
}

func (d *Director) ifaceOf(v fsm.VIP) string {
	if v.Interface != "" {
		return v.Interface
	}
	return d.rs.DefaultInterface()
}

// sendGARP announces every VIP once, after verifying leadership.
func (d *Director) sendGARP(log *slog.Logger, term uint64) bool {
	if err := d.c.VerifyLeader(term); err != nil {
		log.Warn("no gratuitous ARP: leadership not verified", "err", err)
		return false
	}
	for _, v := range d.c.FSM().Spec().VIPs {
		if err := d.arp.Gratuitous(d.ifaceOf(v), v.Address); err != nil {
			log.Error("gratuitous ARP failed", "vip", v.Address, "err", err)
		}
	}
	return true
}

// reconcile brings the kernel table in line with the spec by diff. The
// caller has verified leadership for this term.
func (d *Director) reconcile(log *slog.Logger, spec fsm.Spec) {
	d.ipvsMu.Lock()
	defer d.ipvsMu.Unlock()
	if d.c.HandingOver() {
		return // balancing stopped for the hand-over
	}
	state := d.c.FSM().State()
	online := d.c.OnlineNodes()
	isOnline := func(n string) bool { return online[n] }
	var healthOf func(fsm.ServiceKey, netip.AddrPort) bool
	if mon := d.monitor.Load(); mon != nil {
		mon.Set(checkTargets(state, isOnline))
		states := mon.States()
		healthOf = func(k fsm.ServiceKey, a netip.AddrPort) bool {
			st, ok := states[health.Key{Service: k, Server: a}]
			return !ok || st.Up
		}
	}
	desired := Desired(state, isOnline, healthOf)
	current, err := d.ipvs.Services()
	if err != nil {
		log.Error("reading IPVS table failed", "err", err)
		return
	}
	ops := plan(current, desired, d.owned(spec))
	if len(ops) == 0 {
		return
	}
	n, err := apply(d.ipvs, ops)
	d.writes.Add(uint64(n))
	for _, o := range ops[:n] {
		log.Info("IPVS "+o.kind, "service", o.svc.Key.String(), "real_server", destString(o.dest))
	}
	if err != nil {
		log.Error("IPVS reconcile failed", "err", err)
	}
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
		for _, b := range cluster.Backends(svc, state, online) {
			a := netip.AddrPortFrom(b.Address, b.Port)
			out[health.Key{Service: svc.Key(), Server: a}] = health.Spec{
				Check:  *svc.HealthCheck,
				Target: health.Target{Addr: a, VIP: netip.AddrPortFrom(svc.VIP, svc.Port)},
			}
		}
	}
	return out
}

func destString(d Dest) string {
	if !d.Addr.IsValid() {
		return ""
	}
	return d.id().String()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ErrNoKernel is returned by callers that need a kernel data plane when the
// agent runs with --dataplane none.
var ErrNoKernel = errors.New("this agent runs with --dataplane none: it has no kernel data plane")
