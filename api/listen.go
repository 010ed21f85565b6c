package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultAddr is where the agent listens unless told otherwise: a unix
// socket only root can use, so the admin API is not on the network.
const DefaultAddr = "unix:///run/raftlb/raftlb.sock"

// Addr is a parsed --api value.
type Addr struct {
	Unix string         // socket path, or ""
	TCP  netip.AddrPort // when Unix is ""
}

// ParseAddr accepts unix:///absolute/path or IP:PORT.
func ParseAddr(s string) (Addr, error) {
	if rest, ok := strings.CutPrefix(s, "unix://"); ok {
		if !filepath.IsAbs(rest) {
			return Addr{}, fmt.Errorf("api address %q: the socket path must be absolute (unix:///run/raftlb/raftlb.sock)", s)
		}
		return Addr{Unix: filepath.Clean(rest)}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return Addr{}, fmt.Errorf("api address %q: want unix:///path or IP:PORT: %w", s, err)
	}
	if ap.Port() == 0 {
		return Addr{}, fmt.Errorf("api address %q: port 0 is not allowed", s)
	}
	return Addr{TCP: ap}, nil
}

func (a Addr) String() string {
	if a.Unix != "" {
		return "unix://" + a.Unix
	}
	return a.TCP.String()
}

// Listen opens the API listener. A unix socket is created with mode 0600
// in a directory created 0700 if missing; a stale socket left by a crashed
// agent is replaced, a live one is not.
func Listen(a Addr) (net.Listener, error) {
	if a.Unix == "" {
		ln, err := net.Listen("tcp", a.TCP.String())
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		return ln, nil
	}
	if err := os.MkdirAll(filepath.Dir(a.Unix), 0o700); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if fi, err := os.Lstat(a.Unix); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api: %s exists and is not a socket", a.Unix)
		}
		if c, err := net.DialTimeout("unix", a.Unix, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: another agent is listening on %s", a.Unix)
		}
		if err := os.Remove(a.Unix); err != nil {
			return nil, fmt.Errorf("api: remove stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api: %w", err)
	}
	// Create the socket unreachable for others from its first instant.
	old := umask(0o177)
	ln, err := net.Listen("unix", a.Unix)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Chmod(a.Unix, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return ln, nil
}
