package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Failure detection, made deterministic. hashicorp/raft's follower looks
// for a silent leader only when a timer fires, at a random instant in
// [T, 2T] (T the heartbeat timeout), and re-arms it when the leader spoke
// less than T ago; so a dead leader is noticed anywhere from T to about
// 2.5 T after its last word, and the election waits for the slower of the
// two remaining voters (a voter that still follows the old leader refuses
// the first candidate). The lab measured that as the largest phase of a
// cable pull: detection 1.0–1.3 s at T = 500 ms.
//
// watchLeader reads Raft's last contact every T/10 and, once the leader has
// been silent for T, has Raft look at once: Raft runs with its timeouts at
// twice the configured ones (raftFallback), and the watcher gives it the
// configured ones through ReloadConfig — a shorter heartbeat timeout wakes
// the follower loop, which checks immediately — until a leader is heard
// again (settle). Raft's own rule still decides — it starts an election
// only if it, too, finds the leader silent for T — so the watcher never
// elects where Raft would not, it only stops Raft from waiting for its
// timer. Every voter runs it. Within a tick of
// the instant it must look, it sleeps until that instant rather than the
// tick: the tick would add up to T/10 of its own, different on each voter.
//
// The remaining voters give up on the leader a stagger apart (T/8), in
// the order the cluster prefers its DCs (those that can direct first, then
// by name): given up within a pre-vote's trip of each other, two of them
// each win the other's pre-vote, split the real vote and wait out an
// election timeout (seen in the lab: elections of 589 and 682 ms where
// they usually take 10–100; then with a stagger of a tick, 50 ms, no more
// than the ticks' own jitter). A voter that still follows the leader
// refuses a candidate, so the first to give up is refused; the one that
// completes a majority of voters that have given up wins at once — in a
// three-voter cluster, the second, a stagger after the first. The stagger
// must outlast the difference between two voters' last contacts with the
// leader (its replication wakes every commit timeout, 10–20 ms at the
// defaults, per follower) and a pre-vote's trip: T/8 is 31 ms at the
// default T, 62 ms at the lab's. (Raft's own timer may still fire before a
// voter's stagger has passed — hence the fallback at 2T.)
//
// A stall of this process (a starved agent, a stalled VM) is not counted
// against the leader: a tick that comes late marks one, and the leader's
// silence is then counted from the stall's end, when its heartbeats can be
// read again. Raft's own timer, at the fallback, still fires as before.

// silenceDetector is watchLeader's decision, one tick at a time.
type silenceDetector struct {
	timeout time.Duration // T: silence that makes Raft look
	tick    time.Duration // how often it is called
	// stall is how much later than tick a tick may come before the time
	// in between counts as this process's stall, not the leader's silence.
	stall time.Duration

	lastTick time.Time
	stallEnd time.Time
	asked    time.Time // the last contact of the silence Raft was last asked about
}

func newSilenceDetector(timeout time.Duration) *silenceDetector {
	return &silenceDetector{timeout: timeout, tick: timeout / 10, stall: timeout / 4}
}

// step is one tick at now: last is Raft's last contact with the leader,
// following whether this node follows one (a non-voter's Raft looks and
// stands for nothing, as on its own timer), and stagger how much longer
// than the timeout this node waits (asked only within a tick of the
// timeout). It reports whether Raft should look for a silent leader now,
// once per silence, and when to call it next: a tick later, or sooner, at
// the instant it will look.
func (s *silenceDetector) step(now, last time.Time, following bool, stagger func() time.Duration) (look bool, next time.Duration) {
	if !s.lastTick.IsZero() && now.Sub(s.lastTick) > s.tick+s.stall {
		s.stallEnd = now
	}
	s.lastTick = now
	if !following || s.asked.Equal(last) {
		return false, s.tick
	}
	silent := now.Sub(later(last, s.stallEnd))
	if silent < s.timeout-s.tick {
		return false, s.tick
	}
	if wait := s.timeout + stagger() - silent; wait > 0 {
		return false, min(wait, s.tick)
	}
	s.asked = last
	return true, s.tick
}

// staggerAfter is how much longer than the heartbeat timeout this voter
// waits before it gives up on leader: step per voter before it, those
// that can direct (Directors) first, then the others, each by name.
func (n *Node) staggerAfter(leader string, step time.Duration) time.Duration {
	order := slices.DeleteFunc(n.Directors(), func(v string) bool { return v == leader })
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		var rest []string
		for _, sv := range f.Configuration().Servers {
			id := string(sv.ID)
			if sv.Suffrage == raft.Voter && id != leader && !slices.Contains(order, id) {
				rest = append(rest, id)
			}
		}
		slices.Sort(rest)
		order = append(order, rest...)
	}
	if i := slices.Index(order, n.cfg.Name); i > 0 {
		return time.Duration(i) * step
	}
	return 0
}

// raftLook is the part of *raft.Raft the watcher uses to make it look.
type raftLook interface {
	ReloadableConfig() raft.ReloadableConfig
	ReloadConfig(raft.ReloadableConfig) error
}

// raftFallback is how many heartbeat timeouts Raft's own timers wait
// while the watcher is not looking. Raft's follower timer fires at a
// random instant: with Raft's timeouts at T, it fired between T and a
// voter's stagger often enough (about one failover in twelve in the lab)
// that two voters stood at once and split the vote (an election of 1.08
// s). At 2T it cannot fire before the watcher has looked, T and a stagger
// after the last contact (at most 1.5 T with five voters); it remains the
// fallback should the watcher not run.
const raftFallback = 2

// timeouts are Raft's heartbeat and election timeouts.
type timeouts struct{ heartbeat, election time.Duration }

func (t timeouts) fallback() timeouts {
	return timeouts{raftFallback * t.heartbeat, raftFallback * t.election}
}

// setRaftTimeouts sets Raft's timeouts in one reload: a shorter heartbeat
// timeout wakes its follower loop, which checks for a silent leader at
// once.
func setRaftTimeouts(r raftLook, t timeouts) error {
	rc := r.ReloadableConfig()
	if rc.HeartbeatTimeout == t.heartbeat && rc.ElectionTimeout == t.election {
		return nil
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.heartbeat, t.election
	if err := r.ReloadConfig(rc); err != nil {
		return fmt.Errorf("setting Raft's heartbeat and election timeouts to %s and %s: %w", t.heartbeat, t.election, err)
	}
	return nil
}

// lookNow makes a follower's Raft check now for a leader silent for the
// heartbeat timeout of t, and leaves its timeouts at t — the election that
// follows, and its retries, go at that pace — until settle.
func lookNow(r raftLook, t timeouts) error {
	if r.ReloadableConfig().HeartbeatTimeout <= t.heartbeat {
		// Still at t from an earlier look: only a shorter heartbeat
		// timeout wakes the loop.
		if err := setRaftTimeouts(r, t.fallback()); err != nil {
			return err
		}
	}
	if err := setRaftTimeouts(r, t); err != nil {
		return fmt.Errorf("waking Raft's follower loop: %w", err)
	}
	return nil
}

// settle gives Raft back its fallback timeouts once a leader is heard
// again, or this node leads.
func settle(r raftLook, t timeouts) error { return setRaftTimeouts(r, t.fallback()) }

// watchLeader runs the detector until ctx ends.
func (n *Node) watchLeader(ctx context.Context) {
	d := newSilenceDetector(n.cfg.Timing.RaftHeartbeatTimeout)
	t := timeouts{n.cfg.Timing.RaftHeartbeatTimeout, n.cfg.Timing.RaftElectionTimeout}
	wake := time.NewTimer(d.tick)
	defer wake.Stop()
	looking := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-wake.C:
			_, leader := n.raft.LeaderWithID()
			state := n.raft.State()
			following := leader != "" && state == raft.Follower
			last := n.raft.LastContact()
			if looking && (state == raft.Leader || following && now.Sub(last) < d.timeout) {
				if err := settle(n.raft, t); err != nil {
					n.logger.Warn("Raft keeps the short timeouts of its last failover", "err", err)
				} else {
					looking = false
				}
			}
			var stagger time.Duration
			look, next := d.step(now, last, following, func() time.Duration {
				stagger = n.staggerAfter(string(leader), d.timeout/8)
				return stagger
			})
			wake.Reset(next)
			if !look {
				continue
			}
			n.logger.Info("leader silent for the heartbeat timeout: Raft checks now", "leader", string(leader), "timeout", d.timeout, "stagger", stagger)
			if err := lookNow(n.raft, t); err != nil {
				n.logger.Warn("failure detection falls back to Raft's timer", "err", err, "fallback", t.fallback().heartbeat)
			} else {
				looking = true
			}
		}
	}
}
