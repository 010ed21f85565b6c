package director

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/spec"
)

// fakeFencer answers fencings from a script: each call takes the next
// outcome (the last one repeats), and records the node.
type fakeFencer struct {
	mu       sync.Mutex
	outcomes []fencing.Outcome
	fenced   []string
	validate error
	monitor  error
	checks   []string
}

func (f *fakeFencer) Fence(_ context.Context, _ spec.Fencing, node, _ string) fencing.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fenced = append(f.fenced, node)
	out := fencing.Outcome{Success: true, Level: 1, Device: "pdu", Attempts: 1}
	if len(f.outcomes) > 0 {
		out = f.outcomes[0]
		if len(f.outcomes) > 1 {
			f.outcomes = f.outcomes[1:]
		}
	}
	return out
}

func (f *fakeFencer) Validate(_ context.Context, d spec.FenceDevice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, "validate-all "+d.Name)
	return f.validate
}

func (f *fakeFencer) Monitor(_ context.Context, d spec.FenceDevice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, "monitor "+d.Name)
	return f.monitor
}

func (f *fakeFencer) set(outcomes ...fencing.Outcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomes = outcomes
}

func (f *fakeFencer) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.fenced...)
}

func (f *fakeFencer) checkCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.checks...)
}

var failed = fencing.Outcome{Level: 1, Device: "pdu", Attempts: 3, ExitCode: 1, Output: "Failed: Unable to connect", Err: errors.New("level 1 device pdu: exit status 1")}

// withTakeover is squid with a takeover policy and a fence device for m40.
func withTakeover(policy string) spec.Spec {
	s := squid("rr")
	s.Policy.Takeover = policy
	s.Fencing = spec.Fencing{Devices: []spec.FenceDevice{{
		Name: "pdu", Agent: "fence_apc_snmp", Hosts: map[string]string{"m40": "4"}, Action: spec.FenceOff, Timeout: time.Minute,
	}}}
	return s
}

// heldByM40 records that m40 claimed the VIP in term 1 and never let go.
func (w *world) heldByM40() {
	w.c.apply(fsm.CmdClaimVIPs, fsm.ClaimVIPs{Node: "m40", Term: 1, VIPs: []netip.Addr{vip}, At: time.Now()})
}

func (w *world) holder() fsm.Holder { return w.c.fsm.State().Holders[vip] }

func fenceWorld(t *testing.T, policy string, mod func(*Config)) (*world, *fakeFencer) {
	f := &fakeFencer{}
	w := newWorld(t, func(c *Config) {
		c.Fencer = f
		if mod != nil {
			mod(c)
		}
	})
	w.c.setSpec(withTakeover(policy))
	w.heldByM40()
	return w, f
}

// TestTakeoverFenceClaimsOnlyAfterTheFence: with takeover fence a new DC
// does not put on its interface a VIP whose holder did not let go; a
// failed fence means no takeover and is tried again; once a fence
// succeeds (committed), the VIP is claimed, in this term, and the history
// holds the failure and the success in order.
func TestTakeoverFenceClaimsOnlyAfterTheFence(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverFence, nil)
	f.set(failed, fencing.Outcome{Success: true, Level: 1, Device: "pdu", Attempts: 1})
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the first fence to fail", func() bool {
		h := w.c.fsm.State().FenceHistory
		return len(h) >= 1 && h[0].Result == fsm.FenceFailed
	})
	if w.has("eth0") || w.holder().Node != "m40" {
		t.Fatalf("after a failed fence: VIP on eth0 %v, holder %+v; want no takeover", w.has("eth0"), w.holder())
	}
	// The retry (after fenceBackoff) succeeds, and the VIP is claimed.
	testkit.WaitFor(t, "the VIP claimed after the fence", func() bool { return w.has("eth0") })
	// The fencing goroutine logs a failure before it tries again, so the
	// claim that followed the retry comes after the line.
	if !strings.Contains(w.logs.String(), "level=ERROR msg=\"fencing failed") {
		t.Error("the failed fence is not logged as an error")
	}
	h := w.holder()
	if h.Node != "m30" || h.Term != 2 || h.Released {
		t.Errorf("holder %+v, want m30 in term 2", h)
	}
	hist := w.c.fsm.State().FenceHistory
	if len(hist) != 2 || hist[0].Result != fsm.FenceFailed || hist[1].Result != fsm.FenceSuccess || hist[1].Target != "m40" || hist[1].By != "m30" || hist[1].Term != 2 {
		t.Errorf("history %+v, want a failure then a success, of m40 by m30 in term 2", hist)
	}
	if hist[0].Output == "" || hist[0].ExitCode != 1 || hist[0].Attempts != 3 {
		t.Errorf("the failure's record %+v lacks the agent's exit, attempts or output", hist[0])
	}
	if calls := f.calls(); len(calls) != 2 || calls[0] != "m40" {
		t.Errorf("fence calls %v, want m40 twice", calls)
	}
	// The claim's event follows the VIP onto the interface.
	testkit.WaitFor(t, "the claim's event", func() bool { return slices.Contains(w.events(), "vip_claimed 172.95.69.100") })
	if !w.sawEvents("fence_started m40", "fence_failed m40", "fence_started m40", "fence_succeeded m40", "vip_claimed 172.95.69.100") {
		t.Errorf("events %q, want a failed fence of m40, a successful one, then the claim", w.events())
	}
}

// TestOnlyAVerifiedDCFences: a DC that cannot verify its leadership
// fences nobody and records no intent: a minority never shoots the
// majority.
func TestOnlyAVerifiedDCFences(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverFence, nil)
	tm := w.d.newTerm(2)
	tm.ctx = context.Background()
	w.c.setVerifyErr(errNotLeader)
	if _, err := tm.fence(context.Background(), "m40", "", "test"); !errors.Is(err, errNotLeader) {
		t.Fatalf("fence without leadership: %v, want the verification's error", err)
	}
	if len(f.calls()) != 0 || len(w.c.fsm.State().FenceHistory) != 0 {
		t.Errorf("an unverified DC fenced %v or recorded %+v", f.calls(), w.c.fsm.State().FenceHistory)
	}
}

// TestConfirmLetsAFailedTakeoverProceed: a fence that keeps failing keeps
// the VIP off this DC; an operator's confirmation (refused while the node
// answers gossip) is recorded with the node it was given on, and the VIP
// is claimed at once.
func TestConfirmLetsAFailedTakeoverProceed(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverFence, nil)
	f.set(failed)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "a failed fence", func() bool {
		return len(w.c.fsm.State().FenceHistory) >= 1 && w.c.fsm.State().FenceHistory[0].Result != ""
	})
	ctx := context.Background()
	if _, err := w.d.Confirm(ctx, "m40"); err == nil || !strings.Contains(err.Error(), "not down") {
		t.Fatalf("confirming a node that answers gossip: %v, want a refusal", err)
	}
	if w.holder().Released {
		t.Fatal("a refused confirmation released the VIP")
	}
	w.c.setOnline("m40", false)
	ev, err := w.d.Confirm(ctx, "m40")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Result != fsm.FenceConfirmed || ev.Target != "m40" || ev.By != "m30" || ev.ID == 0 {
		t.Errorf("confirmation recorded as %+v", ev)
	}
	testkit.WaitFor(t, "the VIP claimed after the confirmation", func() bool { return w.has("eth0") })
	if w.holder().Node != "m30" {
		t.Errorf("holder %+v", w.holder())
	}
	if _, err := w.d.Confirm(ctx, "m30"); err == nil {
		t.Error("the DC confirmed itself down")
	}
}

// TestTakeoverLeaseWaitsOutTheOldLease: with takeover lease the claim
// comes no earlier than the old holder's lease has certainly ended,
// counted from the election; a release committed meanwhile ends the wait.
func TestTakeoverLeaseWaitsOutTheOldLease(t *testing.T) {
	lease := quorum.Lease{Duration: time.Second}
	w, _ := fenceWorld(t, spec.TakeoverLease, func(c *Config) { c.Lease = lease })
	w.run()
	elected := time.Now()
	w.c.leaders <- leaderAt(2, elected)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") })
	if waited, want := time.Since(elected), lease.OldHolderGone(elected).Sub(elected); waited < want {
		t.Errorf("claimed %s after the election, before the old lease had certainly ended (%s)", waited, want)
	}

	// The same with the old holder's release arriving: no wait.
	w2, _ := fenceWorld(t, spec.TakeoverLease, func(c *Config) { c.Lease = quorum.Lease{Duration: time.Hour} })
	w2.run()
	w2.c.leaders <- leader(2)
	// Before its claim the term answers requests only in its waits: an
	// answer with the VIP not yet claimed is the lease wait.
	testkit.WaitFor(t, "the wait to begin", func() bool { answered, _ := w2.probe(); return answered && !w2.has("eth0") })
	w2.c.apply(fsm.CmdReleaseVIPs, fsm.ReleaseVIPs{Node: "m40", Term: 1, VIPs: []netip.Addr{vip}, Reason: fsm.ReleaseRestart, At: time.Now()})
	testkit.WaitFor(t, "the VIP claimed after the release", func() bool { return w2.has("eth0") })
}

// TestTakeoverImmediateClaimsAtOnce: immediate takes the VIP without a
// fence or a wait, and says so.
func TestTakeoverImmediateClaimsAtOnce(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverImmediate, func(c *Config) { c.Lease = quorum.Lease{Duration: time.Hour} })
	tm := w.established(2)
	if !w.has("eth0") || len(f.calls()) != 0 || tm.held[vip] != "eth0" {
		t.Fatalf("immediate: VIP on eth0 %v, fenced %v", w.has("eth0"), f.calls())
	}
	if !strings.Contains(w.logs.String(), "taking over a VIP its holder did not let go of") {
		t.Errorf("the immediate takeover is not logged:\n%s", w.logs.String())
	}
}

// TestOperatorFence: raftlb fence goes to the DC, which answers with the
// committed intent; the result lands in the history. The DC does not
// fence itself, nor a node no device fences.
func TestOperatorFence(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverImmediate, nil)
	w.run()
	ctx := context.Background()
	if _, err := w.d.Fence(ctx, "m40", ""); err == nil || !strings.Contains(err.Error(), "not the DC") {
		t.Fatalf("fence on a node that is not DC: %v", err)
	}
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the term", func() bool { return w.has("eth0") })
	ev, err := w.d.Fence(ctx, "m40", spec.FenceReboot)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID == 0 || ev.Target != "m40" || ev.Action != spec.FenceReboot || ev.Result != "" || !strings.Contains(ev.Reason, "operator on m30") {
		t.Errorf("intent %+v", ev)
	}
	testkit.WaitFor(t, "the result", func() bool {
		e, _ := fenceEvent(w.c.fsm.State(), ev.ID)
		return e.Result == fsm.FenceSuccess
	})
	if len(f.calls()) != 1 {
		t.Errorf("fence calls %v", f.calls())
	}
	for _, bad := range []string{"m30", "m50"} {
		if _, err := w.d.Fence(ctx, bad, ""); err == nil {
			t.Errorf("fence %s: accepted", bad)
		}
	}
}

// TestDeviceChecks: the DC validates each device when its term begins
// and commits the result; an unchanged result is not committed again;
// a changed definition is validated again.
func TestDeviceChecks(t *testing.T) {
	w, f := fenceWorld(t, spec.TakeoverImmediate, nil)
	f.validate = errors.New("fence_apc_snmp validate-all: exit status 1: Failed: You have to set login name")
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the check recorded", func() bool { _, ok := w.c.fsm.State().DeviceChecks["pdu"]; return ok })
	c := w.c.fsm.State().DeviceChecks["pdu"]
	if c.OK || c.Action != fsm.CheckValidate || !strings.Contains(c.Error, "login name") {
		t.Errorf("check %+v", c)
	}
	s := withTakeover(spec.TakeoverImmediate)
	s.Fencing.Devices[0].Timeout = 2 * time.Minute
	f.mu.Lock()
	f.validate = nil
	f.mu.Unlock()
	w.c.setSpec(s)
	testkit.WaitFor(t, "the new definition validated", func() bool { return w.c.fsm.State().DeviceChecks["pdu"].OK })
	if calls := f.checkCalls(); len(calls) != 2 || calls[1] != "validate-all pdu" {
		t.Errorf("checks run %v, want two validate-all", calls)
	}
}

// TestDeviceCheckCommitsChangesOnly: a monitor result equal to the
// recorded one is not committed again; a new failure is.
func TestDeviceCheckCommitsChangesOnly(t *testing.T) {
	w, _ := fenceWorld(t, spec.TakeoverImmediate, nil)
	tm := w.d.newTerm(2)
	dev := w.c.fsm.State().Spec.Fencing.Devices[0]
	commits := w.c.commits
	ctx := context.Background()
	tm.recordCheck(ctx, dev, fsm.CheckMonitor, nil)
	first := commits()
	tm.recordCheck(ctx, dev, fsm.CheckMonitor, nil)
	tm.recordCheck(ctx, dev, fsm.CheckValidate, nil)
	if n := commits(); n != first {
		t.Errorf("%d commits for unchanged results", n-first)
	}
	tm.recordCheck(ctx, dev, fsm.CheckMonitor, errors.New("timed out"))
	if n := commits(); n != first+1 || w.c.fsm.State().DeviceChecks["pdu"].OK {
		t.Errorf("a new failure: %d commits, check %+v", n-first, w.c.fsm.State().DeviceChecks["pdu"])
	}
}

func leaderAt(term uint64, at time.Time) cluster.LeaderEvent {
	return cluster.LeaderEvent{IsLeader: true, Term: term, At: at}
}

// TestFreezeKeepsServingUntilAnotherDCIsKnown: under no_quorum freeze a
// DC that loses leadership without handing over keeps its VIP on the
// interface (its lease renewed past its length) and its IPVS table; once
// another node is DC it lets go at once and has the release reported.
// Under stop it lets go at once.
func TestFreezeKeepsServingUntilAnotherDCIsKnown(t *testing.T) {
	lease := quorum.Lease{Duration: time.Second}
	wd := &fakeWatchdog{}
	w, _ := fenceWorld(t, spec.TakeoverFence, func(c *Config) { c.Lease = lease; c.AuditInterval = 50 * time.Millisecond; c.Watchdog = wd.open })
	s := withTakeover(spec.TakeoverFence)
	s.Policy.NoQuorum = spec.NoQuorumFreeze
	w.c.setSpec(s)
	w.c.apply(fsm.CmdReleaseVIPs, fsm.ReleaseVIPs{Node: "m40", VIPs: []netip.Addr{vip}, Reason: fsm.ReleaseStopped, At: time.Now()})
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	w.c.leaders <- follower
	testkit.WaitFor(t, "the freeze", func() bool { return w.d.frozen.get() != nil })
	_, fedFrozen, _ := wd.counts()
	// The fake kernel drops a leased address exactly when its lifetime
	// ends, and says so: wait for that, or for enough renewals since the
	// freeze to span a whole lease (each a RenewEvery after the last),
	// whichever comes first.
	enough := int(lease.Duration/lease.RenewEvery()) + 1
	var (
		mu                sync.Mutex
		renewals, dropped int
	)
	w.k.Observe(func(write string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(write, "renew eth0 "):
			renewals++
		case strings.HasPrefix(write, "expire eth0 "), strings.HasPrefix(write, "del eth0 "):
			dropped++
		}
	})
	kernel := func() (int, int) { mu.Lock(); defer mu.Unlock(); return renewals, dropped }
	testkit.WaitFor(t, "a lease's worth of renewals, or the VIP dropped", func() bool { r, d := kernel(); return r >= enough || d > 0 || !w.has("eth0") })
	renewed, drops := kernel()
	if !w.has("eth0") || len(w.table()) != 1 || drops != 0 {
		t.Fatalf("frozen for %d renewals: VIP on eth0 %v (dropped %d times), IPVS %v; want both kept", renewed, w.has("eth0"), drops, w.table())
	}
	// Run's goroutine renews, then feeds: the renewals before the last one
	// have fed.
	if _, fed, disarmed := wd.counts(); disarmed != 0 || fed < fedFrozen+enough-1 {
		t.Errorf("frozen: the watchdog was disarmed (%d) or fed %d times in %d renewals: a frozen DC is alive and serving", disarmed, fed-fedFrozen, renewed)
	}
	w.c.setLeader("m40")
	testkit.WaitFor(t, "the release once m40 is DC", func() bool { return !w.has("eth0") && len(w.table()) == 0 && w.has("lo") })
	testkit.WaitFor(t, "the watchdog disarmed after the release", func() bool { _, _, d := wd.counts(); return d == 1 })
	// The release reaches the DC (here the fake's own handler) and the log.
	testkit.WaitFor(t, "the release recorded", func() bool {
		h := w.holder()
		return h.Node == "m30" && h.Term == 2 && h.Released && h.Reason == fsm.ReleaseQuorumLost
	})
}

// TestStopReleasesAtOnce: under no_quorum stop the VIP leaves the
// interface as soon as leadership is lost.
func TestStopReleasesAtOnce(t *testing.T) {
	w := newWorld(t, nil)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") })
	w.c.leaders <- follower
	testkit.WaitFor(t, "the release", func() bool { return !w.has("eth0") && len(w.table()) == 0 })
	if strings.Contains(w.logs.String(), "freeze") {
		t.Error("stop froze")
	}
}

// TestTakeoverLeaseCountsFromTheVotersLastContact: under takeover lease
// the wait counts from when a majority of the other voters last heard
// from the old holder, when they say (here long ago: the VIP is claimed
// at once); from the election when they do not answer, or name a time
// after it.
func TestTakeoverLeaseCountsFromTheVotersLastContact(t *testing.T) {
	lease := quorum.Lease{Duration: time.Hour}
	w, _ := fenceWorld(t, spec.TakeoverLease, func(c *Config) { c.Lease = lease })
	w.c.contact, w.c.contactOK = time.Now().Add(-2*time.Hour), true
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed at once", func() bool { return w.has("eth0") })

	// No majority answered: the lease counts from the election.
	w2, _ := fenceWorld(t, spec.TakeoverLease, func(c *Config) { c.Lease = lease })
	w2.run()
	w2.c.leaders <- leader(2)
	testkit.WaitFor(t, "no majority answered: the lease wait", func() bool { answered, _ := w2.probe(); return answered })
	if w2.has("eth0") {
		t.Error("no majority answered: the VIP was claimed without waiting out the lease")
	}

	// A bound after the election (a clock that jumped) counts as the
	// election: the VIP is claimed once the lease from the election has
	// ended, not an hour later.
	short := quorum.Lease{Duration: time.Second, Answer: quorum.MinAnswerLease}
	w3, _ := fenceWorld(t, spec.TakeoverLease, func(c *Config) { c.Lease = short })
	w3.c.contact, w3.c.contactOK = time.Now().Add(time.Hour), true
	w3.run()
	elected := time.Now()
	w3.c.leaders <- leaderAt(2, elected)
	testkit.WaitFor(t, "a bound after the election: the VIP claimed after the lease from the election", func() bool { return w3.has("eth0") })
	if waited, want := time.Since(elected), short.OldHolderGone(elected).Sub(elected); waited < want {
		t.Errorf("claimed %s after the election, before the lease from the election had ended (%s)", waited, want)
	}
}
