package status

import (
	"context"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
)

// Status is the cluster at a glance as seen from one node. JSON keys are
// part of the CLI contract.
type Status struct {
	Time            time.Time          `json:"time"`
	Node            string             `json:"node"`
	DC              string             `json:"dc"`
	Term            uint64             `json:"term"`
	Quorum          bool               `json:"quorum"`
	Stale           bool               `json:"stale"`
	Warning         string             `json:"warning,omitempty"`
	LastContactMS   int64              `json:"last_contact_ms"`
	SpecVersion     uint64             `json:"spec_version"`
	NodesConfigured int                `json:"nodes_configured"`
	Nodes           []cluster.NodeView `json:"nodes"`
	VIPs            []VIPStatus        `json:"vips"`
	Services        []ServiceStatus    `json:"services"`
	Policy          fsm.Policy         `json:"policy"`
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

// Checks is the DC's health-check results, by checked real server; nil
// means unknown.
type Checks map[health.Key]health.State

// Assemble puts the view together. It is a pure function of its inputs.
func Assemble(v cluster.View, state fsm.State, checks Checks) Status {
	st := Status{
		Time: v.Time, Node: v.Node, DC: v.DC, Term: v.Term, Quorum: v.Quorum, Stale: v.Stale,
		Warning: v.Warning, LastContactMS: v.LastContactMS, NodesConfigured: v.NodesConfigured,
		Nodes: v.Nodes, SpecVersion: state.Spec.Version, Policy: state.Spec.Policy,
	}
	online := map[string]bool{}
	for _, n := range v.Nodes {
		online[n.Name] = n.Status == "online"
	}
	isOnline := func(name string) bool { return online[name] }
	for _, vip := range state.Spec.VIPs {
		st.VIPs = append(st.VIPs, VIPStatus{Address: vip.Address.String(), Interface: vip.Interface, HeldBy: v.DC})
	}
	for _, svc := range state.Spec.Services {
		st.Services = append(st.Services, serviceStatus(svc, state, isOnline, checks))
	}
	return st
}

func serviceStatus(svc fsm.Service, state fsm.State, online func(string) bool, checks Checks) ServiceStatus {
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
				h, ok := checks[health.Key{Service: svc.Key(), Server: b.AddrPort()}]
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

// HealthOp is the RPC operation on which the DC serves its health checks.
const HealthOp = "health"

// healthEntry is one real server's health on the wire.
type healthEntry struct {
	Service fsm.ServiceKey `json:"service"`
	Server  netip.AddrPort `json:"server"`
	State   health.State   `json:"state"`
}

// Node is what Source needs from the cluster node.
type Node interface {
	View() cluster.View
	FSM() *fsm.FSM
	CallDC(ctx context.Context, op string, req, resp any) error
	Handle(op string, h cluster.Handler)
}

// Source assembles the status view on demand.
type Source struct {
	node Node
	// local is this node's own health checks (the director's), or nil
	// without a data plane.
	local func() map[health.Key]health.State
}

// NewSource returns a Source and registers, on the node's RPC channel, the
// operation that serves this node's health checks to peers while it is DC.
func NewSource(node Node, local func() map[health.Key]health.State) *Source {
	s := &Source{node: node, local: local}
	node.Handle(HealthOp, s.serveHealth)
	return s
}

func (s *Source) serveHealth(context.Context, string, json.RawMessage) (any, error) {
	v := s.node.View()
	if !v.IsLeader {
		return nil, cluster.ErrNoDC
	}
	out := []healthEntry{}
	if s.local != nil {
		for k, st := range s.local() {
			out = append(out, healthEntry{Service: k.Service, Server: k.Server, State: st})
		}
	}
	return out, nil
}

// askTimeout bounds the question to the DC for its health checks.
const askTimeout = time.Second

// Status is the view now: this node's own checks when it is DC, otherwise
// the DC's, asked over RPC (unknown when the DC cannot be asked).
func (s *Source) Status() Status {
	v := s.node.View()
	state := s.node.FSM().State()
	return Assemble(v, state, s.checks(v, state))
}

func (s *Source) checks(v cluster.View, state fsm.State) Checks {
	hasChecks := false
	for _, svc := range state.Spec.Services {
		hasChecks = hasChecks || svc.HealthCheck != nil
	}
	switch {
	case !hasChecks:
		return nil
	case v.IsLeader:
		if s.local == nil {
			return nil
		}
		return s.local()
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	var entries []healthEntry
	if err := s.node.CallDC(ctx, HealthOp, struct{}{}, &entries); err != nil {
		return nil
	}
	out := make(Checks, len(entries))
	for _, e := range entries {
		out[health.Key{Service: e.Service, Server: e.Server}] = e.State
	}
	return out
}
