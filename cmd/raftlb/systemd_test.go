package main

import (
	"context"
	"slices"
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
	n := notifier{logger: testkit.Discard()}
	// until sends mark on the same socket and returns what came before
	// it: datagrams arrive in the order they were sent.
	until := func(mark string) []string {
		t.Helper()
		n.send(mark)
		var got []string
		for m := next(mark); m != mark; m = next(mark) {
			got = append(got, m)
		}
		return got
	}

	var dc atomic.Value
	dc.Store("")
	view := func() cluster.View {
		return cluster.View{Node: "n2", DC: dc.Load().(string), Term: 4, Quorum: dc.Load().(string) != "",
			Nodes: []cluster.NodeView{{Name: "n1", Status: "online"}, {Name: "n2", Status: "online"}, {Name: "n3", Status: "offline"}}}
	}
	// The notifier asks for the director's last beat on each tick: now
	// while it beats, a minute ago once it has hung.
	var beating atomic.Bool
	var beatReads atomic.Int64
	beat := func() time.Time {
		beatReads.Add(1)
		if beating.Load() {
			return time.Now()
		}
		return time.Now().Add(-time.Minute)
	}

	// Until the director has cleaned up after the last run, no READY=1,
	// even with a DC known: stopped before the clean-up ends, the notifier
	// has said only that it starts.
	dc.Store("n1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.run(ctx, make(chan struct{}), view, beat) }()
	if m := next("the start-up status"); m != "STATUS=starting: cleaning up after the last run (its resources, VIPs and IPVS rules)" {
		t.Errorf("before the clean-up: %q", m)
	}
	// A notifier that waits for the clean-up does nothing anyone can see:
	// no event marks "still waiting". It is given a moment to misbehave
	// (one that did not wait would send READY=1 at once) before it is
	// stopped and what it sent is read.
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	if got := until("MARK before the clean-up ended"); len(got) != 0 {
		t.Errorf("before the clean-up ended: %q", got)
	}

	// Cleaned up: no READY=1 while no DC is known.
	dc.Store("")
	startedUp := make(chan struct{})
	close(startedUp)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go n.run(ctx, startedUp, view, beat)
	if m := next("the start-up status again"); !strings.HasPrefix(m, "STATUS=starting") {
		t.Errorf("a second start: %q", m)
	}
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
	beating.Store(true)
	fed := 0
	for fed < 3 {
		if m := next("WATCHDOG=1"); m == "WATCHDOG=1" {
			fed++
		} else if m != "STATUS=member, DC n1 (term 4), 2/3 nodes online, quorum" {
			t.Errorf("while running: %q", m)
		}
	}

	// The director hangs: every beat read from now on is a minute old.
	// Whatever the ticks before fed is sent before the next tick reads the
	// beat; then three ticks decide on a stale beat, and the watchdog is
	// not fed.
	beating.Store(false)
	from := beatReads.Load()
	testkit.WaitFor(t, "a tick to read the stale beat", func() bool { return beatReads.Load() > from })
	until("MARK once the beat is stale")
	from = beatReads.Load()
	testkit.WaitFor(t, "three more ticks", func() bool { return beatReads.Load() >= from+3 })
	if got := until("MARK after three ticks"); slices.Contains(got, "WATCHDOG=1") {
		t.Errorf("the watchdog was fed while the director did not beat: %q", got)
	}
}
