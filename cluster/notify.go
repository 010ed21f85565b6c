package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// notifier fans a "something changed" signal out to subscribers. Each has a
// one-slot channel, so signals coalesce and the sender never blocks.
type notifier struct {
	mu   sync.Mutex
	subs map[int]chan struct{}
	next int
}

func (n *notifier) subscribe() (<-chan struct{}, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[int]chan struct{}{}
	}
	ch := make(chan struct{}, 1)
	id := n.next
	n.next++
	n.subs[id] = ch
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs, id)
	}
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// SubscribeMembership signals every gossip membership change: a node
// joined, failed, left or changed its metadata.
func (n *Node) SubscribeMembership() (<-chan struct{}, func()) {
	return n.membership.subscribe()
}

// OnlineNodes returns the nodes gossip considers alive or suspect, this
// node included. A node declared dead is absent at once.
func (n *Node) OnlineNodes() map[string]bool {
	out := map[string]bool{n.cfg.Name: true}
	for _, m := range n.members() {
		if m.State == memberlist.StateAlive || m.State == memberlist.StateSuspect {
			out[m.Name] = true
		}
	}
	return out
}

// Barrier waits until every entry committed before it is applied to the
// FSM. A new DC calls it before acting on the replicated state.
func (n *Node) Barrier(timeout time.Duration) error {
	return n.raft.Barrier(timeout).Error()
}
