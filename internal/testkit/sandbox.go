package testkit

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// The network sandbox. A test may dial loopback only (the kernel lab's
// scenarios, which run inside namespaces they create in a VM, are the one
// exception). Addresses a test hands to code that dials — a node's bind
// address, a real server a health check probes — come from Loopback, and
// code that dials on a spec's behalf takes Dialer's DialContext.
// TestOnlySandboxDials checks every test file for dials that bypass it.

// Loopback parses s and fails the test unless it is a loopback address
// (127.0.0.0/8 or ::1).
func Loopback(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	if !a.Unmap().IsLoopback() {
		t.Fatalf("sandbox: %s is not a loopback address: tests send traffic only to loopback or into namespaces they create", a)
	}
	return a.Unmap()
}

// LoopbackPort is Loopback for ADDR:PORT.
func LoopbackPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	return netip.AddrPortFrom(Loopback(t, ap.Addr().String()), ap.Port())
}

// ErrOutsideSandbox is what a sandbox dialer returns for a destination
// outside loopback.
var ErrOutsideSandbox = fmt.Errorf("sandbox: refusing to dial outside loopback")

// Dialer returns a net.Dialer that refuses every destination outside
// loopback, before a packet is sent: its Control hook sees the resolved
// address. A refusal also fails the test, so a probe that fails quietly
// (a health check counting it as a down server) cannot hide it.
func Dialer(t testing.TB) *net.Dialer {
	return &net.Dialer{Control: func(network, address string, _ syscall.RawConn) error {
		if err := CheckDestination(network, address); err != nil {
			t.Errorf("%v", err)
			return err
		}
		return nil
	}}
}

// DialContext is Dialer(t).DialContext, shaped for the code under test
// that takes a dial function.
func DialContext(t testing.TB) func(ctx context.Context, network, address string) (net.Conn, error) {
	return Dialer(t).DialContext
}

// Dial dials address through the sandbox.
func Dial(t testing.TB, network, address string) (net.Conn, error) {
	return Dialer(t).Dial(network, address)
}

// CheckDestination returns an error unless address (host:port, as a
// dialer's Control hook sees it) is on loopback or network is a unix
// socket.
func CheckDestination(network, address string) error {
	switch network {
	case "unix", "unixgram", "unixpacket":
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrOutsideSandbox, address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return fmt.Errorf("%w: %s %s", ErrOutsideSandbox, network, address)
	}
	return nil
}

// homeNetNS is the network namespace the test process started in, read
// while package initialisation still runs on the main thread. Not
// /proc/self/ns/net at dial time: that is the main thread's namespace,
// and a test that locks its goroutine to a thread and moves it into a
// namespace may have been given the main thread.
var homeNetNS, homeNetNSErr = os.Readlink("/proc/thread-self/ns/net")

// NamespaceDialer returns a net.Dialer for a test that dials from inside a
// network namespace it created (its goroutine locked to a thread moved
// there): it refuses, before a packet is sent, any dial from the test
// process's own namespace, where only loopback is allowed (Dialer).
func NamespaceDialer(t testing.TB) *net.Dialer {
	return &net.Dialer{Control: func(network, address string, _ syscall.RawConn) error {
		here, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil || homeNetNSErr != nil || here == homeNetNS {
			err := fmt.Errorf("%w: %s %s dialled from the test's own network namespace, not one it created", ErrOutsideSandbox, network, address)
			t.Errorf("%v", err)
			return err
		}
		return nil
	}}
}
