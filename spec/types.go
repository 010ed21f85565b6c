package spec

import (
	"net/netip"
	"time"
)

// Spec is the declarative service definition submitted with `raftlb apply`.
type Spec struct {
	// Version increases by one on every change of the spec; an apply that
	// submits an identical spec leaves it as it is.
	Version  uint64    `json:"version"`
	VIPs     []VIP     `json:"vips"`
	Services []Service `json:"services"`
	Policy   Policy    `json:"policy"`
	Fencing  Fencing   `json:"fencing,omitzero"`
	// Resources run on the DC only, started in order once it holds the
	// VIPs and stopped in reverse when it lets go (spec/resources.go).
	Resources []Resource `json:"resources,omitempty"`
}

// VIP is a virtual address clients connect to. The DC holds it on
// Interface; every node carries it on lo as a /32.
type VIP struct {
	Address   netip.Addr `json:"address"`
	Interface string     `json:"interface,omitempty"`
}

// Service is one IPVS virtual service.
type Service struct {
	Name        string       `json:"name,omitempty"`
	VIP         netip.Addr   `json:"vip"`
	Port        uint16       `json:"port"`
	Protocol    string       `json:"protocol"`   // "tcp" or "udp"
	Scheduler   string       `json:"scheduler"`  // rr wrr lc wlc lblc lblcr dh sh sed nq mh
	Forwarding  string       `json:"forwarding"` // "route" (direct routing), "masq", "tunnel"
	Persistence Persistence  `json:"persistence"`
	RealServers RealServers  `json:"real_servers"`
	Fallback    *RealServer  `json:"fallback,omitempty"`
	HealthCheck *HealthCheck `json:"health_check,omitempty"`
}

// Key identifies a service: VIP, port and protocol are unique together.
func (s Service) Key() ServiceKey {
	return ServiceKey{VIP: s.VIP, Port: s.Port, Protocol: s.Protocol}
}

// ServiceKey is the identity of a virtual service.
type ServiceKey struct {
	VIP      netip.Addr `json:"vip"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"`
}

// Persistence makes a client stick to one real server (ipvsadm -p/-M).
// A zero Timeout means no persistence.
type Persistence struct {
	Timeout time.Duration `json:"timeout"`
	// Netmask groups clients for persistence; zero value means /32.
	Netmask netip.Addr `json:"netmask,omitzero"`
}

// RealServers says which servers receive traffic for a service.
type RealServers struct {
	// AllNodes means every online cluster node, at its bind address, on
	// NodePort (the service port when zero) with NodeWeight.
	AllNodes   bool         `json:"all_nodes"`
	NodePort   uint16       `json:"node_port,omitempty"`
	NodeWeight int          `json:"node_weight,omitempty"`
	Servers    []RealServer `json:"servers,omitempty"`
}

// RealServer is one explicitly listed backend.
type RealServer struct {
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port"`
	Weight  int        `json:"weight"`
}

// HealthCheck is stored and replicated now; the health-check issue acts on it.
type HealthCheck struct {
	Type     string        `json:"type"` // tcp, http, https, exec
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	Rise     int           `json:"rise"`
	Fall     int           `json:"fall"`
	OnFail   string        `json:"on_fail"` // "remove" or "quiescent"
	// HTTP/HTTPS
	Path         string `json:"path,omitempty"`
	ExpectStatus []int  `json:"expect_status,omitempty"`
	BodyRegex    string `json:"body_regex,omitempty"`
	DigestMD5    string `json:"digest_md5,omitempty"`
	DigestSHA256 string `json:"digest_sha256,omitempty"`
	ServerName   string `json:"server_name,omitempty"`
	VerifyTLS    bool   `json:"verify_tls,omitempty"`
	// Exec
	Command []string `json:"command,omitempty"`
}

// Policy holds the cluster-wide quorum and takeover policy.
type Policy struct {
	// NoQuorum is what a DC that loses quorum does: "stop" (let go of the
	// VIPs and IPVS rules at once; the default) or "freeze" (keep what it
	// has until its lease ends; only with takeover fence, so the majority
	// fences it before it takes over).
	NoQuorum string `json:"no_quorum"`
	// Takeover is what a new DC does about a VIP holder that did not let
	// go: "fence" it first, wait out its "lease", or take the VIP
	// "immediate"ly (both then answer ARP until the old lease ends). Empty
	// in a spec stored before the setting existed, and read as immediate:
	// what those releases did.
	Takeover string `json:"takeover,omitempty"`
	// Fencing is the setting takeover replaced; only false is accepted.
	Fencing bool `json:"fencing,omitempty"`
	// PreferredDC is the node that takes the DC role whenever the role
	// moves and it can direct (a graceful stop, a DC in standby, dc move
	// without a node). With Preempt it also takes the role from a healthy
	// DC as soon as it can direct, as a VRRP priority does; without, it
	// never does (keepalived's nopreempt).
	PreferredDC string `json:"preferred_dc,omitempty"`
	Preempt     bool   `json:"preempt,omitempty"`
}

// TakeoverPolicy is p.Takeover, with a stored spec's empty value read as
// immediate.
func (p Policy) TakeoverPolicy() string {
	if p.Takeover == "" {
		return TakeoverImmediate
	}
	return p.Takeover
}
