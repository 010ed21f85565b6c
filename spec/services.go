package spec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ParseServices parses a services file into a fully explicit Spec: every
// default is filled in, so what is replicated does not depend on which
// release parsed it. The Spec has Version 0; the FSM assigns versions.
//
// The file is one YAML document; an unknown field is an error. An empty file
// is valid and means "no services". Annotated example:
// deploy/examples/services.yaml.
//
//	vips:
//	  - address: 172.95.69.100
//	    interface: eth0          # optional; default: the agent's --interface
//	policy:                      # optional
//	  no_quorum: stop            # stop (default) | freeze (needs takeover: fence)
//	  takeover: lease            # lease (default) | fence (needs a fencing section) | immediate
//	  preferred_dc: m30          # optional: the node the DC role goes to when it moves
//	  preempt: false             # true: the preferred node also takes it from a healthy DC
//	fencing:                     # optional: fence devices (see fencing_yaml.go)
//	services:
//	  - name: squid              # optional, unique when given
//	    vip: 172.95.69.100       # must be listed under vips
//	    port: 3128
//	    protocol: tcp            # tcp (default) | udp
//	    scheduler: rr            # default wlc; rr wrr lc wlc lblc lblcr dh sh sed nq mh
//	    forwarding: route        # route (LVS-DR), the only one: masq and tunnel are refused
//	    persistence: 20s         # optional; a Go duration or whole seconds; 0 = none
//	    persistence_netmask: 255.255.255.0  # optional, needs persistence
//	    real_servers: all-nodes  # default; or [{address: 10.0.0.5, port: 3128, weight: 2}]
//	    node_port: 3128          # with all-nodes: port on the nodes (default: service port)
//	    node_weight: 1           # with all-nodes (default 1)
//	    fallback: 127.0.0.1:3128 # optional sorry server, ADDR:PORT (or ADDR)
//	    health_check:            # optional
//	      type: tcp              # tcp (default) | http | https | exec
//	      interval: 1s           # default 2s; a Go duration or whole seconds
//	      timeout: 500ms         # default 1s (or the interval, if shorter)
//	      rise: 2                # default 2
//	      fall: 2                # default 2
//	      on_fail: remove        # remove (default) | quiescent
//	      path: /                # http/https, default /
//	      expect_status: [200]   # http/https, default [200]
//	      body_regex: "ok"       # http/https
//	      digest_md5: <32 hex>   # http/https
//	      digest_sha256: <64 hex>
//	      server_name: example.org   # https
//	      verify_tls: false          # https
//	      command: ["/usr/local/bin/check", "--fast"]  # exec: argv, no shell
//
// Real-server list entries need an address; port defaults to the service
// port and weight to 1 (0 = quiescent).
//
// Errors: malformed YAML, unknown fields and wrong types come back as an
// error naming the line; anything else wrong comes back as a
// *ValidationError listing every problem with its path and line. On error
// the returned Spec is the zero value: a file is accepted whole or not at
// all. A key set to null counts as absent.
func ParseServices(data []byte) (Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f servicesFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Spec{}, yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return Spec{}, yamlError(err)
		}
		return Spec{}, fmt.Errorf("services file: line %d: a second YAML document; the file must hold exactly one", next.Line)
	}

	p := parser{lines: make(map[string]int)}
	spec := p.file(f)
	if err := p.validate(spec); err != nil {
		return Spec{}, err
	}
	return spec.Normalized(), nil
}

// parser turns the decoded file into a Spec. It records conversion problems
// and the line of every path, so that Validate's problems can be given lines.
type parser struct {
	problems []Problem
	lines    map[string]int
}

// at records the line of path; line 0 (absent) is not recorded.
func (p *parser) at(path string, line int) {
	if line > 0 {
		p.lines[path] = line
	}
}

// check records path's line and, if err is not nil, a problem there.
func (p *parser) check(path string, line int, err error) {
	p.at(path, line)
	if err != nil {
		p.problems = append(p.problems, Problem{Path: path, Message: err.Error(), Line: line})
	}
}

// validate runs Validate on the converted spec and merges its problems with
// the conversion problems. A value that failed conversion was left zero, so
// Validate's complaint about the same path would only repeat it.
func (p *parser) validate(spec Spec) error {
	problems := p.problems
	if err := spec.ValidateNew(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		for _, pr := range ve.Problems {
			if slices.ContainsFunc(p.problems, func(c Problem) bool { return c.Path == pr.Path }) {
				continue
			}
			pr.Line = p.lineOf(pr.Path)
			problems = append(problems, pr)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	// Top to bottom, as the operator reads the file; unknown lines last.
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return cmp.Compare(lineKey(a.Line), lineKey(b.Line))
	})
	return &ValidationError{Problems: problems}
}

func lineKey(l int) int {
	if l == 0 {
		return math.MaxInt
	}
	return l
}

// lineOf finds the line of path or, for a field that was absent, of the
// nearest enclosing entry.
func (p *parser) lineOf(path string) int {
	if l, ok := p.lines[path]; ok {
		return l
	}
	best, line := -1, 0
	for k, l := range p.lines {
		if len(k) > best && len(k) < len(path) && strings.HasPrefix(path, k) &&
			(path[len(k)] == '.' || path[len(k)] == '[') {
			best, line = len(k), l
		}
	}
	return line
}

func (p *parser) file(f servicesFile) Spec {
	spec := Spec{Policy: Policy{NoQuorum: DefaultNoQuorum, Takeover: DefaultTakeover}}
	for i, e := range f.VIPs {
		path := fmt.Sprintf("vips[%d]", i)
		p.at(path, firstLine(e.Address.Line, e.Interface.Line))
		addr, err := parseAddr(e.Address)
		p.check(path+".address", e.Address.Line, err)
		p.at(path+".interface", e.Interface.Line)
		spec.VIPs = append(spec.VIPs, VIP{Address: addr, Interface: e.Interface.Val})
	}
	if pe := f.Policy; pe != nil {
		spec.Policy.NoQuorum = orDefault(pe.NoQuorum, DefaultNoQuorum)
		spec.Policy.Takeover = orDefault(pe.Takeover, DefaultTakeover)
		spec.Policy.Fencing = pe.Fencing.Val
		spec.Policy.PreferredDC, spec.Policy.Preempt = pe.PreferredDC.Val, pe.Preempt.Val
		p.at("policy.preferred_dc", pe.PreferredDC.Line)
		p.at("policy.preempt", pe.Preempt.Line)
		p.at("policy.no_quorum", pe.NoQuorum.Line)
		p.at("policy.takeover", pe.Takeover.Line)
		p.at("policy.fencing", pe.Fencing.Line)
	}
	spec.Fencing = p.fencing(f.Fencing)
	spec.Resources = p.resources(f.Resources)
	for i, e := range f.Services {
		spec.Services = append(spec.Services, p.service(i, e))
	}
	return spec
}

func (p *parser) service(i int, e serviceEntry) Service {
	// The path names the service by its key, so the key comes first.
	vip, vipErr := parseAddr(e.VIP)
	port, portErr := parsePort(e.Port)
	svc := Service{
		Name:       e.Name.Val,
		VIP:        vip,
		Port:       port,
		Protocol:   orDefault(e.Protocol, DefaultProtocol),
		Scheduler:  orDefault(e.Scheduler, DefaultScheduler),
		Forwarding: orDefault(e.Forwarding, DefaultForwarding),
	}
	path := servicePath(i, svc)
	p.at(path, firstLine(e.Name.Line, e.VIP.Line, e.Port.Line, e.Protocol.Line, e.Scheduler.Line,
		e.Forwarding.Line, e.Persistence.Line, e.PersistenceNetmask.Line, e.RealServers.Line,
		e.NodePort.Line, e.NodeWeight.Line, e.Fallback.Line))
	p.at(path+".name", e.Name.Line)
	p.check(path+".vip", e.VIP.Line, vipErr)
	p.check(path+".port", e.Port.Line, portErr)
	p.at(path+".protocol", e.Protocol.Line)
	p.at(path+".scheduler", e.Scheduler.Line)
	p.at(path+".forwarding", e.Forwarding.Line)

	var err error
	svc.Persistence.Timeout, err = parseDuration(e.Persistence)
	p.check(path+".persistence", e.Persistence.Line, err)
	svc.Persistence.Netmask, err = parseAddr(e.PersistenceNetmask)
	p.check(path+".persistence_netmask", e.PersistenceNetmask.Line, err)

	svc.RealServers = p.realServers(path, port, e)

	if e.Fallback.Line > 0 {
		fb, err := parseFallback(e.Fallback.Val, port)
		p.check(path+".fallback", e.Fallback.Line, err)
		if err == nil {
			svc.Fallback = &fb
		}
	}
	if e.HealthCheck != nil {
		hc := p.healthCheck(path+".health_check", *e.HealthCheck)
		svc.HealthCheck = &hc
	}
	return svc
}

func (p *parser) realServers(path string, port uint16, e serviceEntry) RealServers {
	var rs RealServers
	p.at(path+".real_servers", e.RealServers.Line)
	if !e.RealServers.IsList {
		rs = RealServers{AllNodes: true, NodePort: port, NodeWeight: DefaultWeight}
	}
	// Given without all-nodes, node_port and node_weight are kept so that
	// Validate reports them.
	if e.NodePort.Line > 0 {
		var err error
		rs.NodePort, err = parsePort(e.NodePort)
		p.check(path+".node_port", e.NodePort.Line, err)
	}
	if e.NodeWeight.Line > 0 {
		rs.NodeWeight = e.NodeWeight.Val
		p.at(path+".node_weight", e.NodeWeight.Line)
	}
	for k, se := range e.RealServers.List {
		sp := fmt.Sprintf("%s.real_servers[%d]", path, k)
		p.at(sp, firstLine(se.Address.Line, se.Port.Line, se.Weight.Line))
		srv := RealServer{Port: port, Weight: DefaultWeight}
		var err error
		srv.Address, err = parseAddr(se.Address)
		p.check(sp+".address", se.Address.Line, err)
		if se.Port.Line > 0 {
			srv.Port, err = parsePort(se.Port)
			p.check(sp+".port", se.Port.Line, err)
		}
		if se.Weight.Line > 0 {
			srv.Weight = se.Weight.Val
			p.at(sp+".weight", se.Weight.Line)
		}
		rs.Servers = append(rs.Servers, srv)
	}
	return rs
}

func (p *parser) healthCheck(path string, e healthCheckEntry) HealthCheck {
	hc := HealthCheck{
		Type:         orDefault(e.Type, DefaultCheckType),
		Interval:     DefaultCheckInterval,
		Rise:         DefaultCheckRise,
		Fall:         DefaultCheckFall,
		OnFail:       orDefault(e.OnFail, DefaultCheckOnFail),
		BodyRegex:    e.BodyRegex.Val,
		DigestMD5:    e.DigestMD5.Val,
		DigestSHA256: e.DigestSHA256.Val,
		ServerName:   e.ServerName.Val,
		VerifyTLS:    e.VerifyTLS.Val,
		Command:      e.Command.Val,
		Path:         e.Path.Val,
		ExpectStatus: e.ExpectStatus.Val,
	}
	// A duration that does not parse keeps its default, so Validate does not
	// pile consequences onto the one real problem.
	if e.Interval.Line > 0 {
		d, err := parseDuration(e.Interval)
		p.check(path+".interval", e.Interval.Line, err)
		if err == nil {
			hc.Interval = d
		}
	}
	// The default timeout shrinks to fit a short interval, so that
	// "interval: 500ms" alone is valid.
	hc.Timeout = DefaultCheckTimeout
	if hc.Interval > 0 {
		hc.Timeout = min(hc.Timeout, hc.Interval)
	}
	if e.Timeout.Line > 0 {
		d, err := parseDuration(e.Timeout)
		p.check(path+".timeout", e.Timeout.Line, err)
		if err == nil {
			hc.Timeout = d
		}
	}
	if e.Rise.Line > 0 {
		hc.Rise = e.Rise.Val
	}
	if e.Fall.Line > 0 {
		hc.Fall = e.Fall.Val
	}
	if hc.Type == CheckHTTP || hc.Type == CheckHTTPS {
		if e.Path.Line == 0 {
			hc.Path = DefaultCheckPath
		}
		if len(hc.ExpectStatus) == 0 {
			hc.ExpectStatus = []int{DefaultExpectStatus}
		}
	}
	p.at(path, firstLine(e.Type.Line, e.Interval.Line, e.Timeout.Line, e.Rise.Line, e.Fall.Line,
		e.OnFail.Line, e.Path.Line, e.ExpectStatus.Line, e.BodyRegex.Line, e.DigestMD5.Line,
		e.DigestSHA256.Line, e.ServerName.Line, e.VerifyTLS.Line, e.Command.Line))
	for field, line := range map[string]int{
		"type": e.Type.Line, "rise": e.Rise.Line, "fall": e.Fall.Line, "on_fail": e.OnFail.Line,
		"path": e.Path.Line, "expect_status": e.ExpectStatus.Line, "body_regex": e.BodyRegex.Line,
		"digest_md5": e.DigestMD5.Line, "digest_sha256": e.DigestSHA256.Line,
		"server_name": e.ServerName.Line, "verify_tls": e.VerifyTLS.Line, "command": e.Command.Line,
	} {
		p.at(path+"."+field, line)
	}
	return hc
}

// orDefault returns the value given in the file, even an empty one (which
// Validate then rejects), or def when the key is absent.
func orDefault(a at[string], def string) string {
	if a.Line == 0 {
		return def
	}
	return a.Val
}

// firstLine returns the smallest non-zero line: where an entry starts.
func firstLine(lines ...int) int {
	first := 0
	for _, l := range lines {
		if l > 0 && (first == 0 || l < first) {
			first = l
		}
	}
	return first
}

// parseAddr parses an IP address; absent means the zero Addr.
func parseAddr(a at[string]) (netip.Addr, error) {
	if a.Line == 0 {
		return netip.Addr{}, nil
	}
	addr, err := netip.ParseAddr(a.Val)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", a.Val)
	}
	return addr, nil
}

// parsePort range-checks an explicit port; absent means 0.
func parsePort(a at[int]) (uint16, error) {
	if a.Line == 0 {
		return 0, nil
	}
	if a.Val < 1 || a.Val > math.MaxUint16 {
		return 0, fmt.Errorf("%d is out of range 1..65535", a.Val)
	}
	return uint16(a.Val), nil
}

// parseDuration accepts a Go duration ("20s", "1m30s") or a plain integer
// of seconds, as ldirectord and keepalived configurations use; absent is 0.
func parseDuration(a at[string]) (time.Duration, error) {
	if a.Line == 0 {
		return 0, nil
	}
	if n, err := strconv.ParseInt(a.Val, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is too long", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(a.Val)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 20s, 1m30s or whole seconds)", a.Val)
	}
	return d, nil
}

// parseFallback parses ADDR:PORT, or a bare ADDR meaning the service port.
// IPv6 with a port is written [ADDR]:PORT.
func parseFallback(s string, port uint16) (RealServer, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return RealServer{Address: ap.Addr(), Port: ap.Port(), Weight: DefaultWeight}, nil
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		return RealServer{Address: addr, Port: port, Weight: DefaultWeight}, nil
	}
	return RealServer{}, fmt.Errorf("%q is not ADDR:PORT (e.g. 127.0.0.1:3128)", s)
}
