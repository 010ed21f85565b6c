package cluster

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/internal/testkit"
)

// TestSpareConnections: a voter keeps a handshaken connection to each
// other voter, and Raft's dial gets it without a handshake of its own; the
// peer serves it when its first byte comes, after the handshake timeout a
// silent unauthenticated connection gets; one the peer closed is not
// handed out, and a new TLS configuration drops the spares.
func TestSpareConnections(t *testing.T) {
	dir := newTestCA(t, "a", "b")
	logger := slog.New(slog.DiscardHandler)
	var handshakes atomic.Int32
	serverConf := mustLoadTLS(t, dir, "b").Clone()
	serverConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}
	lo := netip.MustParseAddr("127.0.0.1")
	b, err := newMuxLayer(netip.AddrPortFrom(lo, 0), serverConf, func(net.Conn) {}, nil, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	b.start()
	a, err := newMuxLayer(netip.AddrPortFrom(lo, 0), mustLoadTLS(t, dir, "a"), func(net.Conn) {}, nil, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close(); a.Wait(); b.Wait() })
	addr := b.Addr().String()

	spareOf := func(m *muxLayer) net.Conn {
		m.spares.mu.Lock()
		defer m.spares.mu.Unlock()
		return m.spares.conns[addr].conn
	}
	a.keepSparesTo(map[string]string{addr: "b"})
	testkit.WaitFor(t, "a spare connection to b", func() bool { return spareOf(a) != nil })
	sp := spareOf(a)
	if handshakes.Load() != 1 {
		t.Fatalf("%d handshakes for one spare", handshakes.Load())
	}
	c, err := a.Dial(raft.ServerAddress(addr), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c != sp {
		t.Fatal("Raft's dial handshook anew instead of taking the spare")
	}
	// It is served as a Raft connection once its first byte comes.
	if _, err := c.Write([]byte{raftRequestVote}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = got.Close()
	_ = c.Close()
	testkit.WaitFor(t, "the spare replaced", func() bool { return spareOf(a) != nil })

	// plantDead puts, in place of a's spare, one whose peer has closed it.
	plantDead := func() net.Conn {
		mine, theirs := net.Pipe()
		_ = theirs.Close()
		a.spares.mu.Lock()
		defer a.spares.mu.Unlock()
		_ = a.spares.conns[addr].conn.Close()
		a.spares.conns[addr] = spare{conn: mine, at: time.Now()}
		return mine
	}
	// A spare whose peer has gone is not handed out.
	plantDead()
	if c := a.takeSpare(addr, ""); c != nil {
		t.Fatal("a spare the peer closed was handed out")
	}
	testkit.WaitFor(t, "the closed spare replaced", func() bool { return spareOf(a) != nil })

	// A spare the peer closed is replaced by the next look at the voters,
	// before anyone needs it.
	dead := plantDead()
	a.keepSparesTo(map[string]string{addr: "b"})
	if spareOf(a) == dead {
		t.Fatal("a look at the voters kept a spare the peer had closed")
	}
	testkit.WaitFor(t, "the dead spare replaced", func() bool { return spareOf(a) != nil })
	// A spare checked as b's is not handed to a call that expects another
	// node there.
	if c := a.takeSpare(addr, "c"); c != nil {
		t.Fatal("a spare checked as b's was handed to a call expecting c")
	}
	// A new TLS configuration: the spares go.
	a.setTLS(mustLoadTLS(t, dir, "a"))
	if spareOf(a) != nil {
		t.Error("a spare handshaken under the old TLS configuration outlived it")
	}
	// A peer no longer a voter: its spare goes.
	a.keepSparesTo(map[string]string{addr: "b"})
	testkit.WaitFor(t, "a spare again", func() bool { return spareOf(a) != nil })
	a.keepSparesTo(map[string]string{})
	if spareOf(a) != nil {
		t.Error("a spare to a node that is no longer a voter is kept")
	}
}

// TestStillOpen: the probe tells an open connection the peer has said
// nothing on from one the peer closed, and leaves the open one usable.
func TestStillOpen(t *testing.T) {
	mine, theirs := net.Pipe()
	if !stillOpen(mine) {
		t.Fatal("an open connection was taken for closed")
	}
	go func() { _, _ = theirs.Write([]byte("x")) }()
	b := make([]byte, 1)
	if _, err := mine.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("after the probe: read %q, %v", b, err)
	}
	_ = theirs.Close()
	if stillOpen(mine) {
		t.Error("a connection the peer closed was taken for open")
	}
}
