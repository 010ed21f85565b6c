package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Not every node can direct (hold the VIPs and the IPVS table): a witness
// (a voter that only breaks ties), a node run with --dataplane none, and a
// node whose claim the kernel refused (its interface for a VIP is missing,
// say) cannot. Each says so in its gossip metadata, and a DC that cannot
// direct hands leadership to one that can, so a node that can is DC
// whenever one is reachable.

// CanDirect reports whether this node can hold the VIPs, and why not.
func (n *Node) CanDirect() (bool, string) {
	if n.fsm.InStandby(n.cfg.Name) {
		return false, standbyReason
	}
	n.gossip.mu.Lock()
	defer n.gossip.mu.Unlock()
	return metaCanDirect(n.gossip.meta)
}

// standbyReason is why a node in standby cannot direct.
const standbyReason = "it is in standby (raftlb node unstandby brings it back)"

func metaCanDirect(m nodeMeta) (bool, string) {
	switch {
	case m.Witness:
		return false, "a witness never directs"
	case m.Dataplane == "none":
		return false, "it runs without a data plane (--dataplane none)"
	case m.Stopping:
		return false, "its agent is stopping"
	case m.NoDirect != "":
		return false, m.NoDirect
	}
	return true, ""
}

// SetCannotDirect tells the peers that this node cannot hold the VIPs, and
// why ("" clears it: it can again). The change travels with gossip.
func (n *Node) SetCannotDirect(reason string) {
	if len(reason) > maxNoDirect {
		reason = reason[:maxNoDirect]
	}
	changed := n.updateMeta(func(m *nodeMeta) bool {
		was := m.NoDirect
		m.NoDirect = reason
		return was != reason
	}, 5*time.Second, "whether this node can direct")
	switch {
	case !changed:
	case reason != "":
		n.logger.Warn("this node cannot direct: peers will not hand it leadership", "reason", reason)
	default:
		n.logger.Info("this node can direct again")
	}
}

// Drain tells the peers that this agent is stopping, and waits (up to
// the gossip leave timeout) for the news to go out: the DC gives this node
// no new connections from then on, and the ones it already sent here are
// still answered, for as long as the caller waits before it takes the VIPs
// off lo. A graceful stop drains before it leaves gossip, so no handshake
// is in flight to this node when the DC removes it from its table (the
// DC's kernel resets the connections of a removed real server).
func (n *Node) Drain() {
	n.updateMeta(func(m *nodeMeta) bool {
		was := m.Stopping
		m.Stopping = true
		return !was
	}, gossipLeaveTimeout, "that this node is stopping")
}

// StoppingNodes lists the live members whose agents are stopping
// (Drain): real servers to give no new connections.
func (n *Node) StoppingNodes() map[string]bool {
	out := map[string]bool{}
	for _, m := range n.members() {
		if m.MetaErr == nil && m.Meta.Stopping {
			out[m.Name] = true
		}
	}
	return out
}

// maxNoDirect bounds the reason in the 512-byte gossip metadata.
const maxNoDirect = 200

// Directors lists the live voters that can direct, this node included if
// it can, sorted by name.
func (n *Node) Directors() []string {
	voters := map[string]bool{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters[string(s.ID)] = true
			}
		}
	}
	var out []string
	for _, m := range n.members() {
		if m.MetaErr != nil || m.State != memberlist.StateAlive || !voters[m.Name] || n.fsm.InStandby(m.Name) {
			continue
		}
		if ok, _ := metaCanDirect(m.Meta); ok {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// TransferLeadershipTo hands leadership to the voter named to, because
// this node cannot direct (reason is logged).
func (n *Node) TransferLeadershipTo(to, reason string) error {
	if n.raft.State() != raft.Leader {
		return nil
	}
	var addr raft.ServerAddress
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == to && s.Suffrage == raft.Voter {
				addr = s.Address
			}
		}
	}
	if addr == "" {
		return fmt.Errorf("leadership transfer: %s is not a voter", to)
	}
	n.logger.Warn("transferring leadership to a node that can direct", "to", to, "reason", reason)
	if err := n.raft.LeadershipTransferToServer(raft.ServerID(to), addr).Error(); err != nil {
		return fmt.Errorf("leadership transfer to %s: %w", to, err)
	}
	return nil
}

// CallNode sends a registered operation to the member named name and
// decodes its answer into resp.
func (n *Node) CallNode(ctx context.Context, name, op string, req, resp any) error {
	var addr string
	for _, m := range n.members() {
		if m.Name == name && m.MetaErr == nil {
			addr = m.RaftAddr
		}
	}
	if addr == "" {
		return fmt.Errorf("%s: not a live member", name)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s request: %w", op, err)
	}
	r, err := n.call(ctx, addr, name, rpcRequest{Op: op, Body: body})
	if err != nil {
		return err
	}
	if err := n.remoteErr(r); err != nil {
		return err
	}
	if err := json.Unmarshal(r.Body, resp); err != nil {
		return fmt.Errorf("%s response from %s: %w", op, name, err)
	}
	return nil
}

// LiveMembers lists the members gossip sees alive, with whether each can
// direct, this node included.
func (n *Node) LiveMembers() map[string]bool {
	out := map[string]bool{}
	for _, m := range n.members() {
		if m.MetaErr != nil || m.State != memberlist.StateAlive {
			continue
		}
		out[m.Name], _ = metaCanDirect(m.Meta)
	}
	return out
}
