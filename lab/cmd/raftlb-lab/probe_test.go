package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// startServe runs serve on a loopback port and returns its address.
func startServe(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, name) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestAttemptAnswer(t *testing.T) {
	a := attempt(startServe(t, "m40"), 0, time.Second)
	if !a.OK || a.Answer != "m40" || a.Error != "" {
		t.Fatalf("attempt = %+v, want OK with answer m40", a)
	}
}

func TestAttemptRefused(t *testing.T) {
	a := attempt(closedPort(t), 0, time.Second)
	if a.OK || a.Error != "refused" {
		t.Fatalf("attempt = %+v, want a refused failure", a)
	}
}

// A service that accepts but never answers must fail the attempt at the
// timeout: from a client's view that is an outage.
func TestAttemptTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := attempt(ln.Addr().String(), 0, 50*time.Millisecond)
	if a.OK || a.Error != "timeout" {
		t.Fatalf("attempt = %+v, want a timeout failure", a)
	}
}

func TestProbeCount(t *testing.T) {
	r := probe(context.Background(), probeConfig{
		target:   startServe(t, "m50"),
		interval: time.Millisecond,
		timeout:  time.Second,
		duration: time.Minute, // the count ends it long before
		count:    5,
	})
	if r.Attempts != 5 || r.Successes != 5 || r.Answers["m50"] != 5 || r.Outages != 0 {
		t.Fatalf("report = %+v, want 5 answers from m50 and no outage", r)
	}
}

// With a source port, attempt n comes from port sport+n-1, and a second
// probe can reuse the ports of the first: the server sees them.
func TestProbeSourcePorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan int, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).Port
			c.Write([]byte("m30\n"))
			c.Close()
		}
	}()
	sport := closedPortNumber(t)
	for pass := 1; pass <= 2; pass++ {
		r := probe(context.Background(), probeConfig{
			target: ln.Addr().String(), interval: 50 * time.Millisecond, timeout: time.Second,
			duration: time.Minute, count: 2, sport: sport,
		})
		if r.Successes != 2 {
			t.Fatalf("pass %d: report = %+v, want 2 answers", pass, r)
		}
		got := []int{<-seen, <-seen}
		slices.Sort(got)
		if want := []int{sport, sport + 1}; !slices.Equal(got, want) {
			t.Fatalf("pass %d: server saw source ports %v, want %v", pass, got, want)
		}
		for _, a := range r.Records {
			if a.SourcePort != sport && a.SourcePort != sport+1 {
				t.Errorf("pass %d: record source port %d", pass, a.SourcePort)
			}
		}
	}
}

// closedPortNumber is a local port with nothing bound to it, and its
// successor likewise (best effort: both were free a moment ago).
func closedPortNumber(t *testing.T) int {
	t.Helper()
	for range 20 {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no two free adjacent ports")
	return 0
}

// Cancelling the context (what SIGTERM does in --until-signal mode) stops
// the probe, which still reports everything it did.
func TestProbeUntilCancelled(t *testing.T) {
	addr := closedPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Report, 1)
	go func() {
		done <- probe(ctx, probeConfig{target: addr, interval: time.Millisecond, timeout: time.Second})
	}()
	cancel()
	r := <-done
	if r.Attempts < 1 || r.Failures != r.Attempts || r.Errors["refused"] != r.Attempts {
		t.Fatalf("report = %+v, want only refused attempts", r)
	}
	if r.Outages != 1 || r.LongestOutageRecovered {
		t.Fatalf("outages %d recovered %v, want one unfinished outage", r.Outages, r.LongestOutageRecovered)
	}
}

func TestRunProbeWritesReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "probe.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"probe", "--target", startServe(t, "m30"),
		"--interval", "1ms", "--count", "3", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "probing ") {
		t.Errorf("stdout %q, want the readiness line", stdout.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, data)
	}
	if r.Attempts != 3 || r.Answers["m30"] != 3 || len(r.Records) != 3 {
		t.Fatalf("report = %+v, want 3 answers from m30", r)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"serve", "--port", "80"},
		{"serve", "--name", "m40"},
		{"serve", "--name", "m40", "--port", "70000"},
		{"serve", "--name", "m40", "--port", "80", "--addr", "vip"},
		{"serve", "--name", "m40", "--port", "80", "extra"},
		{"serve", "--name", "m40", "--port", "80", "--echo", "--http", "--body-file", "/dev/null"},
		{"probe"},
		{"probe", "--target", "127.0.0.1"},
		{"probe", "--target", "127.0.0.1:80", "--interval", "0s"},
		{"probe", "--target", "127.0.0.1:80", "--duration", "0s"},
		{"probe", "--target", "127.0.0.1:80", "--count", "-1"},
		{"probe", "--target", "127.0.0.1:80", "--nope"},
		{"probe", "--target", "127.0.0.1:80", "--source-port", "20000"},
		{"probe", "--target", "127.0.0.1:80", "--source-port", "65535", "--count", "2"},
		{"probe", "--target", "127.0.0.1:80", "--source-port", "-1", "--count", "2"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: no message on stderr", args)
		}
	}
}
