package cluster

import (
	"net"
	"net/netip"
	"sync"
)

// netFilter simulates a network partition for in-process tests: it refuses
// connections to and from blocked peer addresses and cuts the ones already
// open. Production code never sets one; every method is a no-op on nil.
type netFilter struct {
	mu      sync.Mutex
	blocked map[netip.Addr]bool
	conns   map[net.Conn]netip.Addr
}

func newNetFilter() *netFilter {
	return &netFilter{blocked: map[netip.Addr]bool{}, conns: map[net.Conn]netip.Addr{}}
}

func remoteIP(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// track registers c, or closes it and returns nil if its peer is blocked.
func (f *netFilter) track(c net.Conn) net.Conn {
	if f == nil {
		return c
	}
	ip := remoteIP(c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked[ip] {
		c.Close()
		return nil
	}
	f.conns[c] = ip
	return &trackedConn{Conn: c, f: f}
}

func (f *netFilter) allowedAddr(address string) bool {
	if f == nil {
		return true
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.blocked[ap.Addr()]
}

// block cuts all traffic with ips, including open connections.
func (f *netFilter) block(ips ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ip := range ips {
		f.blocked[ip] = true
	}
	for c, ip := range f.conns {
		if f.blocked[ip] {
			c.Close()
			delete(f.conns, c)
		}
	}
}

// heal lifts every block.
func (f *netFilter) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = map[netip.Addr]bool{}
}

type trackedConn struct {
	net.Conn
	f    *netFilter
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.f.mu.Lock()
		delete(t.f.conns, t.Conn)
		t.f.mu.Unlock()
	})
	return t.Conn.Close()
}
