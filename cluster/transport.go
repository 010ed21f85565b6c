package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// rpcMagic is the first byte of a raftlb RPC connection on the Raft port.
// hashicorp/raft's own connections start with an RPC type byte below 0x10,
// so one port carries both, behind one mutual-TLS handshake.
const rpcMagic byte = 0xF0

// handshakeTimeout bounds how long a peer may take to finish TLS (and,
// without TLS, to send its first byte), so a silent connection cannot pin
// a goroutine. A peer whose certificate the handshake verified may wait
// spareIdle before its first byte: its spare connection (spare.go).
const handshakeTimeout = 5 * time.Second

// muxLayer is a raft.StreamLayer over TCP (with mutual TLS unless insecure)
// that hands Raft connections to Raft and raftlb RPC connections to rpc.
type muxLayer struct {
	ln net.Listener
	// tls is the current mutual-TLS configuration (nil: insecure); a
	// reload swaps it, and new connections use the new one.
	tls   atomic.Pointer[tls.Config]
	local netip.Addr // outgoing connections are sourced from --bind
	rpc   func(net.Conn)
	// check decides whether the verified peer of a connection is who it
	// must be, and checkHeader whether a Raft request on an inbound
	// connection may come from that peer (cluster/identity.go); nil
	// accepts any peer the CA signed.
	check       func(peer) error
	checkHeader func(p peer, h raft.RPCHeader) error
	// ready is closed once Raft runs and the replicated state (its
	// revocations) is restored: until then nothing inbound is checked, so
	// nothing inbound is served.
	ready     chan struct{}
	readyOnce sync.Once
	logger    *slog.Logger
	refusals  *repeats // a refused peer is logged once a minute, not per retry
	// filter, set only by tests, cuts traffic to and from chosen peers.
	filter *NetFilter

	raftConns chan net.Conn
	spares    spares // handshaken connections to the other voters
	closeOnce sync.Once
	closed    chan struct{}
	// closedCtx ends at Close, with closed.
	closedCtx context.Context
	closeCtx  context.CancelFunc
	wg        sync.WaitGroup
}

// peer is what a connection's check sees: the certificate the peer
// presented (verified against the CA), where it is, and what it is for.
type peer struct {
	cert   *x509.Certificate
	remote netip.Addr
	// outbound: this node dialed address (expect: the node it meant to
	// reach, "" when it only knew the address); else the peer dialed in
	// for Raft (raft) or for RPC.
	outbound bool
	address  string
	expect   string
	raft     bool
}

func newMuxLayer(addr netip.AddrPort, tlsConf *tls.Config, rpc func(net.Conn), check func(peer) error, checkHeader func(peer, raft.RPCHeader) error, filter *NetFilter, logger *slog.Logger) (*muxLayer, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", addr, err)
	}
	m := &muxLayer{
		ln: ln, local: addr.Addr(), rpc: rpc, check: check, checkHeader: checkHeader, filter: filter, logger: logger,
		ready:     make(chan struct{}),
		refusals:  newRepeats(time.Now),
		raftConns: make(chan net.Conn),
		closed:    make(chan struct{}),
	}
	m.closedCtx, m.closeCtx = context.WithCancel(context.Background())
	m.tls.Store(tlsConf)
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
	var tc *tls.Conn
	if conf := m.tls.Load(); conf != nil {
		tc = tls.Server(c, conf)
		if err := tc.Handshake(); err != nil {
			// A peer that hangs up mid-handshake is one stopping while it
			// dialed (its spare connections, spare.go): nothing to warn of.
			level := slog.LevelWarn
			if errors.Is(err, io.EOF) {
				level = slog.LevelDebug
			}
			m.logger.Log(context.Background(), level, "rejected raft connection: TLS handshake failed",
				"remote", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		conn = tc
		_ = c.SetDeadline(time.Now().Add(spareIdle))
	}
	// A Close does not wait out a connection silent before its first
	// byte (a peer's spare may be, for spareIdle).
	stop := context.AfterFunc(m.closedCtx, func() { _ = c.Close() })
	br := bufio.NewReaderSize(conn, 1)
	first, err := br.Peek(1)
	if !stop() || err != nil {
		_ = conn.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	pc := &peekedConn{Conn: conn, r: br}
	isRPC := first[0] == rpcMagic
	select {
	case <-m.ready:
	case <-m.closed:
		_ = conn.Close()
		return
	}
	var rc net.Conn = pc
	if tc != nil && m.check != nil {
		remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		p := peer{cert: tc.ConnectionState().PeerCertificates[0], remote: remote.Addr().Unmap(), raft: !isRPC}
		if err := m.check(p); err != nil {
			m.refused(p, err)
			if isRPC {
				// The caller reads the refusal as the answer to its request.
				_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
				_ = json.NewEncoder(conn).Encode(rpcResponse{Error: fmt.Errorf("%w: %w", ErrRefused, err).Error(), Code: codeRefused})
			}
			_ = conn.Close()
			return
		}
		if !isRPC && m.checkHeader != nil {
			rc = newHeaderCheck(pc, br, func(h raft.RPCHeader) error {
				err := m.checkHeader(p, h)
				if err != nil {
					m.refused(p, err)
				}
				return err
			})
		}
	}
	if isRPC {
		_, _ = br.ReadByte()
		m.rpc(pc)
		return
	}
	select {
	case m.raftConns <- rc:
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
		m.spares.mu.Lock()
		close(m.closed)
		m.spares.mu.Unlock()
		m.closeCtx()
		m.dropSpares()
		err = m.ln.Close()
	})
	return err
}

// Wait blocks until the accept loop and in-flight handshakes are done.
func (m *muxLayer) Wait() { m.wg.Wait() }

func (m *muxLayer) Addr() net.Addr { return m.ln.Addr() }

// refused logs a peer the check turned away: once per peer and reason a
// minute, as Raft retries a refused connection on every heartbeat.
func (m *muxLayer) refused(p peer, err error) {
	key := fmt.Sprintf("%s %s %v", p.cert.Subject.CommonName, p.remote, err)
	if say, suppressed := m.refusals.say(key); say {
		args := []any{"certificate", p.cert.Subject.CommonName, "serial", certSerial(p.cert), "err", err}
		if p.outbound {
			args = append(args, "dialed", p.address)
		} else {
			args = append(args, "remote", p.remote.String())
		}
		if suppressed > 0 {
			args = append(args, "repeated", suppressed)
		}
		m.logger.Warn("refused a peer whose certificate is not the node it must be", args...)
	}
}

// start lets inbound connections be served: Raft runs.
func (m *muxLayer) start() { m.readyOnce.Do(func() { close(m.ready) }) }

// setTLS swaps the TLS configuration new connections use.
func (m *muxLayer) setTLS(conf *tls.Config) {
	m.tls.Store(conf)
	m.dropSpares()
}

// Dial implements raft.StreamLayer. Raft knows only the address; the
// check finds the node configured there.
func (m *muxLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if c := m.takeSpare(string(address), ""); c != nil {
		return c, nil
	}
	return m.dial(string(address), "", timeout)
}

// dial opens a connection to a peer's Raft port, completing the TLS
// handshake so a certificate problem surfaces here with its real cause,
// and checking that the peer is expect (or whoever is configured at
// address).
func (m *muxLayer) dial(address, expect string, timeout time.Duration) (net.Conn, error) {
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
	conf := m.tls.Load()
	if conf == nil {
		return raw, nil
	}
	tc := tls.Client(raw, conf)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS to %s: %w", address, err)
	}
	_ = tc.SetDeadline(time.Time{})
	if m.check != nil {
		remote, _ := netip.ParseAddrPort(address)
		p := peer{cert: tc.ConnectionState().PeerCertificates[0], remote: remote.Addr().Unmap(), outbound: true, address: address, expect: expect}
		if err := m.check(p); err != nil {
			m.refused(p, err)
			tc.Close()
			return nil, fmt.Errorf("%s: %w", address, err)
		}
	}
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
