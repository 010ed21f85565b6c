package fsm

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// Maintenance, as an operator of Pacemaker or ldirectord does it: a node
// in standby (pcs node standby) and a disabled real server (ipvsadm weight
// 0) get no new connections — their weight is 0, so the ones they have
// finish — and a node in standby never stays DC while another node can
// direct. Both are replicated, shown in status, and undone by the opposite
// command.

// NodeStandby puts a node in standby or takes it out; payload of
// CmdNodeStandby.
type NodeStandby struct {
	Node    string    `json:"node"`
	Standby bool      `json:"standby"`
	By      string    `json:"by"` // the node the operator asked on
	At      time.Time `json:"at"`
}

// ServerRef names one real server of one service.
type ServerRef struct {
	Service spec.ServiceKey `json:"service"`
	Server  netip.AddrPort  `json:"server"`
}

func (r ServerRef) String() string { return r.Server.String() + " of " + r.Service.String() }

// ServerDisable disables a real server or enables it again; payload of
// CmdServerDisable.
type ServerDisable struct {
	ServerRef
	Disabled bool      `json:"disabled"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
}

// InStandby reports whether node is in standby, without copying the
// state (it is asked on every membership change).
func (f *FSM) InStandby(node string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Standby[node]
}

func (f *FSM) nodeStandby(c NodeStandby) *Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.state.Nodes[c.Node]; !ok {
		return &Result{Version: f.state.Spec.Version, Err: &spec.ValidationError{Problems: []spec.Problem{{Path: "node", Message: fmt.Sprintf("%s is not a node of this cluster", c.Node)}}}}
	}
	if f.state.Standby[c.Node] == c.Standby {
		return &Result{Version: f.state.Spec.Version}
	}
	if c.Standby {
		if f.state.Standby == nil {
			f.state.Standby = map[string]bool{}
		}
		f.state.Standby[c.Node] = true
	} else {
		delete(f.state.Standby, c.Node)
	}
	return &Result{Version: f.state.Spec.Version, Changed: true}
}

func (f *FSM) serverDisable(c ServerDisable) *Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.state.checkServer(c.ServerRef); err != nil {
		return &Result{Version: f.state.Spec.Version, Err: err}
	}
	i := slices.Index(f.state.Disabled, c.ServerRef)
	switch {
	case c.Disabled == (i >= 0):
		return &Result{Version: f.state.Spec.Version}
	case c.Disabled:
		f.state.Disabled = append(f.state.Disabled, c.ServerRef)
	default:
		f.state.Disabled = slices.Delete(f.state.Disabled, i, i+1)
	}
	return &Result{Version: f.state.Spec.Version, Changed: true}
}

// checkServer refuses a reference to a service or real server the spec
// does not have.
func (s State) checkServer(r ServerRef) error {
	for _, svc := range s.Spec.Services {
		if svc.Key() != r.Service {
			continue
		}
		for _, b := range s.Backends(svc, func(string) bool { return true }) {
			if b.AddrPort() == r.Server {
				return nil
			}
		}
		return &spec.ValidationError{Problems: []spec.Problem{{Path: "server", Message: fmt.Sprintf("%s is not a real server of %s", r.Server, r.Service)}}}
	}
	return &spec.ValidationError{Problems: []spec.Problem{{Path: "service", Message: fmt.Sprintf("no service %s in the spec", r.Service)}}}
}

// drained says why a backend gets no new connections, or "".
func (s State) drained(svc spec.Service, b Backend) string {
	switch {
	case b.Node != "" && s.Standby[b.Node]:
		return "node " + b.Node + " in standby"
	case slices.Contains(s.Disabled, ServerRef{Service: svc.Key(), Server: b.AddrPort()}):
		return "disabled"
	}
	return ""
}

// ResolveServer finds the real server an operator names: service is a
// service's name or its VIP:PORT[/PROTOCOL] (tcp by default), server an
// ADDR or ADDR:PORT (the service's real-server port by default).
func (s State) ResolveServer(service, server string) (ServerRef, error) {
	var svc *spec.Service
	for i, sv := range s.Spec.Services {
		key := sv.Key()
		if sv.Name != "" && sv.Name == service || key.String() == service ||
			(key.Protocol == spec.DefaultProtocol && netip.AddrPortFrom(key.VIP, key.Port).String() == service) {
			svc = &s.Spec.Services[i]
			break
		}
	}
	if svc == nil {
		return ServerRef{}, fmt.Errorf("no service %q in the spec (name it by its name or VIP:PORT[/PROTOCOL])", service)
	}
	var matches []Backend
	for _, b := range s.Backends(*svc, func(string) bool { return true }) {
		if b.AddrPort().String() == server || b.Address.String() == server {
			matches = append(matches, b)
		}
	}
	switch len(matches) {
	case 0:
		return ServerRef{}, fmt.Errorf("%s is not a real server of %s", server, svc.Key())
	case 1:
		return ServerRef{Service: svc.Key(), Server: matches[0].AddrPort()}, nil
	}
	return ServerRef{}, fmt.Errorf("%s is more than one real server of %s: give ADDR:PORT", server, svc.Key())
}
