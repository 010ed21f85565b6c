package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// bootstrapLoop bootstraps Raft once, when BootstrapExpect servers that
// all expect the same number have found each other through gossip and none
// of them already belongs to a cluster. It runs only on a node that had no
// Raft state at start, so a restarted node never bootstraps again.
func (n *Node) bootstrapLoop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.LastIndex() > 0 {
			return // another DC added us to its cluster
		}
		var peers []member
		for _, m := range n.members() {
			if m.State != memberlist.StateAlive || m.MetaErr != nil {
				continue
			}
			if m.Meta.HasState && m.Name != n.cfg.Name {
				n.logger.Info("found a node with existing cluster state; waiting to be added instead of bootstrapping", "peer", m.Name)
				return
			}
			if m.Meta.Expect != n.cfg.BootstrapExpect {
				if !warned[m.Name] {
					n.logger.Warn("peer expects a different number of bootstrap servers; ignoring it for bootstrap",
						"peer", m.Name, "peer_expect", m.Meta.Expect, "our_expect", n.cfg.BootstrapExpect)
					warned[m.Name] = true
				}
				continue
			}
			peers = append(peers, m)
		}
		if len(peers) < n.cfg.BootstrapExpect {
			continue
		}
		conf := bootstrapConfiguration(peers, n.cfg.MaxVoters)
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
			n.logger.Error("bootstrap failed", "err", err)
			return
		}
		n.logger.Info("bootstrapped the cluster", "servers", len(conf.Servers))
		n.markHasState()
		return
	}
}

// bootstrapConfiguration orders peers by name so every node computes the
// same configuration; the first maxVoters vote.
func bootstrapConfiguration(peers []member, maxVoters int) raft.Configuration {
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	var c raft.Configuration
	for i, p := range peers {
		s := raft.Server{ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter}
		if i >= maxVoters {
			s.Suffrage = raft.Nonvoter
		}
		c.Servers = append(c.Servers, s)
	}
	return c
}

// markHasState tells peers through gossip that this node belongs to a
// cluster, so late starters join it rather than bootstrap their own.
func (n *Node) markHasState() {
	n.updateMeta(func(m *nodeMeta) bool {
		was := m.HasState
		m.HasState = true
		return !was
	}, time.Second, "that this node belongs to a cluster")
}
