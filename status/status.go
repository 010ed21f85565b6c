package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
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
	Policy          spec.Policy        `json:"policy"`
	Fencing         FencingStatus      `json:"fencing"`
	// Resources is the spec's resources as the DC runs them (this node's
	// own when it is DC); ResourceNote says why they are unknown, or
	// what this node, not DC, may still run.
	Resources    []resources.Status `json:"resources,omitempty"`
	ResourceNote string             `json:"resource_note,omitempty"`
	// SkippedEntries counts the log entries this node skipped because its
	// release cannot read them (their proposer marked them safe to skip).
	SkippedEntries uint64 `json:"skipped_entries,omitempty"`
	// CertWarning says when this node's certificate or the cluster CA
	// expires within 30 days.
	CertWarning string `json:"cert_warning,omitempty"`
	// Credentials are the gossip key fingerprints and the certificate
	// serial this node uses, as its start or last reload set them.
	Credentials *cluster.Credentials `json:"credentials,omitempty"`
	// HealthNote says why the real servers' health is unknown, when it is.
	HealthNote string `json:"health_note,omitempty"`
	// Health is the verdict a monitoring system acts on (Verdict).
	Health Verdict `json:"health"`
}

// VIPStatus says where a virtual IP is: who the log says holds it, and
// what this node's kernel carries.
type VIPStatus struct {
	Address   string `json:"address"`
	Interface string `json:"interface,omitempty"`
	// HeldBy is the node the log records as holding the VIP on its
	// interface, while it has not let go; empty when nobody does.
	HeldBy string `json:"held_by"`
	// Holder is the log's last record for the VIP (nil: never claimed).
	Holder *fsm.Holder `json:"holder,omitempty"`
	// Takeover says what a DC that does not hold the VIP yet waits for.
	Takeover string `json:"takeover,omitempty"`
	// ThisNode is this node's kernel (nil without a data plane).
	ThisNode *Kernel `json:"this_node,omitempty"`
}

// Kernel is where this node's kernel has a VIP: on its interface (it
// answers ARP for it there) and on lo (it is a real server).
type Kernel struct {
	Interface   string `json:"interface"`
	OnInterface bool   `json:"on_interface"`
	OnLo        bool   `json:"on_lo"`
}

// KernelFunc reports this node's kernel truth for a VIP.
type KernelFunc func(vip netip.Addr) Kernel

// FencingStatus is the spec's fence devices and the fencing history, as
// crm_mon shows them. No parameter of a device appears here: a value may
// be private, a secret is a file on each node.
type FencingStatus struct {
	Devices []DeviceStatus   `json:"devices"`
	History []fsm.FenceEvent `json:"history"`
}

// DeviceStatus is one fence device.
type DeviceStatus struct {
	Name   string   `json:"name"`
	Agent  string   `json:"agent"`
	Action string   `json:"action"`
	Hosts  []string `json:"hosts"`
	// Check is the DC's last validate-all or monitor result that changed
	// (nil: not checked yet).
	Check *fsm.DeviceCheck `json:"check,omitempty"`
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
	Health string `json:"health,omitempty"`
	// Drained says why the real server gets no new connections: its node
	// is in standby, or it is disabled.
	Drained   string     `json:"drained,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Checks is the DC's health-check results, by checked real server; nil
// means unknown.
type Checks map[health.Key]health.State

// Assemble puts the view together. It is a pure function of its inputs;
// kernel may be nil (no data plane).
func Assemble(v cluster.View, state fsm.State, checks Checks, kernel KernelFunc) Status {
	st := Status{
		Time: v.Time, Node: v.Node, DC: v.DC, Term: v.Term, Quorum: v.Quorum, Stale: v.Stale,
		Warning: v.Warning, LastContactMS: v.LastContactMS, NodesConfigured: v.NodesConfigured, SkippedEntries: v.SkippedEntries, CertWarning: v.CertWarning,
		Nodes: v.Nodes, SpecVersion: state.Spec.Version, Policy: state.Spec.Policy,
		Fencing: fencingStatus(state),
	}
	if c := v.Credentials; c.GossipEncryptsWith != "" || c.CertSerial != "" {
		st.Credentials = &c
	}
	online := map[string]bool{}
	for _, n := range v.Nodes {
		online[n.Name] = n.Status == "online"
	}
	isOnline := func(name string) bool { return online[name] }
	for _, vip := range state.Spec.VIPs {
		st.VIPs = append(st.VIPs, vipStatus(vip, v, state, kernel))
	}
	for _, svc := range state.Spec.Services {
		st.Services = append(st.Services, serviceStatus(svc, state, isOnline, checks))
	}
	st.Health = judge(st)
	return st
}

func vipStatus(vip spec.VIP, v cluster.View, state fsm.State, kernel KernelFunc) VIPStatus {
	vs := VIPStatus{Address: vip.Address.String(), Interface: vip.Interface}
	if h, ok := state.Holders[vip.Address]; ok {
		vs.Holder = &h
		if !h.Released {
			vs.HeldBy = h.Node
		}
		if v.DC != "" && h.Node != v.DC && !h.Released {
			switch state.Spec.Policy.TakeoverPolicy() {
			case spec.TakeoverFence:
				vs.Takeover = fmt.Sprintf("%s fences %s before it claims the VIP (takeover: fence)", v.DC, h.Node)
			case spec.TakeoverLease:
				vs.Takeover = fmt.Sprintf("%s claims the VIP once the lease of %s has certainly ended (takeover: lease)", v.DC, h.Node)
			}
		}
	}
	if kernel != nil {
		k := kernel(vip.Address)
		vs.ThisNode = &k
	}
	return vs
}

func fencingStatus(state fsm.State) FencingStatus {
	out := FencingStatus{Devices: []DeviceStatus{}, History: state.FenceHistory}
	if out.History == nil {
		out.History = []fsm.FenceEvent{}
	}
	for _, d := range state.Spec.Fencing.Devices {
		ds := DeviceStatus{Name: d.Name, Agent: d.Agent, Action: d.Action, Hosts: slices.Sorted(maps.Keys(d.Hosts))}
		if c, ok := state.DeviceChecks[d.Name]; ok {
			ds.Check = &c
		}
		out.Devices = append(out.Devices, ds)
	}
	return out
}

func serviceStatus(svc spec.Service, state fsm.State, online func(string) bool, checks Checks) ServiceStatus {
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
		rs := RealServerStatus{Address: b.Address.String(), Port: b.Port, Weight: b.Weight, Node: b.Node, Drained: b.Drained}
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
	Service spec.ServiceKey `json:"service"`
	Server  netip.AddrPort  `json:"server"`
	State   health.State    `json:"state"`
}

// Node is what Source needs from the cluster node.
type Node interface {
	View() cluster.View
	FSM() *fsm.FSM
	CallDC(ctx context.Context, op string, req, resp any) error
	Handle(op string, h cluster.Handler)
	RegisterError(code string, sentinel error)
}

// Source assembles the status view on demand.
type Source struct {
	node   Node
	kernel KernelFunc
	// local is this node's own health checks (the director's), or nil
	// without a data plane.
	local func() map[health.Key]health.State
	// res is this node's resources (the director's), or nil.
	res func() []resources.Status
}

// NewSource returns a Source and registers, on the node's RPC channel, the
// operation that serves this node's health checks to peers while it is DC.
// kernel reports this node's kernel truth for a VIP (nil without a data
// plane).
func NewSource(node Node, local func() map[health.Key]health.State, kernel KernelFunc) *Source {
	s := &Source{node: node, local: local, kernel: kernel}
	node.Handle(HealthOp, s.serveHealth)
	node.Handle(ResourcesOp, s.serveResources)
	node.RegisterError("status.no-checks", errNoChecks)
	return s
}

// ResourcesOp is the RPC operation on which the DC serves its resources'
// states.
const ResourcesOp = "resources"

// WithResources makes the view show this node's resources (the
// director's) while it is DC, and serve them to peers.
func (s *Source) WithResources(res func() []resources.Status) *Source {
	s.res = res
	return s
}

func (s *Source) serveResources(context.Context, string, json.RawMessage) (any, error) {
	if !s.node.View().IsLeader {
		return nil, cluster.ErrNoDC
	}
	if s.res == nil {
		return []resources.Status{}, nil
	}
	return s.res(), nil
}

// resources are the DC's resources, and a note: why they are unknown, or
// what this node may still run although it is not DC.
func (s *Source) resources(v cluster.View, state fsm.State) ([]resources.Status, string) {
	if len(state.Spec.Resources) == 0 && s.res == nil {
		return nil, ""
	}
	if v.IsLeader {
		if s.res == nil {
			return nil, "the DC runs no resources (no data plane)"
		}
		return s.res(), ""
	}
	var note string
	if s.res != nil {
		for _, r := range s.res() {
			if r.State != resources.StateStopped && r.State != resources.StateFailed {
				note = fmt.Sprintf("this node is not DC and resource %s is %s here", r.Name, r.State)
			}
		}
	}
	if len(state.Spec.Resources) == 0 {
		return nil, note
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	var out []resources.Status
	if err := s.node.CallDC(ctx, ResourcesOp, struct{}{}, &out); err != nil {
		return nil, strings.TrimPrefix(note+"; ", "; ") + "the DC's resources could not be asked: " + err.Error()
	}
	return out, note
}

func (s *Source) serveHealth(context.Context, string, json.RawMessage) (any, error) {
	v := s.node.View()
	if !v.IsLeader {
		return nil, cluster.ErrNoDC
	}
	if s.local == nil {
		return nil, errNoChecks
	}
	out := []healthEntry{}
	for k, st := range s.local() {
		out = append(out, healthEntry{Service: k.Service, Server: k.Server, State: st})
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
	checks, note := s.checks(v, state)
	st := Assemble(v, state, checks, s.kernel)
	st.HealthNote = note
	st.Resources, st.ResourceNote = s.resources(v, state)
	return st
}

// errNoChecks is the DC's answer when it runs no health checks.
var errNoChecks = errors.New("the DC runs no health checks: it has no data plane (--dataplane none or a witness)")

// checks are the DC's health checks, or nil and why they are unknown.
func (s *Source) checks(v cluster.View, state fsm.State) (Checks, string) {
	hasChecks := false
	for _, svc := range state.Spec.Services {
		hasChecks = hasChecks || svc.HealthCheck != nil
	}
	switch {
	case !hasChecks:
		return nil, ""
	case v.IsLeader:
		if s.local == nil {
			return nil, errNoChecks.Error()
		}
		return s.local(), ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	var entries []healthEntry
	if err := s.node.CallDC(ctx, HealthOp, struct{}{}, &entries); errors.Is(err, errNoChecks) {
		return nil, errNoChecks.Error()
	} else if err != nil {
		return nil, "the DC's health checks could not be asked: " + err.Error()
	}
	out := make(Checks, len(entries))
	for _, e := range entries {
		out[health.Key{Service: e.Service, Server: e.Server}] = e.State
	}
	return out, ""
}
