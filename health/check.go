package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"

	"github.com/raftlb/raftlb/spec"
)

// Target is what one probe is aimed at.
type Target struct {
	Addr netip.AddrPort // the real server
	VIP  netip.AddrPort // the virtual service it backs
}

// Checker probes a target once. A nil error means healthy; otherwise the
// error says what failed, briefly enough to show in the status view.
type Checker interface {
	Check(ctx context.Context, t Target) error
}

// DialFunc opens a connection, as net.Dialer's DialContext does. The
// checkers dial through one, so a test can confine their probes to
// loopback.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// defaultDial is dial, or a plain net.Dialer when dial is nil.
func defaultDial(dial DialFunc) DialFunc {
	if dial != nil {
		return dial
	}
	var d net.Dialer
	return d.DialContext
}

// NewChecker returns the checker for a health-check spec. Everything that
// can be prepared once (the regular expression, the digests, the HTTP
// transport) is prepared here rather than on every probe. The spec has
// been validated by fsm; an error here means it was not. dial opens the
// tcp and http(s) checks' connections; nil means a plain net.Dialer. exec
// is the node's policy for exec checks; nil runs none.
func NewChecker(hc spec.HealthCheck, dial DialFunc, exec *Exec) (Checker, error) {
	switch hc.Type {
	case spec.CheckTCP:
		return tcpChecker{dial: defaultDial(dial)}, nil
	case spec.CheckHTTP, spec.CheckHTTPS:
		return newHTTPChecker(hc, defaultDial(dial))
	case spec.CheckExec:
		return newExecChecker(hc.Command, exec)
	default:
		return nil, fmt.Errorf("unknown health check type %q", hc.Type)
	}
}

// tcpChecker connects and closes: ldirectord's checktype=connect,
// keepalived's TCP_CHECK.
type tcpChecker struct{ dial DialFunc }

func (c tcpChecker) Check(ctx context.Context, t Target) error {
	conn, err := c.dial(ctx, "tcp", t.Addr.String())
	if err != nil {
		return netError(err)
	}
	return conn.Close()
}

// netError shortens an error of net or net/http to what failed, e.g.
// "connect: connection refused" rather than
// `Get "http://10.0.0.1:80/": dial tcp 10.0.0.1:80: connect: connection refused`:
// the status view already names the server. The chain is kept, so
// errors.Is(err, syscall.ECONNREFUSED) still holds.
func netError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timed out: %w", err)
		}
		return err
	}
	var sc *os.SyscallError
	if errors.As(op.Err, &sc) {
		return fmt.Errorf("%s: %w", sc.Syscall, sc.Err)
	}
	stage := op.Op
	if stage == "dial" {
		stage = "connect"
	}
	return fmt.Errorf("%s: %w", stage, op.Err)
}
