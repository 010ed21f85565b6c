package spec

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Problem is one thing wrong with a spec or a node.
type Problem struct {
	// Path names the offending entry in services-file terms, e.g.
	// "vips[0].address" or "services[1] (web 10.0.0.1:80/tcp).port".
	Path    string `json:"path"`
	Message string `json:"message"`
	// Line is the line in the services file, when the spec came from one
	// and the entry was found there; 0 otherwise.
	Line int `json:"line,omitempty"`
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Path, p.Message)
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists everything wrong with a spec or node, so an operator
// can fix a file in one go instead of one error per attempt.
type ValidationError struct {
	Problems []Problem `json:"problems"`
}

// Error returns one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validate checks s and returns a *ValidationError listing every problem,
// or nil. The empty spec (no VIPs, no services) is valid: it means "serve
// nothing". Validate does not fill in defaults; ParseServices does.
func (s Spec) Validate() error {
	var v validator
	v.spec(s)
	return v.err()
}

// ValidateNew is Validate plus the rules only a spec proposed now must
// meet: the floors on check intervals. The FSM applies log entries and
// restores snapshots under Validate alone, so a spec an older release
// accepted is never refused when it is replayed; the director raises its
// intervals to the floors instead (MinInterval).
func (s Spec) ValidateNew() error {
	v := validator{proposal: true}
	v.spec(s)
	return v.err()
}

// ValidateMembers checks what the spec alone cannot tell: the nodes its
// fencing section and policy name are members of the cluster.
func (s Spec) ValidateMembers(isMember func(node string) bool) error {
	var v validator
	v.fencingNodes(s.Fencing, isMember)
	if p := s.Policy.PreferredDC; p != "" {
		if !isMember(p) {
			v.addf("policy.preferred_dc", "%s is not a node of the cluster", p)
		}
	}
	return v.err()
}

// validator collects problems; its methods never stop at the first one.
type validator struct {
	problems []Problem
	// proposal adds the rules only a new spec must meet (ValidateNew).
	proposal bool
}

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

// String returns the key as ipvsadm prints it, e.g. "10.0.0.1:80/tcp" or
// "[2001:db8::1]:80/tcp".
func (k ServiceKey) String() string {
	proto := k.Protocol
	if proto == "" {
		proto = "?"
	}
	if !k.VIP.IsValid() {
		return "?:" + strconv.Itoa(int(k.Port)) + "/" + proto
	}
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + proto
}

// servicePath names services[i] with its name and key, so a problem can be
// found without counting list entries.
func servicePath(i int, svc Service) string {
	label := svc.Key().String()
	if svc.Name != "" {
		label = svc.Name + " " + label
	}
	return fmt.Sprintf("services[%d] (%s)", i, label)
}

func (v *validator) spec(s Spec) {
	// listed holds every VIP address, usable or not, so a service on a bad
	// VIP is reported once, under vips.
	vips := make(map[netip.Addr]int, len(s.VIPs))
	listed := make(map[netip.Addr]bool, len(s.VIPs))
	for i, vip := range s.VIPs {
		p := fmt.Sprintf("vips[%d]", i)
		listed[vip.Address] = true
		if v.vipAddr(p+".address", vip.Address) {
			if j, dup := vips[vip.Address]; dup {
				v.addf(p+".address", "duplicate of vips[%d]", j)
			} else {
				vips[vip.Address] = i
			}
		}
		if vip.Interface != "" {
			v.ifname(p+".interface", vip.Interface)
		}
	}

	switch s.Policy.Takeover {
	case TakeoverLease, TakeoverImmediate, "":
	case TakeoverFence:
		if len(s.Fencing.Devices) == 0 {
			v.addf("policy.takeover", "fence needs fencing devices (a fencing section)")
		}
	default:
		v.addf("policy.takeover", "unknown policy %q (want fence, lease or immediate)", s.Policy.Takeover)
	}
	switch s.Policy.NoQuorum {
	case NoQuorumStop:
	case NoQuorumFreeze:
		if s.Policy.Takeover != TakeoverFence {
			v.addf("policy.no_quorum", "freeze keeps a cut-off DC's VIPs: it needs takeover: fence, so the majority fences that DC before taking them over")
		}
	case NoQuorumIgnore:
		v.addf("policy.no_quorum", "ignore is refused: a DC that loses quorum always lets go of the VIPs before another can be elected (invariant 3); use stop, or freeze with takeover: fence")
	default:
		v.addf("policy.no_quorum", "unknown policy %q (want stop or freeze)", s.Policy.NoQuorum)
	}
	if s.Policy.PreferredDC != "" {
		if err := ValidateNodeName(s.Policy.PreferredDC); err != nil {
			v.addf("policy.preferred_dc", "%v", err)
		}
	} else if s.Policy.Preempt {
		v.addf("policy.preempt", "preempt needs a preferred_dc")
	}
	if s.Policy.Fencing {
		v.addf("policy.fencing", "fencing: true is replaced by takeover: fence, with fence devices in a fencing section")
	}
	v.fencing(s.Fencing)
	v.resources(s)

	keys := make(map[ServiceKey]int, len(s.Services))
	names := make(map[string]int, len(s.Services))
	for i, svc := range s.Services {
		p := servicePath(i, svc)
		if svc.Name != "" && v.text(p+".name", svc.Name, 128) {
			if j, dup := names[svc.Name]; dup {
				v.addf(p+".name", "duplicate name, also used by services[%d]", j)
			} else {
				names[svc.Name] = i
			}
		}
		keyOK := true
		switch {
		case !svc.VIP.IsValid():
			v.addf(p+".vip", "required")
			keyOK = false
		case !listed[svc.VIP]:
			v.addf(p+".vip", "%s is not listed under vips", svc.VIP)
		}
		if svc.Port == 0 {
			v.addf(p+".port", "must be 1..65535")
			keyOK = false
		}
		if svc.Protocol != ProtocolTCP && svc.Protocol != ProtocolUDP {
			v.addf(p+".protocol", "unknown protocol %q (want tcp or udp)", svc.Protocol)
			keyOK = false
		}
		if keyOK {
			if j, dup := keys[svc.Key()]; dup {
				v.addf(p, "same VIP, port and protocol as services[%d]", j)
			} else {
				keys[svc.Key()] = i
			}
		}
		v.service(p, svc)
	}
}

// service checks what a service holds besides its identity.
func (v *validator) service(p string, svc Service) {
	if !validScheduler(svc.Scheduler) {
		v.addf(p+".scheduler", "unknown scheduler %q (want one of %s)", svc.Scheduler, schedulerList)
	}
	switch svc.Forwarding {
	case ForwardRoute:
	case ForwardMasq, ForwardTunnel:
		// The kernel would take either, and nothing would answer: NAT
		// needs the DC as every real server's gateway, tunnelling an ipip
		// interface carrying the VIP on every real server.
		v.addf(p+".forwarding", "%s is not supported: the agent sets up direct routing only (every node a real server with the VIP on lo); it configures neither the gateway NAT needs nor the ipip interface tunnelling needs", svc.Forwarding)
	default:
		v.addf(p+".forwarding", "unknown forwarding %q (want route)", svc.Forwarding)
	}
	v.persistence(p, svc)

	rs := svc.RealServers
	if rs.AllNodes {
		if len(rs.Servers) > 0 {
			v.addf(p+".real_servers", "a server list cannot be combined with all-nodes")
		}
		if rs.NodePort != 0 {
			v.samePort(p+".node_port", svc, rs.NodePort)
		}
		v.weight(p+".node_weight", rs.NodeWeight)
	} else {
		if len(rs.Servers) == 0 {
			v.addf(p+".real_servers", "at least one real server is required (or use all-nodes)")
		}
		if rs.NodePort != 0 {
			v.addf(p+".node_port", "only applies with real_servers: all-nodes")
		}
		if rs.NodeWeight != 0 {
			v.addf(p+".node_weight", "only applies with real_servers: all-nodes")
		}
	}
	seen := make(map[netip.AddrPort]int, len(rs.Servers))
	for k, srv := range rs.Servers {
		sp := fmt.Sprintf("%s.real_servers[%d]", p, k)
		if v.realServer(sp, svc, srv) {
			ap := netip.AddrPortFrom(srv.Address, srv.Port)
			if j, dup := seen[ap]; dup {
				v.addf(sp, "duplicate of real_servers[%d] (%s)", j, ap)
			} else {
				seen[ap] = k
			}
		}
	}
	if svc.Fallback != nil {
		v.realServer(p+".fallback", svc, *svc.Fallback)
	}
	if svc.HealthCheck != nil {
		v.healthCheck(p+".health_check", *svc.HealthCheck)
	}
}

func (v *validator) persistence(p string, svc Service) {
	t := svc.Persistence.Timeout
	switch {
	case t < 0:
		v.addf(p+".persistence", "must not be negative")
	case t%time.Second != 0:
		// IPVS keeps the persistence timeout in whole seconds.
		v.addf(p+".persistence", "%s is not a whole number of seconds", t)
	case t/time.Second > math.MaxUint32:
		v.addf(p+".persistence", "%s is too long for IPVS", t)
	}
	mask := svc.Persistence.Netmask
	if !mask.IsValid() {
		return
	}
	mp := p + ".persistence_netmask"
	switch {
	case t == 0:
		v.addf(mp, "needs persistence")
	case !mask.Is4():
		v.addf(mp, "%s is not an IPv4 netmask", mask)
	case !contiguous(mask):
		v.addf(mp, "%s is not a contiguous netmask", mask)
	case svc.VIP.Is6():
		v.addf(mp, "only applies to IPv4 services")
	}
}

// contiguous reports whether the IPv4 mask m is ones followed by zeros.
func contiguous(m netip.Addr) bool {
	b := m.As4()
	inv := ^(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	return inv&(inv+1) == 0
}

// realServer checks one backend (or the fallback) and reports whether its
// address and port are usable, so duplicates are only looked for then.
func (v *validator) realServer(p string, svc Service, srv RealServer) bool {
	ok := true
	switch {
	case !srv.Address.IsValid():
		v.addf(p+".address", "required")
		ok = false
	case !v.unicastAddr(p+".address", srv.Address):
		ok = false
	case svc.VIP.IsValid() && srv.Address.Is4() != svc.VIP.Is4():
		v.addf(p+".address", "%s is not in the VIP's address family", srv.Address)
	}
	if srv.Port == 0 {
		v.addf(p+".port", "must be 1..65535")
		ok = false
	} else {
		v.samePort(p+".port", svc, srv.Port)
	}
	v.weight(p+".weight", srv.Weight)
	return ok
}

// samePort rejects a backend port that differs from the service port:
// with direct routing the packet reaches the real server with its original
// destination port, so IPVS would silently ignore the configured one.
func (v *validator) samePort(p string, svc Service, port uint16) {
	if svc.Forwarding != ForwardMasq && svc.Port != 0 && port != svc.Port {
		v.addf(p, "%d differs from the service port %d; direct routing cannot change the port", port, svc.Port)
	}
}

func (v *validator) weight(p string, w int) {
	if w < 0 || w > MaxWeight {
		v.addf(p, "%d is out of range 0..%d", w, MaxWeight)
	}
}

// vipAddr checks an address clients will connect to and the DC will answer
// ARP for; it reports whether the address is usable.
func (v *validator) vipAddr(p string, a netip.Addr) bool {
	switch {
	case !a.IsValid():
		v.addf(p, "required")
		return false
	case a.IsLoopback():
		v.addf(p, "%s is a loopback address", a)
		return false
	case !v.unicastAddr(p, a):
		return false
	}
	return true
}

// unicastAddr rejects addresses that cannot name one host.
func (v *validator) unicastAddr(p string, a netip.Addr) bool {
	switch {
	case a.IsUnspecified():
		v.addf(p, "%s is the unspecified address", a)
	case a.IsMulticast():
		v.addf(p, "%s is a multicast address", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		v.addf(p, "%s is the broadcast address", a)
	case a.Is4In6():
		// IPVS would treat it as IPv6; the operator almost certainly meant
		// the IPv4 address.
		v.addf(p, "%s is IPv4-mapped; write %s", a, a.Unmap())
	case a.Zone() != "":
		v.addf(p, "%s has a zone; zones are not supported", a)
	default:
		return true
	}
	return false
}

// HostAddrProblems returns what keeps a from naming one host, as problems
// at path p; none when it can. The node registry checks its addresses
// with it.
func HostAddrProblems(p string, a netip.Addr) []Problem {
	var v validator
	v.unicastAddr(p, a)
	return v.problems
}

// ifname applies the kernel's dev_valid_name rules.
func (v *validator) ifname(p, name string) {
	switch {
	case len(name) > 15:
		v.addf(p, "%q is longer than 15 bytes", name)
	case name == "." || name == "..":
		v.addf(p, "%q is not a valid interface name", name)
	case strings.ContainsFunc(name, func(r rune) bool {
		return r == '/' || r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
	}):
		v.addf(p, "%q is not a valid interface name (no '/', ':' or whitespace)", name)
	}
}

// text checks a free-form name: it is shown in status output and error
// messages and must survive JSON unchanged. It reports whether s is usable.
func (v *validator) text(p, s string, maxLen int) bool {
	switch {
	case s == "":
		v.addf(p, "required")
	case len(s) > maxLen:
		v.addf(p, "longer than %d bytes", maxLen)
	case !printable(s):
		v.addf(p, "%q contains whitespace, control characters or invalid UTF-8", s)
	default:
		return true
	}
	return false
}

// printable reports whether s is valid UTF-8 without whitespace or control
// characters.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
	})
}

// ValidateNodeName is the one rule for a node's name, wherever one is
// given (flag, certificate, registry entry): 1–63 characters of
// [A-Za-z0-9._-] that do not start with a dot or dash. The name is a Raft
// server ID, a memberlist name, a file name in the TLS directory and a
// certificate CN.
func ValidateNodeName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("node name %q must be 1-63 characters", name)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("node name %q must not start with %q", name, name[0])
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("node name %q may only contain letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}
