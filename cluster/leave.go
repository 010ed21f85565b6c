package cluster

import (
	"context"
	"fmt"
	"os"
	"time"
)

// gossipLeaveTimeout bounds the broadcast of this node's departure.
const gossipLeaveTimeout = 2 * time.Second

// Leave removes this node from the cluster for good, or not at all. It
// first tells its peers in gossip that it is leaving (so no DC admits it
// again meanwhile); then a DC hands its duties to another voter, and the
// DC removes the node from Raft and the registry; only then does the node
// leave gossip. When the removal fails (no DC, no quorum) the node says
// in gossip that it is not leaving after all and stays a full member. The
// caller shuts the node down after a successful leave.
func (n *Node) Leave(ctx context.Context) error {
	n.setLeaving(true)
	if err := n.leaveRaft(ctx); err != nil {
		n.setLeaving(false)
		n.logger.Warn("leaving the cluster failed: this node stays a member", "err", err)
		return fmt.Errorf("%w; this node is still a member of the cluster", err)
	}
	if err := n.ml.Leave(gossipLeaveTimeout); err != nil {
		n.logger.Warn("gossip leave did not complete", "err", err)
	}
	_ = os.Remove(n.peersFile())
	n.logger.Info("left the cluster")
	return nil
}

// leaveRaft has this node removed from Raft and the registry.
func (n *Node) leaveRaft(ctx context.Context) error {
	if n.IsLeader() && n.otherVoters() > 0 && !n.transfer() {
		n.logger.Warn("removing ourselves as DC instead")
	}
	if n.IsLeader() {
		// Still DC (alone, or the transfer failed): remove ourselves; Raft
		// steps down once the change commits.
		if n.otherVoters() == 0 {
			return nil
		}
		return n.removeServer(ctx, n.cfg.Name)
	}
	return n.askDC(ctx, rpcRequest{Op: opLeave})
}

// setLeaving says in gossip whether this node is leaving.
func (n *Node) setLeaving(leaving bool) {
	n.updateMeta(func(m *nodeMeta) bool {
		was := m.Leaving
		m.Leaving = leaving
		return was != leaving
	}, gossipLeaveTimeout, "whether this node is leaving")
}
