package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Spare connections: a failover's election must not wait for handshakes.
//
// Raft keeps a pool of connections per peer, but only to peers it talks
// to: a follower never talks to another follower until the leader is gone,
// and then its pre-vote and vote each open a new connection — a TCP and
// mutual-TLS handshake on the election's path. The lab's emulated CPU took
// 80–160 ms per handshake, longer than the stagger that keeps two voters
// from splitting the vote (cluster/detect.go): a candidate's pre-vote
// reached the other voter after that one had given up too, both won their
// pre-votes, split the real vote, and the election waited out an election
// timeout (935 ms instead of about 20).
//
// So every voter keeps one spare, handshaken connection to each other
// voter (keepSpares), and Dial hands it out first (takeSpare), replacing it
// in the background. A spare is at most spareMaxAge old: the peer waits
// spareIdle for an authenticated connection's first byte (route), longer,
// and checks the peer again when that byte comes, so a certificate revoked
// meanwhile is still refused. A spare the peer has closed (it restarted) is
// dropped when taken, not handed to Raft.

const (
	// spareMaxAge is how long a spare is kept before it is replaced.
	spareMaxAge = time.Minute
	// spareIdle is how long the peer waits for the first byte on a
	// connection whose TLS handshake verified a certificate of the
	// cluster's CA; longer than spareMaxAge.
	spareIdle = 90 * time.Second
	// spareEvery is how often keepSpares looks at the voters: a new voter,
	// or one whose spare was taken and not replaced (it was down), has one
	// within it. A look costs no handshake unless a spare is missing.
	spareEvery = 2 * time.Second
)

type spare struct {
	conn net.Conn
	at   time.Time
}

// spares are the spare connections of a muxLayer, by peer address.
type spares struct {
	mu      sync.Mutex
	conns   map[string]spare
	dialing map[string]bool
	names   map[string]string // the node each address must answer as
}

// takeSpare returns the spare to address, if one is fresh and open and
// was checked as node expect's ("": whoever is configured there), and has
// a new one dialed in its place. Raft's dials take spares, and so do
// raftlb's RPCs, the takeover's question to the voters among them.
func (m *muxLayer) takeSpare(address, expect string) net.Conn {
	s := &m.spares
	s.mu.Lock()
	sp, ok := s.conns[address]
	if ok && expect != "" && s.names[address] != expect {
		ok = false
	}
	if ok {
		delete(s.conns, address)
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	m.refillSpare(address)
	if time.Since(sp.at) > spareMaxAge || !stillOpen(sp.conn) {
		_ = sp.conn.Close()
		return nil
	}
	return sp.conn
}

// stillOpen reports whether the peer has not closed c: a read that must
// return at once times out on an open connection the peer has sent nothing
// on (it never speaks first), and fails on a closed one.
func stillOpen(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now()); err != nil {
		return false
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return c.SetReadDeadline(time.Time{}) == nil
}

// refillSpare dials a spare to address in the background, unless one is
// being dialed or the layer is closed.
func (m *muxLayer) refillSpare(address string) {
	s := &m.spares
	s.mu.Lock()
	select {
	case <-m.closed:
		s.mu.Unlock()
		return
	default:
	}
	if s.dialing[address] {
		s.mu.Unlock()
		return
	}
	expect := s.names[address]
	if s.dialing == nil {
		s.dialing = map[string]bool{}
	}
	s.dialing[address] = true
	m.wg.Add(1) // under the lock: Close, which closes m.closed under it too, is not yet waiting
	s.mu.Unlock()
	go func() {
		defer m.wg.Done()
		c, err := m.dial(address, expect, raftIOTimeout)
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.dialing, address)
		if err != nil {
			m.logger.Debug("no spare connection to a voter", "address", address, "err", err)
			return
		}
		select {
		case <-m.closed:
			_ = c.Close()
			return
		default:
		}
		if old, ok := s.conns[address]; ok {
			_ = old.conn.Close()
		}
		if s.conns == nil {
			s.conns = map[string]spare{}
		}
		s.conns[address] = spare{conn: c, at: time.Now()}
	}()
}

// keepSparesTo makes the spares those to peers (address → node name): a
// spare to a peer no longer listed is closed, a missing or ageing one is
// dialed.
func (m *muxLayer) keepSparesTo(peers map[string]string) {
	if m.tls.Load() == nil {
		return // without TLS a connection costs no handshake worth sparing
	}
	s := &m.spares
	var refill []string
	s.mu.Lock()
	s.names = peers
	for addr, sp := range s.conns {
		// A spare to a peer that restarted is closed at its end: found
		// here, it is replaced before an election needs it.
		if _, ok := peers[addr]; !ok || time.Since(sp.at) > spareMaxAge-spareEvery || !stillOpen(sp.conn) {
			_ = sp.conn.Close()
			delete(s.conns, addr)
		}
	}
	for addr := range peers {
		if _, ok := s.conns[addr]; !ok {
			refill = append(refill, addr)
		}
	}
	s.mu.Unlock()
	for _, addr := range refill {
		m.refillSpare(addr)
	}
}

// dropSpares closes every spare: the TLS configuration changed, or the
// layer closes.
func (m *muxLayer) dropSpares() {
	s := &m.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, sp := range s.conns {
		_ = sp.conn.Close()
		delete(s.conns, addr)
	}
}

// keepSpares keeps a spare connection to every other voter while the node
// runs.
func (n *Node) keepSpares(ctx context.Context) {
	t := time.NewTicker(spareEvery)
	defer t.Stop()
	for {
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			peers := map[string]string{}
			for _, sv := range f.Configuration().Servers {
				if sv.Suffrage == raft.Voter && string(sv.ID) != n.cfg.Name {
					peers[string(sv.Address)] = string(sv.ID)
				}
			}
			n.mux.keepSparesTo(peers)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
