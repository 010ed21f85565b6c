package cluster

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// rpcMagic is the first byte of a raftlb RPC connection on the Raft port.
// hashicorp/raft's own connections start with an RPC type byte below 0x10,
// so one port carries both, behind one mutual-TLS handshake.
const rpcMagic byte = 0xF0

// handshakeTimeout bounds how long a peer may take to finish TLS and send
// its first byte, so a silent connection cannot pin a goroutine.
const handshakeTimeout = 5 * time.Second

// muxLayer is a raft.StreamLayer over TCP (with mutual TLS unless insecure)
// that hands Raft connections to Raft and raftlb RPC connections to rpc.
type muxLayer struct {
	ln     net.Listener
	tls    *tls.Config
	local  netip.Addr // outgoing connections are sourced from --bind
	rpc    func(net.Conn)
	logger *slog.Logger
	// filter, set only by tests, cuts traffic to and from chosen peers.
	filter *NetFilter

	raftConns chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

func newMuxLayer(addr netip.AddrPort, tlsConf *tls.Config, rpc func(net.Conn), filter *NetFilter, logger *slog.Logger) (*muxLayer, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", addr, err)
	}
	m := &muxLayer{
		ln: ln, tls: tlsConf, local: addr.Addr(), rpc: rpc, filter: filter, logger: logger,
		raftConns: make(chan net.Conn),
		closed:    make(chan struct{}),
	}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

func (m *muxLayer) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("raft listener failed", "err", err)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

// route finishes the handshake, reads the first byte and dispatches.
func (m *muxLayer) route(c net.Conn) {
	c = m.filter.track(c)
	if c == nil {
		return
	}
	conn := c
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if m.tls != nil {
		tc := tls.Server(c, m.tls)
		if err := tc.Handshake(); err != nil {
			m.logger.Warn("rejected raft connection: TLS handshake failed",
				"remote", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, 1)
	first, err := br.Peek(1)
	if err != nil {
		_ = conn.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	pc := &peekedConn{Conn: conn, r: br}
	if first[0] == rpcMagic {
		_, _ = br.ReadByte()
		m.rpc(pc)
		return
	}
	select {
	case m.raftConns <- pc:
	case <-m.closed:
		_ = conn.Close()
	}
}

// Accept implements net.Listener for raft.
func (m *muxLayer) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting. Connections already handed out are raft's.
func (m *muxLayer) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

// Wait blocks until the accept loop and in-flight handshakes are done.
func (m *muxLayer) Wait() { m.wg.Wait() }

func (m *muxLayer) Addr() net.Addr { return m.ln.Addr() }

// Dial implements raft.StreamLayer.
func (m *muxLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return m.dial(string(address), timeout)
}

// dial opens a connection to a peer's Raft port, completing the TLS
// handshake so a certificate problem surfaces here with its real cause.
func (m *muxLayer) dial(address string, timeout time.Duration) (net.Conn, error) {
	if !m.filter.allowedAddr(address) {
		return nil, fmt.Errorf("dial %s: blocked by test partition", address)
	}
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: m.local.AsSlice()}}
	raw, err := d.Dial("tcp", address)
	if err != nil {
		return nil, err
	}
	raw = m.filter.track(raw)
	if raw == nil {
		return nil, fmt.Errorf("dial %s: blocked by test partition", address)
	}
	if m.tls == nil {
		return raw, nil
	}
	tc := tls.Client(raw, m.tls)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS to %s: %w", address, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// peekedConn replays the byte route peeked at.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// peerName returns the node name from the verified client certificate, or
// "" on an insecure connection.
func peerName(c net.Conn) string {
	if pc, ok := c.(*peekedConn); ok {
		c = pc.Conn
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return certs[0].Subject.CommonName
}
