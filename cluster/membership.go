package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
)

// raftChangeTimeout bounds one change of the Raft configuration (adding,
// promoting, removing a server). A LAN answers within milliseconds; this
// is the bound of a peer that is down or slow.
const raftChangeTimeout = 5 * time.Second

// ReconcileMembers brings the Raft configuration and the node registry in
// line with gossip: live nodes are admitted (voters up to MaxVoters, then
// non-voters) and live non-voters are promoted when a voter slot is free.
// Failed nodes stay configured (offline) so quorum arithmetic does not
// shrink under a partition; only `raftlb leave` removes a node. It is one
// step of the DC's term (the director runs it); on a node that is not
// leader every change it tries fails and nothing changes.
//
// It holds no lock while it pings a new member (up to the RPC timeout
// each): the term's loop runs one step at a time, and a step whose term
// ended stops after the ping under way.
func (n *Node) ReconcileMembers(ctx context.Context) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return
	}
	servers := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range cf.Configuration().Servers {
		servers[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	state := n.fsm.State()
	alive := map[string]bool{}
	for _, m := range n.members() {
		if ctx.Err() != nil {
			return
		}
		if m.MetaErr != nil {
			n.rejected.note(m.Name, m.MetaErr.Error(), func() {
				n.logger.Warn("ignoring gossip member with unusable metadata", "peer", m.Name, "err", m.MetaErr)
			})
			continue
		}
		if m.State != memberlist.StateAlive || n.gossip.hasLeft(m.Name) {
			continue
		}
		if _, in := servers[raft.ServerID(m.Name)]; !in && m.Meta.Leaving {
			continue // on its way out: not admitted again
		}
		alive[m.Name] = true
		id := raft.ServerID(m.Name)
		s, ok := servers[id]
		switch {
		case !ok:
			if why := n.admissible(m, state); why != "" {
				n.rejected.note(m.Name, why, func() {
					n.logger.Warn("not admitting node to Raft", "peer", m.Name, "why", why)
				})
				continue
			}
			_, err := n.Ping(ctx, m.Name, m.RaftAddr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				n.rejected.note(m.Name, err.Error(), func() {
					n.logger.Warn("not admitting node to Raft: its Raft port does not answer over mutual TLS", "peer", m.Name, "raft", m.RaftAddr, "err", err)
				})
				continue
			}
			n.rejected.forget(m.Name)
			suffrage := raft.Voter
			var f raft.IndexFuture
			if voters < n.cfg.MaxVoters {
				f = n.raft.AddVoter(id, raft.ServerAddress(m.RaftAddr), 0, raftChangeTimeout)
			} else {
				suffrage = raft.Nonvoter
				f = n.raft.AddNonvoter(id, raft.ServerAddress(m.RaftAddr), 0, raftChangeTimeout)
			}
			if err := f.Error(); err != nil {
				n.logger.Warn("adding node to Raft failed", "peer", m.Name, "err", err)
				continue
			}
			if suffrage == raft.Voter {
				voters++
			}
			n.logger.Info("added node to Raft", "peer", m.Name, "as", suffrageName(suffrage))
			servers[id] = raft.Server{ID: id, Address: raft.ServerAddress(m.RaftAddr), Suffrage: suffrage}
		case string(s.Address) != m.RaftAddr:
			// Same node, new address: re-adding with the same ID updates
			// it, once the certificate there names the node.
			_, err := n.Ping(ctx, m.Name, m.RaftAddr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				n.rejected.note(m.Name, err.Error(), func() {
					n.logger.Warn("not moving node to its new address: its Raft port there does not answer as the node over mutual TLS", "peer", m.Name, "raft", m.RaftAddr, "err", err)
				})
				continue
			}
			var f raft.IndexFuture
			if s.Suffrage == raft.Voter {
				f = n.raft.AddVoter(id, raft.ServerAddress(m.RaftAddr), 0, raftChangeTimeout)
			} else {
				f = n.raft.AddNonvoter(id, raft.ServerAddress(m.RaftAddr), 0, raftChangeTimeout)
			}
			if err := f.Error(); err != nil {
				n.logger.Warn("updating node address in Raft failed", "peer", m.Name, "err", err)
			}
		}
		n.register(m, state)
	}
	// Promote live non-voters while there is room for voters, so a cluster
	// that lost a voter gracefully gets back to MaxVoters.
	ids := make([]string, 0, len(servers))
	for id := range servers {
		ids = append(ids, string(id))
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := servers[raft.ServerID(id)]
		if voters >= n.cfg.MaxVoters {
			break
		}
		if s.Suffrage == raft.Nonvoter && alive[id] {
			if err := n.raft.AddVoter(s.ID, s.Address, 0, raftChangeTimeout).Error(); err == nil {
				n.logger.Info("promoted non-voter to voter", "peer", id)
				voters++
			}
		}
	}
}

// suffrageName is how the log names a suffrage.
func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "non-voter"
}

// refusals remembers, per node, why the last admission attempt refused
// it, so the same refusal is logged once. Its lock is held for a map
// access and that log line only, never across a ping.
type refusals struct {
	mu  sync.Mutex
	why map[string]string
}

// note records why name was refused and, when that differs from the
// last reason, calls log. It logs under the lock, so a reader of the
// record (Refused) finds the line already written.
func (r *refusals) note(name, why string, log func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.why[name] == why {
		return
	}
	r.why[name] = why
	log()
}

// forget drops name's refusal: it was admitted.
func (r *refusals) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.why, name)
}

// Refused returns, per gossip member, why the membership step last
// refused to admit it (or to move it to a new address); a member is
// dropped once admitted. Tests wait on it rather than on the log line.
func (n *Node) Refused() map[string]string {
	n.rejected.mu.Lock()
	defer n.rejected.mu.Unlock()
	return maps.Clone(n.rejected.why)
}

// register records a live Raft member in the replicated node registry.
func (n *Node) register(m member, state fsm.State) {
	node := registration(m, state)
	if old, ok := state.Nodes[m.Name]; ok && old == node {
		return
	}
	cmd, err := fsm.EncodeCommand(fsm.CmdRegisterNode, node)
	if err != nil {
		n.logger.Error("encode node registration", "err", err)
		return
	}
	if _, err := n.applyLocal(cmd); err != nil {
		n.logger.Warn("registering node failed", "peer", m.Name, "err", err)
	}
}

// registration is the registry entry for a live member.
func registration(m member, state fsm.State) fsm.Node {
	raftAddr, _ := netip.ParseAddrPort(m.RaftAddr)
	node := fsm.Node{Name: m.Name, Address: m.Addr, RaftAddr: raftAddr, GossipAddr: m.Gossip, Witness: m.Meta.Witness, Schema: fsm.NodeSchema(m.Meta.Schema), JoinedAt: time.Now().UTC()}
	if old, ok := state.Nodes[m.Name]; ok {
		node.JoinedAt = old.JoinedAt
	}
	return node
}

// removeServer takes a node out of Raft and the registry, and revokes its
// certificates (with TLS) in the same entry. Removing a node that is not
// there is a no-op. When some remaining node cannot read a revocation (an
// older release), nothing is removed: a removed node must not keep a
// usable certificate.
func (n *Node) removeServer(ctx context.Context, name string) error {
	d := fsm.DeregisterNode{Name: name}
	if n.currentTLS() != nil {
		d.Revoke = n.revocation(name, time.Now())
	}
	cmd, err := fsm.EncodeCommand(fsm.CmdDeregisterNode, d)
	if err != nil {
		return err
	}
	if err := n.checkSchemaExcept(cmd, name); err != nil {
		return fmt.Errorf("removing %s revokes its certificate: %w", name, err)
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(name) {
			if err := n.raft.RemoveServer(s.ID, 0, raftChangeTimeout).Error(); err != nil {
				return fmt.Errorf("remove %s from raft: %w", name, err)
			}
			n.logger.Info("removed node from Raft", "peer", name)
		}
	}
	if _, ok := n.fsm.State().Nodes[name]; !ok && d.Revoke == nil {
		return nil
	}
	if _, err := n.applyExcept(cmd, name); err != nil {
		return fmt.Errorf("deregister %s: %w", name, err)
	}
	if d.Revoke != nil {
		n.logger.Info("revoked the certificates of the removed node", "peer", name, "serials", strings.Join(d.Revoke.Serials, ","), "issued_before", d.Revoke.IssuedBefore.Format(time.RFC3339))
	}
	return nil
}
