package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Conn is one entry of the kernel's IPVS connection table: what a
// director remembers of a client connection so that its later packets
// follow the first to the same real server. A persistence template has
// protocol "IP" and, for a service without a port, port 0.
type Conn struct {
	Proto  string // TCP, UDP, SCTP, or IP for a persistence template
	Client netip.AddrPort
	VIP    netip.AddrPort
	Dest   netip.AddrPort
	State  string // ESTABLISHED, FIN_WAIT, …; NONE for a template
	// Expires is how long the entry lives without another packet: its
	// state's timeout (a template's: the persistence) less the time since
	// its last packet.
	Expires time.Duration
}

// ConnKey names a connection across kernels: a backup's copy of an entry
// has the same key as the master's.
type ConnKey struct {
	Proto  string         `json:"proto"`
	Client netip.AddrPort `json:"client"`
	VIP    netip.AddrPort `json:"vip"`
	Dest   netip.AddrPort `json:"dest"`
}

// Key is c's ConnKey.
func (c Conn) Key() ConnKey {
	return ConnKey{Proto: c.Proto, Client: c.Client, VIP: c.VIP, Dest: c.Dest}
}

// ParseConns parses the kernel's /proc/net/ip_vs_conn. IPv4 addresses are
// eight hex digits in network order, ports four hex digits; an IPv6
// address is printed as text:
//
//	Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//	TCP AC5F4564 4E20 AC5F4564 0C38 AC5F451E 0C38 ESTABLISHED     899
func ParseConns(b []byte) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (n == 1 && f[0] == "Pro") {
			continue
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("ip_vs_conn line %d: %d fields, want at least 9", n, len(f))
		}
		c := Conn{Proto: f[0], State: f[7]}
		for i, dst := range []*netip.AddrPort{&c.Client, &c.VIP, &c.Dest} {
			ap, err := parseConnAddrPort(f[1+2*i], f[2+2*i])
			if err != nil {
				return nil, fmt.Errorf("ip_vs_conn line %d: %w", n, err)
			}
			*dst = ap
		}
		secs, err := strconv.ParseUint(f[8], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("ip_vs_conn line %d: expiry %q: want whole seconds", n, f[8])
		}
		c.Expires = time.Duration(secs) * time.Second
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ip_vs_conn: %w", err)
	}
	return out, nil
}

func parseConnAddrPort(addr, port string) (netip.AddrPort, error) {
	var a netip.Addr
	if strings.Contains(addr, ":") {
		var err error
		if a, err = netip.ParseAddr(addr); err != nil || !a.Is6() || a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("address %q: want IPv6 text", addr)
		}
	} else {
		v, err := strconv.ParseUint(addr, 16, 32)
		if err != nil || len(addr) != 8 {
			return netip.AddrPort{}, fmt.Errorf("address %q: want 8 hex digits", addr)
		}
		a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil || len(port) != 4 {
		return netip.AddrPort{}, fmt.Errorf("port %q: want 4 hex digits", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
