package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// LeaderEvent says whether this node is the DC, and in which Raft term.
// Two events with IsLeader true and different terms mean leadership was
// lost and regained in between: whatever was set up for the old term must
// be re-established.
type LeaderEvent struct {
	IsLeader bool
	Term     uint64
	At       time.Time
}

// leadership fans leadership changes out to subscribers. Each subscriber
// has a one-slot channel holding the latest event: a slow subscriber skips
// intermediate states but always sees the current one, and Raft is never
// blocked on it.
type leadership struct {
	mu   sync.Mutex
	last LeaderEvent
	subs map[int]chan LeaderEvent
	next int
}

func newLeadership() *leadership {
	return &leadership{subs: map[int]chan LeaderEvent{}}
}

func (l *leadership) publish(ev LeaderEvent) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev.IsLeader == l.last.IsLeader && (!ev.IsLeader || ev.Term == l.last.Term) {
		return false
	}
	l.last = ev
	for _, ch := range l.subs {
		select {
		case <-ch:
		default:
		}
		ch <- ev
	}
	return true
}

func (l *leadership) subscribe() (<-chan LeaderEvent, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan LeaderEvent, 1)
	id := l.next
	l.next++
	l.subs[id] = ch
	ch <- l.last
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.subs, id)
	}
}

// Leadership subscribes to leadership events. The channel immediately holds
// the current state. Call cancel when done.
func (n *Node) Leadership() (<-chan LeaderEvent, func()) {
	return n.leaders.subscribe()
}

// leadershipPoll is how often the published state is reconciled with
// raft.State(), in case a notification was missed.
const leadershipPoll = 50 * time.Millisecond

// watchLeadership is the one place leadership events come from. It drains
// Raft's NotifyCh promptly (an unread NotifyCh blocks Raft) and also polls
// State(), because NotifyCh carries no term and LeaderCh-style channels can
// drop a lost-then-regained transition.
func (n *Node) watchLeadership(ctx context.Context) {
	t := time.NewTicker(leadershipPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.leaders.publish(LeaderEvent{IsLeader: false, At: time.Now()})
			return
		case <-n.notifyCh:
		case <-t.C:
		}
		ev := LeaderEvent{IsLeader: n.raft.State() == raft.Leader, Term: n.raft.CurrentTerm(), At: time.Now()}
		if n.leaders.publish(ev) {
			if ev.IsLeader {
				n.logger.Info("this node is now the DC", "term", ev.Term)
			} else {
				n.logger.Info("this node is not the DC", "term", ev.Term)
			}
		}
	}
}

// ObserveDC calls fn with the name of each leader this node learns of (""
// while it knows none), as Raft observes it: a DC that led only for a
// moment is seen too. fn must return promptly. The returned function
// stops observing.
func (n *Node) ObserveDC(fn func(dc string)) func() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case o := <-ch:
				fn(string(o.Data.(raft.LeaderObservation).LeaderID))
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.raft.DeregisterObserver(obs)
			close(done)
		})
	}
}
