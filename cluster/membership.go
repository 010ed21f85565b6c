package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/retry"
)

// How often and how long the membership steps try. A LAN answers within
// milliseconds; these are the bounds of a peer that is down or slow.
const (
	// reconcileInterval is how often every node refreshes its peers file
	// and reconnects to nodes gossip has lost.
	reconcileInterval = time.Second
	// joinRetry is the pause between two gossip joins of one Join.
	joinRetry = 300 * time.Millisecond
	// rejoinRetry and rejoinAttempt pace a restarted node's rejoin of the
	// peers it remembers, in the background.
	rejoinRetry   = 2 * time.Second
	rejoinAttempt = 5 * time.Second
	// forwardRetry is the pause between asks of the DC while none is
	// elected.
	forwardRetry = 100 * time.Millisecond
	// raftChangeTimeout bounds one change of the Raft configuration
	// (adding, promoting, removing a server).
	raftChangeTimeout = 5 * time.Second
	// gossipLeaveTimeout bounds the broadcast of this node's departure.
	gossipLeaveTimeout = 2 * time.Second
)

// Join asks gossip to join the nodes at addrs (host:gossip-port), retrying
// until ctx expires. Joining a cluster this node already belongs to is a
// no-op. After gossip, it proves that Raft's mutual TLS works with a peer,
// so a wrong certificate is reported here rather than discovered later.
func (n *Node) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("join: no addresses given")
	}
	var joined int
	var partial error
	err := retry.Do(ctx, retry.Policy{Interval: joinRetry}, func(context.Context, int) error {
		var err error
		if joined, err = n.ml.Join(addrs); joined > 0 {
			partial = err
			return nil
		}
		if keyMismatch(err) {
			// Retrying cannot help: the peers use another key.
			return retry.Stop(fmt.Errorf("join %v: %w (every node needs the same --key-file): %w", addrs, ErrGossipKey, err))
		}
		return err
	})
	if errors.Is(err, ErrGossipKey) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("join %v: %w (check the address, that the gossip port is reachable and that every node uses the same gossip key)", addrs, err)
	}
	if partial != nil {
		n.logger.Warn("join reached only some nodes", "joined", joined, "err", partial)
	}
	n.logger.Info("joined gossip", "contacted", joined)
	if err := n.checkPeerTLS(ctx); err != nil {
		return joined, err
	}
	n.savePeers()
	return joined, nil
}

// keyMismatch recognises memberlist's errors for a gossip key that does
// not match, or encryption on one side only. memberlist has no typed
// errors for them, so its words (v0.5.4, security.go and net.go) are
// compared, without regard to case: they have changed case between
// releases, and an exact match once silently stopped working.
func keyMismatch(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"no installed keys could decrypt",
		"encryption is configured but remote state is not encrypted",
		"remote state is encrypted and encryption is not configured",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkPeerTLS pings one peer over the Raft port. Success means both
// certificates chain to the same CA.
func (n *Node) checkPeerTLS(ctx context.Context) error {
	var lastErr error
	for _, m := range n.members() {
		if m.Name == n.cfg.Name || m.MetaErr != nil || m.State != memberlist.StateAlive {
			continue
		}
		if _, err := n.Ping(ctx, m.Name, m.RaftAddr); err != nil {
			hint := ""
			if !errors.Is(err, ErrRefused) { // the peer's check, not the CA, said no
				hint = " (are this node's certificate and the peer's issued by the same cluster CA?)"
			}
			lastErr = fmt.Errorf("joined gossip, but Raft over mutual TLS to %s (%s) failed: %w%s", m.Name, m.RaftAddr, err, hint)
			continue
		}
		return nil
	}
	return lastErr
}

// rejoin re-joins the peers remembered from the last run, in the
// background, until one answers.
func (n *Node) rejoin(ctx context.Context, peers []string) {
	_ = retry.Do(ctx, retry.Policy{Interval: rejoinRetry, PerAttempt: rejoinAttempt}, func(actx context.Context, attempt int) error {
		_, err := n.Join(actx, peers)
		if err != nil {
			n.logger.Debug("rejoin failed, retrying", "attempt", attempt, "err", err)
		}
		return err
	})
}

func (n *Node) peersFile() string { return filepath.Join(n.cfg.DataDir, "peers.json") }

// savePeers remembers the gossip addresses of the other live members so a
// restarted agent finds its cluster again without a new join.
func (n *Node) savePeers() {
	var peers []string
	for _, m := range n.members() {
		if m.Name != n.cfg.Name && m.Gossip.IsValid() {
			peers = append(peers, m.Gossip.String())
		}
	}
	if len(peers) == 0 {
		return
	}
	sort.Strings(peers)
	if slices.Equal(peers, n.loadPeers()) {
		return
	}
	b, _ := json.Marshal(peers)
	tmp := n.peersFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		n.logger.Warn("could not save peers", "err", err)
		return
	}
	if err := os.Rename(tmp, n.peersFile()); err != nil {
		n.logger.Warn("could not save peers", "err", err)
	}
}

func (n *Node) loadPeers() []string {
	b, err := os.ReadFile(n.peersFile())
	if err != nil {
		return nil
	}
	peers, err := parsePeers(b)
	if err != nil {
		n.logger.Warn("ignoring unreadable peers file", "file", n.peersFile(), "err", err)
		return nil
	}
	return peers
}

// parsePeers reads the peers file: a JSON list of HOST:PORT gossip
// addresses.
func parsePeers(b []byte) ([]string, error) {
	var peers []string
	if err := json.Unmarshal(b, &peers); err != nil {
		return nil, err
	}
	for _, p := range peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("peer %q: %w", p, err)
		}
	}
	return peers, nil
}

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
			if n.rejected.note(m.Name, m.MetaErr.Error()) {
				n.logger.Warn("ignoring gossip member with unusable metadata", "peer", m.Name, "err", m.MetaErr)
			}
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
				if n.rejected.note(m.Name, why) {
					n.logger.Warn("not admitting node to Raft", "peer", m.Name, "why", why)
				}
				continue
			}
			_, err := n.Ping(ctx, m.Name, m.RaftAddr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if n.rejected.note(m.Name, err.Error()) {
					n.logger.Warn("not admitting node to Raft: its Raft port does not answer over mutual TLS", "peer", m.Name, "raft", m.RaftAddr, "err", err)
				}
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
				if n.rejected.note(m.Name, err.Error()) {
					n.logger.Warn("not moving node to its new address: its Raft port there does not answer as the node over mutual TLS", "peer", m.Name, "raft", m.RaftAddr, "err", err)
				}
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
// access only, never across a ping.
type refusals struct {
	mu  sync.Mutex
	why map[string]string
}

// note records why name was refused and reports whether that differs
// from the last reason (and so is worth a log line).
func (r *refusals) note(name, why string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.why[name] == why {
		return false
	}
	r.why[name] = why
	return true
}

// forget drops name's refusal: it was admitted.
func (r *refusals) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.why, name)
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

// askDC sends a request to the current DC, retrying while an election is
// in progress.
func (n *Node) askDC(ctx context.Context, req rpcRequest) error {
	_, err := n.forward(ctx, req)
	return err
}

func (n *Node) forward(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	var resp rpcResponse
	err := retry.Do(ctx, retry.Policy{Interval: forwardRetry}, func(context.Context, int) error {
		addr, id := n.raft.LeaderWithID()
		if addr == "" {
			return ErrNoDC
		}
		r, err := n.call(ctx, string(addr), string(id), req)
		switch {
		case err != nil:
			return err
		case r.NotDC:
			return ErrNoDC
		case (r.Error != "" || r.Code != "") && len(r.Problems) == 0 && !r.Conflict:
			resp = r
			return retry.Stop(n.remoteErr(r))
		}
		resp = r
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return rpcResponse{}, ErrNoDC
	}
	return resp, err
}
