package cluster

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestSilenceDetector: Raft is asked to look once the leader has been
// silent for the timeout, once per silence; not while the node follows
// nobody; and a stall of this process is not counted against the leader.
func TestSilenceDetector(t *testing.T) {
	const T = 500 * time.Millisecond
	none := func() time.Duration { return 0 }
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	t.Run("silent leader", func(t *testing.T) {
		d := newSilenceDetector(T)
		last := at(0)
		var asked []time.Duration
		for now := d.tick; now <= 2*T; now += d.tick {
			if d.step(at(now), last, true, none) {
				asked = append(asked, now)
			}
		}
		if len(asked) != 1 || asked[0] != T {
			t.Errorf("asked at %v, want once, at %v", asked, T)
		}
		// The leader speaks, then falls silent again: a new silence.
		last = at(2 * T)
		asked = nil
		for now := 2*T + d.tick; now <= 4*T; now += d.tick {
			if d.step(at(now), last, true, none) {
				asked = append(asked, now)
			}
		}
		if len(asked) != 1 || asked[0] != 3*T {
			t.Errorf("a second silence: asked at %v, want once, at %v", asked, 3*T)
		}
	})

	t.Run("heard in time", func(t *testing.T) {
		d := newSilenceDetector(T)
		for now := d.tick; now <= 3*T; now += d.tick {
			if d.step(at(now), at(now-T/2), true, none) {
				t.Fatalf("asked at %v while the leader spoke %v before", now, T/2)
			}
		}
	})

	t.Run("following nobody", func(t *testing.T) {
		d := newSilenceDetector(T)
		for now := d.tick; now <= 2*T; now += d.tick {
			if d.step(at(now), at(0), false, none) {
				t.Fatalf("asked at %v while following no leader (Raft's candidate loop runs)", now)
			}
		}
	})

	t.Run("staggered", func(t *testing.T) {
		d := newSilenceDetector(T)
		var asked []time.Duration
		for now := d.tick; now <= 2*T; now += d.tick {
			if d.step(at(now), at(0), true, func() time.Duration { return 2 * d.tick }) {
				asked = append(asked, now)
			}
		}
		if len(asked) != 1 || asked[0] != T+2*d.tick {
			t.Errorf("third in line: asked at %v, want once, two ticks after the timeout (%v)", asked, T+2*d.tick)
		}
	})

	t.Run("own stall", func(t *testing.T) {
		d := newSilenceDetector(T)
		last := at(0)
		d.step(at(d.tick), last, true, none)
		// This process runs again 3/4 T later: the leader's heartbeats
		// sent meanwhile are still to be read.
		end := d.tick + 3*T/4
		for now := end; now < end+T; now += d.tick {
			if d.step(at(now), last, true, none) {
				t.Fatalf("asked %v after a stall of %v, before the leader had the timeout to be heard", now-end, 3*T/4)
			}
		}
		if !d.step(at(end+T), last, true, none) {
			t.Error("silent for the timeout after the stall: not asked")
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
// timeout (ReloadConfig notifies it only when the timeout shrinks), and
// its configuration is left exactly as it was.
func TestLookNow(t *testing.T) {
	orig := raft.ReloadableConfig{TrailingLogs: 10240, SnapshotInterval: time.Minute, SnapshotThreshold: 8192,
		HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond}
	r := &recordingRaft{rc: orig}
	if err := lookNow(r); err != nil {
		t.Fatal(err)
	}
	if len(r.seen) != 2 || r.seen[0].HeartbeatTimeout >= orig.HeartbeatTimeout {
		t.Errorf("reloads %+v: want a shorter heartbeat timeout, then the original", r.seen)
	}
	if r.rc != orig {
		t.Errorf("left %+v, want %+v", r.rc, orig)
	}
	if err := lookNow(&recordingRaft{rc: orig, failAt: 2}); err == nil {
		t.Error("a refused restore reported no error")
	}
}

// TestLookNowOnRaft: on a real Raft follower whose leader has been silent
// for the heartbeat timeout, lookNow starts the election Raft's own timer
// would start later, and leaves the timeout as it was. Raft's timer here
// fires only after a minute: the election within it is lookNow's.
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
	if err := lookNow(r); err != nil {
		t.Fatal(err)
	}
	obs := make(chan raft.Observation, 8)
	r.RegisterObserver(raft.NewObserver(obs, false, nil))
	deadline := time.After(30 * time.Second)
	for r.State() == raft.Follower {
		select {
		case <-obs:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("still a follower 30s after lookNow; Raft's own timer would wait a minute")
		}
	}
	if got := r.ReloadableConfig().HeartbeatTimeout; got != time.Minute {
		t.Errorf("heartbeat timeout left at %v, want 1m", got)
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
