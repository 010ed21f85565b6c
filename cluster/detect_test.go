package cluster

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/quorum"
)

// TestSilenceDetector drives the detector as watchLeader does — each call
// at the instant the previous one asked for — from a first call that is not
// aligned with anything: Raft is asked to look once per silence, at the
// timeout (and stagger) to the millisecond, never while the leader is
// heard, nor for a silence this process's own stall made.
func TestSilenceDetector(t *testing.T) {
	const T = 500 * time.Millisecond
	none := func() time.Duration { return 0 }
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	// run calls step from from until to, as watchLeader's timer would, and
	// returns the instants it looked.
	run := func(d *silenceDetector, from, to time.Duration, last func(now time.Duration) time.Duration, following bool, stagger func() time.Duration) []time.Duration {
		var looked []time.Duration
		for now := from; now <= to; {
			look, next := d.step(at(now), at(last(now)), following, stagger)
			if look {
				looked = append(looked, now)
			}
			if next <= 0 || next > d.tick {
				t.Fatalf("at %v: next call in %v, want within (0, %v]", now, next, d.tick)
			}
			now += next
		}
		return looked
	}
	const off = 7 * time.Millisecond // the first call, off the grid
	silentFrom := func(v time.Duration) func(time.Duration) time.Duration {
		return func(time.Duration) time.Duration { return v }
	}

	t.Run("silent leader", func(t *testing.T) {
		d := newSilenceDetector(T)
		if got := run(d, off, 2*T, silentFrom(0), true, none); len(got) != 1 || got[0] != T {
			t.Errorf("looked at %v, want once, at %v", got, T)
		}
		// The leader speaks at 2T+3ms, then falls silent again: a new silence.
		last := 2*T + 3*time.Millisecond
		if got := run(d, 2*T+off, 4*T, silentFrom(last), true, none); len(got) != 1 || got[0] != last+T {
			t.Errorf("a second silence: looked at %v, want once, at %v", got, last+T)
		}
	})

	t.Run("heard in time", func(t *testing.T) {
		d := newSilenceDetector(T)
		if got := run(d, off, 3*T, func(now time.Duration) time.Duration { return now - T/2 }, true, none); len(got) != 0 {
			t.Fatalf("looked at %v while the leader spoke %v before", got, T/2)
		}
	})

	t.Run("following nobody", func(t *testing.T) {
		d := newSilenceDetector(T)
		if got := run(d, off, 2*T, silentFrom(0), false, none); len(got) != 0 {
			t.Fatalf("looked at %v while following no leader (Raft's candidate loop runs)", got)
		}
	})

	t.Run("staggered", func(t *testing.T) {
		d := newSilenceDetector(T)
		step := T / 8
		if got := run(d, off, 2*T, silentFrom(0), true, func() time.Duration { return 2 * step }); len(got) != 1 || got[0] != T+2*step {
			t.Errorf("third in line: looked at %v, want once, two steps after the timeout (%v)", got, T+2*step)
		}
	})

	t.Run("own stall", func(t *testing.T) {
		d := newSilenceDetector(T)
		d.step(at(d.tick), at(0), true, none)
		// This process runs again 3/4 T later: the leader's heartbeats
		// sent meanwhile are still to be read.
		end := d.tick + 3*T/4
		if got := run(d, end, end+2*T, silentFrom(0), true, none); len(got) != 1 || got[0] != end+T {
			t.Errorf("after a stall of %v: looked at %v, want once, the timeout after the stall's end (%v)", 3*T/4, got, end+T)
		}
	})
}

// recordingRaft is the configuration calls lookNow makes.
type recordingRaft struct {
	rc     raft.ReloadableConfig
	seen   []raft.ReloadableConfig
	failAt int // 1-based call that fails; 0: none
}

func (r *recordingRaft) ReloadableConfig() raft.ReloadableConfig { return r.rc }
func (r *recordingRaft) ReloadConfig(rc raft.ReloadableConfig) error {
	r.seen = append(r.seen, rc)
	if len(r.seen) == r.failAt {
		return errors.New("refused")
	}
	r.rc = rc
	return nil
}

// TestLookNow: Raft's follower loop is woken by a shorter heartbeat
// timeout (ReloadConfig notifies it only when the timeout shrinks): from
// the fallback, one reload to the detector's timeouts; already there (an
// earlier look not yet settled), back to the fallback first. settle
// restores the fallback, and every other setting is left as it was.
func TestLookNow(t *testing.T) {
	tm := timeouts{250 * time.Millisecond, 300 * time.Millisecond}
	orig := raft.ReloadableConfig{TrailingLogs: 10240, SnapshotInterval: time.Minute, SnapshotThreshold: 8192,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 600 * time.Millisecond}
	r := &recordingRaft{rc: orig}
	if err := lookNow(r, tm); err != nil {
		t.Fatal(err)
	}
	if len(r.seen) != 1 || r.rc.HeartbeatTimeout != tm.heartbeat || r.rc.ElectionTimeout != tm.election {
		t.Errorf("reloads %+v: want one, to %+v", r.seen, tm)
	}
	r.seen = nil
	if err := lookNow(r, tm); err != nil {
		t.Fatal(err)
	}
	if len(r.seen) != 2 || r.seen[0].HeartbeatTimeout != orig.HeartbeatTimeout || r.seen[1].HeartbeatTimeout != tm.heartbeat {
		t.Errorf("a second look: reloads %+v, want the fallback then the detector's timeouts", r.seen)
	}
	if err := settle(r, tm); err != nil {
		t.Fatal(err)
	}
	if r.rc != orig {
		t.Errorf("settled at %+v, want %+v", r.rc, orig)
	}
	if err := lookNow(&recordingRaft{rc: orig, failAt: 1}, tm); err == nil {
		t.Error("a refused reload reported no error")
	}
}

// TestLookNowOnRaft: on a real Raft follower whose leader has been silent
// for the heartbeat timeout, lookNow starts the election Raft's own timer
// would start later, and settle gives the timer back its fallback. Raft's
// timer here fires only after a minute: the election within it is
// lookNow's.
func TestLookNowOnRaft(t *testing.T) {
	_, trans := raft.NewInmemTransport("")
	cfg := raft.DefaultConfig()
	cfg.LocalID = "a"
	cfg.HeartbeatTimeout = time.Minute
	cfg.ElectionTimeout = time.Minute
	cfg.LeaderLeaseTimeout = time.Second
	cfg.LogLevel = "off"
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	conf := raft.Configuration{Servers: []raft.Server{
		{ID: "a", Address: trans.LocalAddr()},
		{ID: "b", Address: "b"},
		{ID: "c", Address: "c"},
	}}
	if err := raft.BootstrapCluster(cfg, store, store, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(cfg, &raft.MockFSM{}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	// A fresh follower has never heard a leader: its last contact is the
	// zero time, silent for longer than any timeout.
	if r.State() != raft.Follower {
		t.Fatalf("state %v, want follower", r.State())
	}
	tm := timeouts{30 * time.Second, 30 * time.Second}
	if err := lookNow(r, tm); err != nil {
		t.Fatal(err)
	}
	obs := make(chan raft.Observation, 8)
	r.RegisterObserver(raft.NewObserver(obs, false, nil))
	deadline := time.After(20 * time.Second)
	for r.State() == raft.Follower {
		select {
		case <-obs:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("still a follower 20s after lookNow; Raft's own timer would wait 30s or a minute")
		}
	}
	if err := settle(r, tm); err != nil {
		t.Fatal(err)
	}
	if got := r.ReloadableConfig().HeartbeatTimeout; got != time.Minute {
		t.Errorf("heartbeat timeout settled at %v, want the fallback, 1m", got)
	}
}

// TestStaggerPrefersDirectors: the voters left when a leader falls silent
// give up on it a step apart, those that can direct first: the order in
// which the cluster would rather have its next DC.
func TestStaggerPrefersDirectors(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Dataplane = "fake" })
	c.waitDC()
	c.node("n1").SetCannotDirect("test: n1 cannot direct")
	c.waitFor("n1 to leave the directors everywhere", 10*time.Second, func() bool {
		for _, n := range c.live() {
			if slices.Contains(n.Directors(), "n1") || len(n.Directors()) != 2 {
				return false
			}
		}
		return true
	})
	const tick = 62 * time.Millisecond // a step
	// Were n3 the silent leader: n2 can direct, n1 cannot.
	if got := c.node("n2").staggerAfter("n3", tick); got != 0 {
		t.Errorf("n2 (can direct) waits %v more, want 0", got)
	}
	if got := c.node("n1").staggerAfter("n3", tick); got != tick {
		t.Errorf("n1 (cannot direct) waits %v more, want a tick", got)
	}
	// Were n1 the silent leader: n2 and n3 both can, by name.
	if a, b := c.node("n2").staggerAfter("n1", tick), c.node("n3").staggerAfter("n1", tick); a != 0 || b != tick {
		t.Errorf("n2, n3 wait %v, %v more; want 0 and a tick", a, b)
	}
}

// TestDefaultsKeepLeaseNearImmediate: at the default timings a new DC of
// three voters is elected a heartbeat timeout and a stagger after it last
// heard from the old one (the second voter to give up wins); the takeover
// wait under `lease` (quorum.Lease.OldHolderGone from that contact) ends
// within a renewal period of that, so `lease` costs at most a renewal
// period more than `immediate`. The leader lease, the longest stall a
// healthy DC survives, is outlasted by the answer lease's renewals (two
// may be missed).
func TestDefaultsKeepLeaseNearImmediate(t *testing.T) {
	d := DefaultTiming()
	l := quorum.Lease{Duration: quorum.DefaultLease, Answer: quorum.DefaultAnswerLease}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	var contact time.Time
	elected := contact.Add(d.RaftHeartbeatTimeout + d.RaftHeartbeatTimeout/8)
	if wait := l.OldHolderGone(contact).Sub(elected); wait > l.RenewEvery() {
		t.Errorf("answer lease %s: a new DC waits %s past its election, more than a renewal period (%s)", l.Answer, wait, l.RenewEvery())
	}
	if survives := l.Answer - l.RenewEvery(); survives < d.RaftLeaderLease {
		t.Errorf("answer lease %s renewed every %s outlasts a stall of %s, shorter than the leader lease %s", l.Answer, l.RenewEvery(), survives, d.RaftLeaderLease)
	}
}

// TestRaftTimersAreTheFallback: Raft's own timers run at the fallback,
// twice the configured timeouts, so that they do not fire between the
// detector's look and a voter's stagger; after a failover, which the
// detector started by shortening them, every node has them back at the
// fallback.
func TestRaftTimersAreTheFallback(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	tm := DefaultTiming()
	fallback := func(n *Node) bool {
		rc := n.raft.ReloadableConfig()
		return rc.HeartbeatTimeout == raftFallback*tm.RaftHeartbeatTimeout && rc.ElectionTimeout == raftFallback*tm.RaftElectionTimeout
	}
	for _, n := range c.live() {
		if !fallback(n) {
			t.Errorf("%s: Raft's timeouts %+v, want the fallback", n.Name(), n.raft.ReloadableConfig())
		}
	}
	c.crash(dc.Name())
	c.waitDC()
	c.waitFor("every node back at the fallback timeouts", 10*time.Second, func() bool {
		for _, n := range c.live() {
			if !fallback(n) {
				return false
			}
		}
		return true
	})
}
