package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// NetFilter simulates network partitions for in-process tests: it refuses
// Raft, RPC and gossip traffic to and from blocked peer addresses and cuts
// the connections already open. Production code never sets one
// (Config.Filter is nil); every method is a no-op on nil.
type NetFilter struct {
	mu      sync.Mutex
	blocked map[netip.Addr]bool
	conns   map[net.Conn]netip.Addr
}

// NewNetFilter returns a filter that blocks nothing yet.
func NewNetFilter() *NetFilter {
	return &NetFilter{blocked: map[netip.Addr]bool{}, conns: map[net.Conn]netip.Addr{}}
}

func remoteIP(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// track registers c, or closes it and returns nil if its peer is blocked.
func (f *NetFilter) track(c net.Conn) net.Conn {
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

func (f *NetFilter) allowedAddr(address string) bool {
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

// Block cuts all traffic with ips, including open connections.
func (f *NetFilter) Block(ips ...netip.Addr) {
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

// Heal lifts every block.
func (f *NetFilter) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = map[netip.Addr]bool{}
}

type trackedConn struct {
	net.Conn
	f    *NetFilter
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

// filteredTransport is memberlist's own network transport with a
// NetFilter in front, so a partition cuts gossip as it cuts Raft: packets
// to and from blocked peers vanish, streams are refused or cut.
type filteredTransport struct {
	*memberlist.NetTransport
	f       *NetFilter
	packets chan *memberlist.Packet
	streams chan net.Conn
	// closing stops forwarding (memberlist no longer reads) while the
	// pumps go on draining the inner transport, whose listeners cannot
	// stop while blocked on a send; done then ends the pumps.
	closing chan struct{}
	done    chan struct{}
}

func newFilteredTransport(nt *memberlist.NetTransport, f *NetFilter) *filteredTransport {
	t := &filteredTransport{NetTransport: nt, f: f, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn),
		closing: make(chan struct{}), done: make(chan struct{})}
	go func() {
		for {
			select {
			case <-t.done:
				return
			case p := <-nt.PacketCh():
				if !t.f.allowedAddr(p.From.String()) {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.closing:
				}
			}
		}
	}()
	go func() {
		for {
			select {
			case <-t.done:
				return
			case c := <-nt.StreamCh():
				if c = t.f.track(c); c == nil {
					continue
				}
				select {
				case t.streams <- c:
				case <-t.closing:
					c.Close()
				}
			}
		}
	}()
	return t
}

func (t *filteredTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *filteredTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *filteredTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if !t.f.allowedAddr(addr) {
		return time.Now(), nil // lost on the way, as on a cut network
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *filteredTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if !t.f.allowedAddr(addr) {
		return nil, fmt.Errorf("dial %s: network partitioned (test filter)", addr)
	}
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	if c = t.f.track(c); c == nil {
		return nil, fmt.Errorf("dial %s: network partitioned (test filter)", addr)
	}
	return c, nil
}

func (t *filteredTransport) Shutdown() error {
	close(t.closing)
	err := t.NetTransport.Shutdown()
	close(t.done)
	return err
}
