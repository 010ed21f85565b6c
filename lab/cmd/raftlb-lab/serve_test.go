package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

// startEcho runs serve --echo on a loopback port and returns its address
// and a stop function that ends the service, as SIGTERM would.
func startEcho(t *testing.T, name string) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveEcho(ctx, ln, name) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serveEcho: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serveEcho still running 10s after its context ended")
		}
	})
	return ln.Addr().String(), cancel
}

// An echo connection greets with the name, answers each line with the
// name and the line, and stays open between lines.
func TestServeEcho(t *testing.T) {
	addr, _ := startEcho(t, "m30")
	c, err := testkit.Dial(t, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); err != nil || got != "m30\n" {
		t.Fatalf("greeting %q, %v; want %q", got, err, "m30\n")
	}
	for _, line := range []string{"seq 1", "seq 2", "hello there"} {
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != "m30 "+line+"\n" {
			t.Fatalf("answer to %q: %q, %v; want %q", line, got, err, "m30 "+line+"\n")
		}
	}
}

// A line longer than the protocol's bound ends the connection instead of
// growing a buffer without limit.
func TestServeEchoLongLine(t *testing.T) {
	addr, _ := startEcho(t, "m30")
	c, err := testkit.Dial(t, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, strings.Repeat("x", maxLine)+"\n")
	got, err := r.ReadString('\n')
	if err == nil {
		t.Fatalf("answer %q to an overlong line, want the connection closed", got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after an overlong line: %v", err)
	}
}

// Stopping the service closes the connections it holds: a client sees
// them end instead of hanging.
func TestServeEchoStopClosesConnections(t *testing.T) {
	addr, stop := startEcho(t, "m30")
	c, err := testkit.Dial(t, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	stop()
	if got, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("after stop: read %q, %v; want EOF", got, err)
	}
}
