package cluster

import (
	"context"
	"sort"
	"time"
)

// reconcileInterval is how often every node refreshes its peers file and
// reconnects to nodes gossip has lost.
const reconcileInterval = time.Second

// memberDuties runs on every node: it keeps the peers file current,
// publishes "has state" once this node is part of a Raft cluster, and
// reconnects to configured nodes gossip has lost.
func (n *Node) memberDuties(ctx context.Context) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	reconnecting := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.peersDirty:
			n.savePeers()
			continue
		case <-t.C:
		}
		if n.raft.LastIndex() > 0 {
			n.markHasState()
		}
		n.savePeers()
		select {
		case reconnecting <- struct{}{}:
			go func() {
				defer func() { <-reconnecting }()
				n.reconnect()
			}()
		default: // the previous attempt is still dialling
		}
	}
}

// reconnect tries to join the registered nodes gossip does not list as
// live. memberlist never contacts a node it has declared dead again, so
// after a partition heals both sides would go on seeing each other dead;
// like Serf's reconnect, this brings them back together.
func (n *Node) reconnect() {
	live := map[string]bool{n.cfg.Name: true}
	for _, m := range n.members() {
		live[m.Name] = true
	}
	var addrs []string
	for name, nd := range n.fsm.State().Nodes {
		if !live[name] && !n.gossip.hasLeft(name) && nd.GossipAddr.IsValid() {
			addrs = append(addrs, nd.GossipAddr.String())
		}
	}
	if len(addrs) == 0 {
		return
	}
	sort.Strings(addrs)
	if joined, err := n.ml.Join(addrs); joined > 0 {
		n.logger.Info("reconnected to nodes gossip had lost", "contacted", joined)
	} else if err != nil {
		n.logger.Debug("reconnect failed", "nodes", addrs, "err", err)
	}
}
