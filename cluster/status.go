package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/quorum"
)

// Status is the cluster at a glance as seen from one node: what crm_mon
// and ipvsadm -Ln show together. JSON keys are part of the CLI contract.
type Status struct {
	Time            time.Time       `json:"time"`
	Node            string          `json:"node"`
	DC              string          `json:"dc"`
	Term            uint64          `json:"term"`
	Quorum          bool            `json:"quorum"`
	Stale           bool            `json:"stale"`
	Warning         string          `json:"warning,omitempty"`
	LastContactMS   int64           `json:"last_contact_ms"`
	SpecVersion     uint64          `json:"spec_version"`
	NodesConfigured int             `json:"nodes_configured"`
	Nodes           []NodeStatus    `json:"nodes"`
	VIPs            []VIPStatus     `json:"vips"`
	Services        []ServiceStatus `json:"services"`
	Policy          fsm.Policy      `json:"policy"`
}

// NodeStatus is one node's line in the status view.
type NodeStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address,omitempty"`
	Status    string `json:"status"` // online | offline
	Role      string `json:"role"`   // DC | member | non-voter | joining | not in cluster
	Gossip    string `json:"gossip"` // alive | suspect | gone | unknown
	Dataplane string `json:"dataplane,omitempty"`
}

// VIPStatus says where a virtual IP is.
type VIPStatus struct {
	Address   string `json:"address"`
	Interface string `json:"interface,omitempty"`
	HeldBy    string `json:"held_by"`
}

// ServiceStatus is one virtual service with its real servers.
type ServiceStatus struct {
	Name        string             `json:"name,omitempty"`
	VIP         string             `json:"vip"`
	Port        uint16             `json:"port"`
	Protocol    string             `json:"protocol"`
	Scheduler   string             `json:"scheduler"`
	Forwarding  string             `json:"forwarding"`
	Persistence string             `json:"persistence,omitempty"`
	Fallback    string             `json:"fallback,omitempty"`
	HealthCheck string             `json:"health_check,omitempty"`
	RealServers []RealServerStatus `json:"real_servers"`
}

// RealServerStatus is one backend of a service.
type RealServerStatus struct {
	Address string `json:"address"`
	Port    uint16 `json:"port"`
	Weight  int    `json:"weight"`
	Node    string `json:"node,omitempty"` // set when the backend is a cluster node
	// Health is "up" or "down" from the DC's checks, "unknown" when the DC
	// cannot be asked, and empty when the service has no check.
	Health    string     `json:"health,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// contactTimeout is how long a follower may go without hearing from the DC
// before its view is reported as stale.
func (n *Node) contactTimeout() time.Duration { return 2 * n.cfg.Timing.RaftHeartbeatTimeout }

// Status assembles the status view from this node's Raft state, gossip
// view and replicated FSM. A node cut off from the DC says so.
func (n *Node) Status() Status {
	now := time.Now()
	st := Status{Time: now.UTC(), Node: n.cfg.Name, Term: n.raft.CurrentTerm()}
	state := n.fsm.State()
	st.SpecVersion = state.Spec.Version
	st.Policy = state.Spec.Policy

	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	gossip := map[string]memberlist.NodeStateType{}
	dataplane := map[string]string{}
	addrs := map[string]string{}
	for _, m := range n.members() {
		gossip[m.Name] = m.State
		dataplane[m.Name] = m.Meta.Dataplane
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
	_, leaderID := n.raft.LeaderWithID()
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
	last := n.raft.LastContact()
	if !last.IsZero() {
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
	if st.Warning == "" && (applied < commit || !n.caughtUp.Load()) {
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
		ns := NodeStatus{Name: name, Status: "offline", Gossip: "unknown", Dataplane: dataplane[name], Address: addrs[name]}
		if name == n.cfg.Name {
			ns.Dataplane = n.cfg.Dataplane
			ns.Gossip = "alive"
		} else if s, ok := gossip[name]; ok {
			ns.Gossip = gossipStateName(s)
		}
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

	for _, v := range state.Spec.VIPs {
		st.VIPs = append(st.VIPs, VIPStatus{Address: v.Address.String(), Interface: v.Interface, HeldBy: st.DC})
	}
	checks := n.healthView(isLeader, state)
	for _, svc := range state.Spec.Services {
		st.Services = append(st.Services, serviceStatus(svc, state, online, checks))
	}
	return st
}

// healthView returns the DC's health-check results: this node's own when it
// is DC, otherwise asked from the DC. nil means "unknown".
func (n *Node) healthView(isLeader bool, state fsm.State) map[health.Key]health.State {
	hasChecks := false
	for _, svc := range state.Spec.Services {
		hasChecks = hasChecks || svc.HealthCheck != nil
	}
	if !hasChecks {
		return nil
	}
	if isLeader {
		return n.localHealth()
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := n.call(ctx, string(addr), rpcRequest{Op: opHealth})
	if err != nil || resp.Error != "" {
		return nil
	}
	out := make(map[health.Key]health.State, len(resp.Health))
	for _, h := range resp.Health {
		out[health.Key{Service: h.Service, Server: h.Server}] = h.State
	}
	return out
}

func serviceStatus(svc fsm.Service, state fsm.State, online func(string) bool, checks map[health.Key]health.State) ServiceStatus {
	ss := ServiceStatus{
		Name: svc.Name, VIP: svc.VIP.String(), Port: svc.Port, Protocol: svc.Protocol,
		Scheduler: svc.Scheduler, Forwarding: svc.Forwarding,
	}
	if svc.Persistence.Timeout > 0 {
		ss.Persistence = svc.Persistence.Timeout.String()
		if svc.Persistence.Netmask.IsValid() {
			ss.Persistence += " netmask " + svc.Persistence.Netmask.String()
		}
	}
	if svc.Fallback != nil {
		ss.Fallback = netip.AddrPortFrom(svc.Fallback.Address, svc.Fallback.Port).String()
	}
	if svc.HealthCheck != nil {
		ss.HealthCheck = svc.HealthCheck.Type
	}
	for _, b := range state.Backends(svc, online) {
		rs := RealServerStatus{Address: b.Address.String(), Port: b.Port, Weight: b.Weight, Node: b.Node}
		if svc.HealthCheck != nil {
			rs.Health = "unknown"
			if checks != nil {
				h, ok := checks[health.Key{Service: svc.Key(), Server: netip.AddrPortFrom(b.Address, b.Port)}]
				switch {
				case !ok || !h.Checked:
					rs.Health = "up" // not probed yet: counted as up
				case h.Up:
					rs.Health = "up"
				default:
					rs.Health = "down"
				}
				if ok && !h.Since.IsZero() {
					since := h.Since
					rs.Since = &since
				}
				if ok {
					rs.LastError = h.LastError
				}
			}
		}
		ss.RealServers = append(ss.RealServers, rs)
	}
	return ss
}
