package cluster

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

// failingListener fails its first fails Accepts as a process out of
// descriptors does (EMFILE), then accepts from the listener it wraps.
type failingListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorsAreRetried: accept errors that pass (too many open
// files) do not stop the listener: once they pass, a peer's connection
// is served. (It stopped for good on the first one, and the node never
// took a Raft or RPC connection again.)
func TestAcceptErrorsAreRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln}
	fl.fails.Store(4)
	served := make(chan struct{}, 1)
	m := newMuxLayerOn(fl, netip.MustParseAddr("127.0.0.1"), nil, func(c net.Conn) { served <- struct{}{}; _ = c.Close() }, nil, nil, nil, slog.New(slog.DiscardHandler))
	m.start()
	t.Cleanup(func() { _ = m.Close(); m.Wait() })
	stopped := make(chan struct{})
	go func() { m.Wait(); close(stopped) }() // the accept loop's end, before Close only if it gave up
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{rpcMagic}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-stopped:
		t.Fatal("the listener stopped on an accept error: no connection is served again")
	case <-time.After(30 * time.Second):
		t.Fatal("the connection was not served 30 s after the failed accepts")
	}
	if n := fl.fails.Load(); n >= 0 {
		t.Errorf("%d failing accepts not tried", n+1)
	}
}

// TestHandshakeFloodIsBounded: connections that never finish their TLS
// handshake hold at most maxHandshakes places; one more is closed at once
// while they still wait, and a peer is served again once they are gone.
func TestHandshakeFloodIsBounded(t *testing.T) {
	dir := newTestCA(t, "a", "b")
	var served atomic.Bool
	m, err := newMuxLayer(netip.MustParseAddrPort("127.0.0.1:0"), mustLoadTLS(t, dir, "b"), func(c net.Conn) { served.Store(true); _ = c.Close() }, nil, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(func() { _ = m.Close(); m.Wait() })
	addr := m.Addr().String()

	var flood []net.Conn
	var mu sync.Mutex
	closeFlood := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range flood {
			_ = c.Close()
		}
		flood = nil
	}
	t.Cleanup(closeFlood)
	for range maxHandshakes {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	testkit.WaitFor(t, "every flooding connection to hold a place", func() bool { return len(m.handshakes) == maxHandshakes })

	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(handshakeTimeout))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection past the bound: read %v, want it closed at once", err)
	}
	// The flood still waits in its handshakes: the extra one was closed
	// for the bound, not for a timeout.
	_ = flood[0].SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var ne net.Error
	if _, err := flood[0].Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the first flooding connection: read %v, want it still open", err)
	}

	closeFlood()
	testkit.WaitFor(t, "the places to be given back", func() bool { return len(m.handshakes) == 0 })
	conn, err := tls.Dial("tcp", addr, mustLoadTLS(t, dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{rpcMagic}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "a peer served after the flood", served.Load)
}
