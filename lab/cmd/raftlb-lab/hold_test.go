package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdCtx bounds a hold that a broken test would leave running: the
// connections still running then are reported as waiting, and the test
// fails on its assertions.
func holdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHoldAlive(t *testing.T) {
	addr, _ := startEcho(t, "m30")
	r, err := hold(holdCtx(t), holdConfig{target: addr, conns: 3, interval: time.Millisecond, timeout: 10 * time.Second, count: 5}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns != 3 || r.Alive != 3 || r.Servers["m30"] != 3 || len(r.Records) != 3 {
		t.Fatalf("report = %+v, want 3 connections to m30, all alive", r)
	}
	ports := map[int]bool{}
	for _, c := range r.Records {
		if c.Server != "m30" || c.Exchanges != 5 || c.LastAnswer == nil || c.Error != "" || c.Waiting {
			t.Errorf("connection %+v, want 5 answers from m30", c)
		}
		if c.LocalPort == 0 || ports[c.LocalPort] {
			t.Errorf("local port %d: missing or not unique", c.LocalPort)
		}
		ports[c.LocalPort] = true
	}
}

// Stopping the service closes the connections it holds: each one fails,
// as a reset or an EOF (which one depends on whether the server had read
// the last line before it closed), with the time it failed.
func TestHoldServerStops(t *testing.T) {
	addr, stop := startEcho(t, "m30")
	r, err := hold(holdCtx(t), holdConfig{target: addr, conns: 4, interval: time.Millisecond, timeout: 10 * time.Second}, stop)
	if err != nil {
		t.Fatal(err)
	}
	if r.Alive != 0 || r.Waiting != 0 || r.Reset+r.EOF != 4 {
		t.Fatalf("report = %+v, want every connection reset or at EOF", r)
	}
	for _, c := range r.Records {
		if c.FailedAt == nil || c.FailedAt.Before(r.Start) || c.Detail == "" {
			t.Errorf("connection %+v, want its failure's time and text", c)
		}
	}
}

// Each way the first exchange can go wrong gets its class.
func TestHoldFailureClasses(t *testing.T) {
	for _, tc := range []struct {
		class string
		then  func(c *net.TCPConn, line string)
	}{
		{"eof", func(c *net.TCPConn, _ string) { c.Close() }},
		{"reset", func(c *net.TCPConn, _ string) { c.SetLinger(0); c.Close() }},
		{"moved", func(c *net.TCPConn, line string) { c.Write([]byte("m40 " + line)) }},
		{"other", func(c *net.TCPConn, _ string) { c.Write([]byte("m30 seq 7\n")) }},
	} {
		t.Run(tc.class, func(t *testing.T) {
			addr, _ := fakeEcho(t, "m30", tc.then)
			r, err := hold(holdCtx(t), holdConfig{target: addr, conns: 2, interval: time.Millisecond, timeout: 10 * time.Second}, func() {})
			if err != nil {
				t.Fatal(err)
			}
			if r.Alive != 0 || r.Waiting != 0 {
				t.Fatalf("report = %+v, want every connection failed", r)
			}
			for _, c := range r.Records {
				if c.Error != tc.class || c.Exchanges != 0 || c.FailedAt == nil {
					t.Errorf("connection %+v, want a %s failure on its first exchange", c, tc.class)
				}
			}
			want := map[string]int{"eof": r.EOF, "reset": r.Reset, "moved": r.Moved, "other": r.OtherFailures}
			if want[tc.class] != 2 {
				t.Errorf("report = %+v, want 2 counted as %s", r, tc.class)
			}
		})
	}
}

// When hold stops while exchanges wait for their answers (an outage still
// going on), the connections are neither alive nor failed: waiting.
func TestHoldStopsWhileWaiting(t *testing.T) {
	addr, lines := fakeEcho(t, "m30", func(*net.TCPConn, string) {}) // reads, never answers
	ctx, cancel := context.WithCancel(holdCtx(t))
	done := make(chan HoldReport, 1)
	go func() {
		r, err := hold(ctx, holdConfig{target: addr, conns: 3, interval: time.Millisecond, timeout: time.Minute}, func() {})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	for range 3 {
		<-lines // every connection's first line has reached the server
	}
	cancel()
	r := <-done
	if r.Waiting != 3 || r.Alive != 0 {
		t.Fatalf("report = %+v, want 3 connections waiting", r)
	}
	for _, c := range r.Records {
		if !c.Waiting || c.Error != "" || c.Exchanges != 0 || c.LongestExchangeMS <= 0 {
			t.Errorf("connection %+v, want one exchange waiting", c)
		}
	}
}

// hold is ready only once every connection has its greeting; a target
// that does not greet, or does not listen, is an error, not a report.
func TestHoldNeedsGreetings(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close() // accepts (the backlog), never greets
	for _, target := range []string{silent.Addr().String(), closedPort(t)} {
		ready := false
		_, err := hold(holdCtx(t), holdConfig{target: target, conns: 2, interval: time.Millisecond, timeout: 50 * time.Millisecond}, func() { ready = true })
		if err == nil || ready {
			t.Errorf("%s: err %v, ready %v; want an error before ready", target, err, ready)
		}
	}
}

func TestRunHoldWritesReport(t *testing.T) {
	addr, _ := startEcho(t, "m40")
	out := filepath.Join(t.TempDir(), "hold.json")
	var stdout, stderr bytes.Buffer
	code := run(holdCtx(t), []string{"hold", "--target", addr, "--conns", "2", "--interval", "1ms", "--count", "3", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if want := "holding 2 connections to " + addr + "\n"; stdout.String() != want {
		t.Errorf("stdout %q, want only the readiness line %q", stdout.String(), want)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r HoldReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, data)
	}
	if r.Target != addr || r.Alive != 2 || r.Servers["m40"] != 2 || len(r.Records) != 2 || r.Records[0].Exchanges != 3 {
		t.Fatalf("report = %+v, want 2 live connections to m40 with 3 exchanges each", r)
	}
}

func TestRunHoldUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"hold"},
		{"hold", "--target", "127.0.0.1"},
		{"hold", "--target", "127.0.0.1:80", "--conns", "0"},
		{"hold", "--target", "127.0.0.1:80", "--interval", "0s"},
		{"hold", "--target", "127.0.0.1:80", "--timeout", "-1s"},
		{"hold", "--target", "127.0.0.1:80", "--duration", "0s"},
		{"hold", "--target", "127.0.0.1:80", "--count", "-1"},
		{"hold", "--target", "127.0.0.1:80", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "usage") {
			t.Errorf("%q: stderr %q, want a usage error", args, stderr.String())
		}
	}
}

// fakeEcho runs a loopback server that greets every connection with name,
// reads its first line and hands both to then, which answers it in a way
// serve --echo would not. It returns the address and the first lines as
// they arrive. Connections then leaves open are closed at cleanup.
func fakeEcho(t *testing.T, name string, then func(c *net.TCPConn, line string)) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				c.Write([]byte(name + "\n"))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				lines <- line
				then(c.(*net.TCPConn), line)
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	})
	return ln.Addr().String(), lines
}
