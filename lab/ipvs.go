package lab

// This file has no build tag on purpose: it is pure parsing, so its tests
// run on the host with every other unit test and the VM only runs ipvsadm.

import (
	"bufio"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Service is one IPVS virtual service as `ipvsadm -Ln` shows it, with the
// counters of `ipvsadm -Ln --stats --exact`.
//
// The table comes from ipvsadm rather than /proc/net/ip_vs because the
// latter prints the persistence timeout in kernel jiffies (5000 for 20 s
// at HZ=250), and the kernel's HZ is not visible from user space.
type Service struct {
	Proto      string         // TCP, UDP, SCTP, or FWM for a firewall-mark service
	Addr       netip.AddrPort // the VIP and port; zero for FWM
	FWMark     uint32         // FWM services only
	Scheduler  string         // rr, wrr, lc, wlc, sh, mh, …
	Persistent time.Duration  // 0: not persistent
	Netmask    string         // persistence granularity, when not a single address
	OnePacket  bool           // ops: UDP scheduling per packet
	Flags      []string       // scheduler flags, e.g. mh-fallback
	Stats
	Dests []Dest
}

// Dest is one real server of a Service.
type Dest struct {
	Addr netip.AddrPort
	// Forward is the forwarding method: Route (direct routing, LVS-DR),
	// Local (the director itself), Masq (NAT) or Tunnel.
	Forward       string
	Weight        int
	ActiveConns   int
	InactiveConns int
	Stats
}

// Stats are IPVS's cumulative counters. In direct routing replies bypass
// the director, so a DR service's OutPkts stays 0.
type Stats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// Key names the service the way ipvsadm's -t/-u/--sctp-service/-f options
// do: "TCP 172.95.69.100:80", "FWM 7".
func (s Service) Key() string {
	if s.Proto == "FWM" {
		return fmt.Sprintf("FWM %d", s.FWMark)
	}
	return s.Proto + " " + s.Addr.String()
}

// Dest returns the real server at addr ("172.95.69.40:80").
func (s Service) Dest(addr string) (Dest, bool) {
	for _, d := range s.Dests {
		if d.Addr.String() == addr {
			return d, true
		}
	}
	return Dest{}, false
}

// FindService returns the service with the given Key.
func FindService(svcs []Service, key string) (Service, bool) {
	for _, s := range svcs {
		if s.Key() == key {
			return s, true
		}
	}
	return Service{}, false
}

// parseIPVSList parses `ipvsadm -Ln`:
//
//	IP Virtual Server version 1.2.1 (size=4096)
//	Prot LocalAddress:Port Scheduler Flags
//	  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
//	TCP  172.95.69.100:80 rr persistent 20
//	  -> 172.95.69.40:80              Route   1      0          0
//	UDP  172.95.69.100:53 sh ops
//	TCP  [2001:db8::1]:80 mh (mh-fallback)
//	FWM  7 wlc
func parseIPVSList(out string) ([]Service, error) {
	var svcs []Service
	err := scanIPVS(out, func(f []string) error {
		s, rest, err := parseServiceHead(f)
		if err != nil {
			return err
		}
		if len(rest) == 0 {
			return fmt.Errorf("no scheduler")
		}
		s.Scheduler, rest = rest[0], rest[1:]
		for len(rest) > 0 {
			switch tok := rest[0]; {
			case tok == "persistent" && len(rest) > 1:
				secs, err := strconv.Atoi(rest[1])
				if err != nil {
					return fmt.Errorf("persistent %q: %w", rest[1], err)
				}
				s.Persistent = time.Duration(secs) * time.Second
				rest = rest[2:]
			case tok == "mask" && len(rest) > 1:
				s.Netmask = rest[1]
				rest = rest[2:]
			case tok == "ops":
				s.OnePacket = true
				rest = rest[1:]
			case strings.HasPrefix(tok, "(") && strings.HasSuffix(tok, ")"):
				s.Flags = strings.Split(strings.Trim(tok, "()"), ",")
				rest = rest[1:]
			default:
				// Something newer than this parser (pe NAME, …): keep it
				// visible rather than fail a scenario over it.
				s.Flags = append(s.Flags, tok)
				rest = rest[1:]
			}
		}
		svcs = append(svcs, s)
		return nil
	}, func(f []string) error {
		if len(svcs) == 0 {
			return fmt.Errorf("real server before any service")
		}
		if len(f) != 5 {
			return fmt.Errorf("want 5 fields")
		}
		addr, err := netip.ParseAddrPort(f[0])
		if err != nil {
			return err
		}
		n, err := atoiAll(f[2:])
		if err != nil {
			return err
		}
		s := &svcs[len(svcs)-1]
		s.Dests = append(s.Dests, Dest{Addr: addr, Forward: f[1], Weight: n[0], ActiveConns: n[1], InactiveConns: n[2]})
		return nil
	})
	return svcs, err
}

// mergeIPVSStats fills in the counters from `ipvsadm -Ln --stats --exact`:
//
//	Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
//	  -> RemoteAddress:Port
//	TCP  172.95.69.100:80                   50      250        0    13000        0
//	  -> 172.95.69.40:80                    25      125        0     6500        0
//
// The two listings are separate reads of the kernel; a service or real
// server present in only one of them is left without counters.
func mergeIPVSStats(svcs []Service, out string) error {
	var cur *Service
	return scanIPVS(out, func(f []string) error {
		s, rest, err := parseServiceHead(f)
		if err != nil {
			return err
		}
		st, err := parseStats(rest)
		if err != nil {
			return err
		}
		cur = nil
		for i := range svcs {
			if svcs[i].Key() == s.Key() {
				cur = &svcs[i]
				cur.Stats = st
			}
		}
		return nil
	}, func(f []string) error {
		if cur == nil {
			return nil
		}
		st, err := parseStats(f[1:])
		if err != nil {
			return err
		}
		for i := range cur.Dests {
			if cur.Dests[i].Addr.String() == f[0] {
				cur.Dests[i].Stats = st
			}
		}
		return nil
	})
}

// scanIPVS calls svc for each service line and dest for each real-server
// line (without the "->") of an ipvsadm listing, skipping its headers.
func scanIPVS(out string, svc, dest func(fields []string) error) error {
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 0,
			strings.HasPrefix(line, "IP Virtual Server"),
			f[0] == "Prot",
			len(f) > 1 && f[0] == "->" && strings.HasPrefix(f[1], "RemoteAddress"):
			continue
		case f[0] == "->":
			if err := dest(f[1:]); err != nil {
				return fmt.Errorf("ipvsadm line %d %q: %w", n, line, err)
			}
		default:
			if err := svc(f); err != nil {
				return fmt.Errorf("ipvsadm line %d %q: %w", n, line, err)
			}
		}
	}
	return sc.Err()
}

// parseServiceHead parses the protocol and address (or mark) that start
// a service line and returns the remaining fields.
func parseServiceHead(f []string) (Service, []string, error) {
	if len(f) < 2 {
		return Service{}, nil, fmt.Errorf("short service line")
	}
	s := Service{Proto: f[0]}
	switch f[0] {
	case "FWM":
		mark, err := strconv.ParseUint(f[1], 0, 32)
		if err != nil {
			return Service{}, nil, fmt.Errorf("firewall mark: %w", err)
		}
		s.FWMark = uint32(mark)
	case "TCP", "UDP", "SCTP":
		addr, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return Service{}, nil, err
		}
		s.Addr = addr
	default:
		return Service{}, nil, fmt.Errorf("unknown protocol %q", f[0])
	}
	return s, f[2:], nil
}

func parseStats(f []string) (Stats, error) {
	if len(f) != 5 {
		return Stats{}, fmt.Errorf("want 5 counters, got %d", len(f))
	}
	var n [5]uint64
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Stats{}, fmt.Errorf("counter %q (was --exact given?): %w", s, err)
		}
		n[i] = v
	}
	return Stats{Conns: n[0], InPkts: n[1], OutPkts: n[2], InBytes: n[3], OutBytes: n[4]}, nil
}

func atoiAll(f []string) ([]int, error) {
	n := make([]int, len(f))
	for i, s := range f {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		n[i] = v
	}
	return n, nil
}

// Conn is one entry of the IPVS connection table, /proc/net/ip_vs_conn:
// what the director remembers of a client connection so that its later
// packets follow the first to the same real server.
type Conn struct {
	Proto   string // TCP, UDP, SCTP; IP for a persistence template
	Client  netip.AddrPort
	VIP     netip.AddrPort
	Dest    netip.AddrPort
	State   string // ESTABLISHED, FIN_WAIT, TIME_WAIT, …
	Expires time.Duration
}

// parseIPVSConns parses /proc/net/ip_vs_conn. IPv4 addresses are 8 hex
// digits in network order, ports 4 hex digits, Expires whole seconds; an
// IPv6 address is printed in its text form.
//
//	Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//	TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 FIN_WAIT        119
func parseIPVSConns(out string) ([]Conn, error) {
	var conns []Conn
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "Pro" {
			continue
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("ip_vs_conn line %d %q: want at least 9 fields", n, sc.Text())
		}
		c := Conn{Proto: f[0], State: f[7]}
		var err error
		for i, dst := range []*netip.AddrPort{&c.Client, &c.VIP, &c.Dest} {
			if *dst, err = parseConnAddrPort(f[1+2*i], f[2+2*i]); err != nil {
				return nil, fmt.Errorf("ip_vs_conn line %d %q: %w", n, sc.Text(), err)
			}
		}
		secs, err := strconv.ParseUint(f[8], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("ip_vs_conn line %d %q: expires: %w", n, sc.Text(), err)
		}
		c.Expires = time.Duration(secs) * time.Second
		conns = append(conns, c)
	}
	return conns, sc.Err()
}

func parseConnAddrPort(addr, port string) (netip.AddrPort, error) {
	var a netip.Addr
	if strings.Contains(addr, ":") {
		var err error
		if a, err = netip.ParseAddr(addr); err != nil {
			return netip.AddrPort{}, err
		}
	} else {
		v, err := strconv.ParseUint(addr, 16, 32)
		if err != nil || len(addr) != 8 {
			return netip.AddrPort{}, fmt.Errorf("address %q: want 8 hex digits", addr)
		}
		a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
