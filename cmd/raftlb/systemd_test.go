package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/internal/testkit"
)

// TestSystemdNotify speaks sd_notify over a real unix datagram socket, as
// systemd listens on one: no READY=1 before the start-up clean-up, nor
// while no DC is known (STATUS says why), READY=1 with the role once one
// is; WATCHDOG=1 while the director beats, none once it stops beating.
// A real agent's READY=1 and STOPPING=1: e2e TestSystemdLifecycle.
func TestSystemdNotify(t *testing.T) {
	msgs := testkit.NotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "300000")
	next := func(what string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(testkit.WaitTimeout):
			t.Fatalf("no message: %s", what)
			return ""
		}
	}

	var dc atomic.Value
	dc.Store("")
	var beat atomic.Int64
	beat.Store(time.Now().UnixNano())
	view := func() cluster.View {
		return cluster.View{Node: "n2", DC: dc.Load().(string), Term: 4, Quorum: dc.Load().(string) != "",
			Nodes: []cluster.NodeView{{Name: "n1", Status: "online"}, {Name: "n2", Status: "online"}, {Name: "n3", Status: "offline"}}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := notifier{logger: testkit.Discard()}
	startedUp := make(chan struct{})
	go n.run(ctx, startedUp, view, func() time.Time { return time.Unix(0, beat.Load()) })

	// Until the director has cleaned up after the last run, no READY=1,
	// even with a DC known.
	dc.Store("n1")
	if m := next("the start-up status"); m != "STATUS=starting: cleaning up after the last run (its resources, VIPs and IPVS rules)" {
		t.Errorf("before the clean-up: %q", m)
	}
	select {
	case m := <-msgs:
		t.Errorf("before the clean-up ended: %q", m)
	case <-time.After(300 * time.Millisecond):
	}
	dc.Store("")
	close(startedUp)
	if m := next("the first status"); m != "STATUS=no DC known: waiting to join a cluster or for its peers, no quorum" {
		t.Errorf("before a DC is known: %q", m)
	}
	dc.Store("n1")
	for m := next("READY"); !strings.HasPrefix(m, "READY=1"); m = next("READY") {
		if !strings.HasPrefix(m, "STATUS=no DC known") {
			t.Fatalf("before READY=1: %q", m)
		}
	}
	// Fresh beats: fed about every 100 ms.
	go func() {
		for ctx.Err() == nil {
			beat.Store(time.Now().UnixNano())
			time.Sleep(20 * time.Millisecond)
		}
	}()
	fed := 0
	for fed < 3 {
		if m := next("WATCHDOG=1"); m == "WATCHDOG=1" {
			fed++
		} else if m != "STATUS=member, DC n1 (term 4), 2/3 nodes online, quorum" {
			t.Errorf("while running: %q", m)
		}
	}
	cancel() // the beats stop
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	beat.Store(time.Now().Add(-time.Minute).UnixNano())
	for len(msgs) > 0 {
		<-msgs
	}
	go n.run(ctx2, startedUp, view, func() time.Time { return time.Unix(0, beat.Load()) })
	if m := next("the start-up status again"); !strings.HasPrefix(m, "STATUS=starting") {
		t.Errorf("a second start: %q", m)
	}
	if m := next("READY again"); !strings.HasPrefix(m, "READY=1\nSTATUS=member, DC n1") {
		t.Errorf("READY: %q", m)
	}
	deadline := time.After(500 * time.Millisecond)
wait:
	for {
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				t.Fatal("the watchdog was fed while the director did not beat")
			}
		case <-deadline:
			break wait
		}
	}
}
