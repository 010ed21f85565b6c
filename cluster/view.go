package cluster

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/quorum"
)

// View is the cluster as one node sees it: who is DC in which term,
// whether this node is in the majority's partition, and every node with
// its role. The status view (package status) adds the spec, the services
// and the health checks to it.
type View struct {
	Time            time.Time
	Node            string
	DC              string
	Term            uint64
	Quorum          bool
	Stale           bool
	Warning         string
	LastContactMS   int64
	NodesConfigured int
	Nodes           []NodeView
	// IsLeader is whether this node believes it leads (it may be about to
	// step down: see Quorum); LeaderAddr is the leader's Raft address.
	IsLeader   bool
	LeaderAddr string
	// SkippedEntries counts the log entries this node skipped (fsm.Skipped).
	SkippedEntries uint64
	// CertWarning says when this node's certificate or the CA expires
	// soon (CertWarning).
	CertWarning string
	// Credentials are the gossip keys and certificate in use (reload.go).
	Credentials Credentials
}

// NodeView is one node's line in the status view. JSON keys are part of
// the CLI contract.
type NodeView struct {
	Name      string `json:"name"`
	Address   string `json:"address,omitempty"`
	Status    string `json:"status"` // online | offline
	Role      string `json:"role"`   // DC | member | non-voter | joining | not in cluster
	Gossip    string `json:"gossip"` // alive | suspect | gone | unknown
	Dataplane string `json:"dataplane,omitempty"`
	// Witness marks a voter that never directs; CannotDirect says why a
	// node cannot hold the VIPs now, if it cannot.
	Witness      bool   `json:"witness,omitempty"`
	CannotDirect string `json:"cannot_direct,omitempty"`
	// Schema is the schema version the node's release reads (fsm.Schema):
	// live nodes say so in gossip, others as the registry last recorded.
	Schema int `json:"schema"`
	// Standby: the node is in standby (fsm/maintenance.go).
	Standby bool `json:"standby,omitempty"`
}

// contactTimeout is how long a follower may go without hearing from the DC
// before its view is reported as stale.
func (n *Node) contactTimeout() time.Duration { return 2 * n.cfg.Timing.RaftHeartbeatTimeout }

// View reports the cluster from this node's Raft state, gossip view and
// node registry. A node cut off from the DC says so.
func (n *Node) View() View {
	now := time.Now()
	st := View{Time: now.UTC(), Node: n.cfg.Name, Term: n.raft.CurrentTerm(), SkippedEntries: n.fsm.Skipped(), CertWarning: CertWarning(n.currentTLS(), now), Credentials: n.Credentials()}
	state := n.fsm.State()

	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	gossip := map[string]memberlist.NodeStateType{}
	dataplane := map[string]string{}
	metas := map[string]nodeMeta{}
	addrs := map[string]string{}
	for _, m := range n.members() {
		gossip[m.Name] = m.State
		dataplane[m.Name] = m.Meta.Dataplane
		metas[m.Name] = m.Meta
		if m.Addr.IsValid() {
			addrs[m.Name] = m.Addr.String()
		}
	}
	for name := range n.gossip.departedNodes() {
		if _, ok := gossip[name]; !ok {
			gossip[name] = memberlist.StateDead
		}
	}
	online := func(name string) bool {
		if name == n.cfg.Name {
			return true
		}
		s, ok := gossip[name]
		return ok && (s == memberlist.StateAlive || s == memberlist.StateSuspect)
	}

	isLeader := n.raft.State() == raft.Leader
	leaderAddr, leaderID := n.raft.LeaderWithID()
	st.IsLeader, st.LeaderAddr = isLeader, string(leaderAddr)
	voters, reachable := 0, 0
	suffrage := map[string]raft.ServerSuffrage{}
	for _, s := range servers {
		suffrage[string(s.ID)] = s.Suffrage
		if s.Suffrage == raft.Voter {
			voters++
			if online(string(s.ID)) {
				reachable++
			}
		}
	}
	// The DC is the one others hear from: its last contact is now. (Raft
	// keeps, on a leader, the last contact from when it followed.)
	last := n.raft.LastContact()
	if !last.IsZero() && !isLeader {
		st.LastContactMS = now.Sub(last).Milliseconds()
	}
	st.Quorum = quorum.Has(quorum.View{
		Voters: voters, ReachableVoters: reachable,
		IsLeader: isLeader, LeaderKnown: leaderID != "",
		LastLeaderContact: last, Now: now, ContactTimeout: n.contactTimeout(),
	})
	switch {
	case st.Quorum:
		st.DC = string(leaderID)
	case isLeader:
		st.Warning = fmt.Sprintf("this node is DC but reaches only %d of %d voters: it is about to step down", reachable, voters)
	case last.IsZero():
		st.Stale = true
		st.Warning = "this node has never heard from a DC: it is not part of a running cluster yet; the data below may be stale"
	default:
		st.Stale = true
		st.Warning = fmt.Sprintf("this node has lost contact with the DC (last contact %s ago): the data below is its last known state and may be stale",
			now.Sub(last).Round(time.Millisecond))
	}

	// A node that hears the DC but has not applied its log yet shows old
	// data. Raft heartbeats carry no commit index, so a restarted follower
	// hears the DC before it learns how far behind it is: until it has once
	// applied everything in its local log, it counts as catching up.
	applied, commit, lastIndex := n.raft.AppliedIndex(), n.raft.CommitIndex(), n.raft.LastIndex()
	if applied >= lastIndex && applied >= commit {
		n.caughtUp.Store(true)
	}
	// The DC's log is the others' truth: it is never stale (its applied
	// index trails its commit index only for the moment of each apply).
	if st.Warning == "" && !isLeader && (applied < commit || !n.caughtUp.Load()) {
		st.Stale = true
		st.Warning = fmt.Sprintf("this node is catching up with the DC (applied %d of %d log entries): the data below may be stale", applied, max(commit, lastIndex))
	}

	names := map[string]bool{n.cfg.Name: true}
	for name := range state.Nodes {
		names[name] = true
	}
	for _, s := range servers {
		names[string(s.ID)] = true
	}
	for name, s := range gossip {
		// A departed node that is in neither Raft nor the registry has
		// left for good and is not listed.
		if s == memberlist.StateAlive || s == memberlist.StateSuspect {
			names[name] = true
		}
	}
	st.NodesConfigured = len(state.Nodes)
	sorted := make([]string, 0, len(names))
	for name := range names {
		sorted = append(sorted, name)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		ns := NodeView{Name: name, Status: "offline", Gossip: "unknown", Dataplane: dataplane[name], Address: addrs[name]}
		if name == n.cfg.Name {
			ns.Dataplane = n.cfg.Dataplane
			ns.Gossip = "alive"
			n.gossip.mu.Lock()
			metas[name] = n.gossip.meta
			n.gossip.mu.Unlock()
		} else if s, ok := gossip[name]; ok {
			ns.Gossip = gossipStateName(s)
		}
		if reg, ok := state.Nodes[name]; ok {
			ns.Schema = fsm.NodeSchema(reg.Schema)
		}
		if m, ok := metas[name]; ok {
			ns.Schema = fsm.NodeSchema(m.Schema)
			ns.Witness = m.Witness
			if can, why := metaCanDirect(m); !can && !m.Witness && m.Dataplane != "none" {
				ns.CannotDirect = why
			}
		}
		ns.Standby = state.Standby[name]
		if online(name) {
			ns.Status = "online"
		}
		if reg, ok := state.Nodes[name]; ok && ns.Address == "" {
			ns.Address = reg.Address.String()
		}
		switch sf, inRaft := suffrage[name]; {
		case name == st.DC && st.DC != "":
			ns.Role = "DC"
		case inRaft && sf == raft.Voter:
			ns.Role = "member"
		case inRaft:
			ns.Role = "non-voter"
		case ns.Status == "online":
			ns.Role = "joining"
		default:
			ns.Role = "not in cluster"
		}
		st.Nodes = append(st.Nodes, ns)
	}

	return st
}
