package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// probeTimeout bounds one probe in tests. It is generous: a test asserts
// what a probe says, never how long it took.
const probeTimeout = 10 * time.Second

func check(t *testing.T, hc spec.HealthCheck, target Target) error {
	t.Helper()
	c, err := NewChecker(hc, testkit.DialContext(t), allowing(hc))
	if err != nil {
		t.Fatalf("NewChecker(%+v): %v", hc, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return c.Check(ctx, target)
}

// allowing is an exec policy that lets hc's program run from where it is.
func allowing(hc spec.HealthCheck) *Exec {
	if len(hc.Command) == 0 {
		return nil
	}
	return NewExec([]string{filepath.Dir(hc.Command[0])}, nil, 0)
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	return addr
}

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	hc := spec.HealthCheck{Type: spec.CheckTCP}

	if err := check(t, hc, Target{Addr: netip.MustParseAddrPort(l.Addr().String())}); err != nil {
		t.Errorf("listening port: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(probeTimeout):
		t.Error("the listener never saw the connection")
	}

	err = check(t, hc, Target{Addr: closedPort(t)})
	if err == nil {
		t.Fatal("closed port: no error")
	}
	if got, want := err.Error(), "connect: connection refused"; got != want {
		t.Errorf("closed port: error %q, want %q", got, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v does not wrap ECONNREFUSED", err)
	}
}

func TestTCPCheckHonoursDeadline(t *testing.T) {
	c, err := NewChecker(spec.HealthCheck{Type: spec.CheckTCP}, testkit.DialContext(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = c.Check(ctx, Target{Addr: closedPort(t)})
	if err == nil || !strings.HasPrefix(err.Error(), "connect: ") {
		t.Errorf("cancelled probe: %v, want a connect error", err)
	}
}

func TestNewCheckerRejects(t *testing.T) {
	for _, hc := range []spec.HealthCheck{
		{Type: "ping"},
		{Type: spec.CheckHTTP, Path: "/", BodyRegex: "("},
		{Type: spec.CheckHTTP, Path: "/", DigestMD5: "abc"},
		{Type: spec.CheckHTTP, Path: "/", DigestSHA256: strings.Repeat("0", 32)},
		{Type: spec.CheckExec},
	} {
		if _, err := NewChecker(hc, testkit.DialContext(t), nil); err == nil {
			t.Errorf("NewChecker(%+v): no error", hc)
		}
	}
}
