package api

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// socketPath returns a socket path in a fresh temporary directory. A unix
// socket path is limited to 108 bytes, so a long TMPDIR is worked around.
func socketPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "api.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "rlb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "api.sock")
}

func TestParseAddr(t *testing.T) {
	good := []struct {
		in   string
		want Addr
	}{
		{"unix:///run/raftlb/raftlb.sock", Addr{Unix: "/run/raftlb/raftlb.sock"}},
		{"unix:///run//raftlb/../raftlb/x.sock", Addr{Unix: "/run/raftlb/x.sock"}},
		{"127.0.0.1:7950", Addr{TCP: netip.MustParseAddrPort("127.0.0.1:7950")}},
		{"[::1]:7950", Addr{TCP: netip.MustParseAddrPort("[::1]:7950")}},
	}
	for _, tc := range good {
		got, err := ParseAddr(tc.in)
		if err != nil {
			t.Errorf("ParseAddr(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAddr(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if got := DefaultAddr; func() error { _, err := ParseAddr(got); return err }() != nil {
		t.Errorf("DefaultAddr %q does not parse", got)
	}

	bad := []struct {
		in, want string // want: a fragment of the error
	}{
		{"unix://run/raftlb.sock", "must be absolute"},
		{"unix://", "must be absolute"},
		{"127.0.0.1:0", "port 0 is not allowed"},
		{"127.0.0.1", "want unix:///path or IP:PORT"},
		{"localhost:7950", "want unix:///path or IP:PORT"},
		{"/run/raftlb/raftlb.sock", "want unix:///path or IP:PORT"},
		{"garbage", "want unix:///path or IP:PORT"},
		{"", "want unix:///path or IP:PORT"},
	}
	for _, tc := range bad {
		got, err := ParseAddr(tc.in)
		if err == nil {
			t.Errorf("ParseAddr(%q) = %+v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseAddr(%q) error %q: want it to quote the input and say %q", tc.in, err, tc.want)
		}
	}
}

func TestAddrStringRoundTrips(t *testing.T) {
	for _, s := range []string{"unix:///run/raftlb/raftlb.sock", "127.0.0.1:7950", "[::1]:7950"} {
		a, err := ParseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if a.String() != s {
			t.Errorf("ParseAddr(%q).String() = %q", s, a.String())
		}
	}
}

func TestListenUnixSocketIsPrivate(t *testing.T) {
	path := filepath.Join(filepath.Dir(socketPath(t)), "sub", "dir", "api.sock")
	ln, err := Listen(Addr{Unix: path})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s has mode %v, want a socket", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %04o, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("created socket directory has mode %04o, want no access for group or others", perm)
	}
	// It accepts connections.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := socketPath(t)
	// A crashed agent leaves its socket file behind with nobody listening.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket was not left behind: %v", err)
	}

	ln, err := Listen(Addr{Unix: path})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the replacement socket: %v", err)
	}
	c.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := socketPath(t)
	first, err := Listen(Addr{Unix: path})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second, err := Listen(Addr{Unix: path})
	if err == nil {
		second.Close()
		t.Fatal("a second Listen on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), "another agent is listening") {
		t.Errorf("error %q: want it to say another agent is listening", err)
	}
	// The first listener still owns the socket.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live socket was disturbed: %v", err)
	}
	c.Close()
}

func TestListenRefusesRegularFile(t *testing.T) {
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(Addr{Unix: path})
	if err == nil {
		ln.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("error %q: want it to say the path is not a socket", err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "precious" {
		t.Errorf("the regular file was changed: %q, %v", data, err)
	}
}

func TestListenTCP(t *testing.T) {
	ln, err := Listen(Addr{TCP: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := netip.MustParseAddrPort(ln.Addr().String())
	if !ap.Addr().IsLoopback() || ap.Port() == 0 {
		t.Fatalf("listening on %s, want a loopback port", ap)
	}
	// The port is taken now: a second agent gets a clear error.
	again, err := Listen(Addr{TCP: ap})
	if err == nil {
		again.Close()
		t.Fatalf("a second Listen on %s succeeded", ap)
	}
	if !strings.HasPrefix(err.Error(), "api: ") {
		t.Errorf("error %q: want it prefixed with api:", err)
	}
}
