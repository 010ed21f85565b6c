package events

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBusKeepsOrderAndCountsWhatDidNotFit: subscribers get every event in
// order up to their buffer; a full subscriber loses the rest, counted,
// while the others and the publisher go on; the bus keeps the last few.
func TestBusKeepsOrderAndCountsWhatDidNotFit(t *testing.T) {
	b := NewBus("n1", 3)
	fast, before := b.Subscribe(10)
	slow, _ := b.Subscribe(1)
	if len(before) != 0 {
		t.Fatalf("a new bus kept %d events", len(before))
	}
	for _, typ := range []string{DCGained, VIPClaimed, ServerDown, ServerUp} {
		b.Publish(Event{Type: typ, Message: typ})
	}
	for i, want := range []string{DCGained, VIPClaimed, ServerDown, ServerUp} {
		e := <-fast.C()
		if e.Type != want || e.Seq != uint64(i+1) || e.Node != "n1" || e.Time.IsZero() {
			t.Errorf("event %d: %+v, want %s with seq %d from n1", i, e, want, i+1)
		}
	}
	if e := <-slow.C(); e.Type != DCGained || slow.Dropped() != 3 {
		t.Errorf("the slow subscriber: %+v, %d dropped; want the first and 3 dropped", e, slow.Dropped())
	}
	recent := b.Recent()
	if len(recent) != 3 || recent[0].Type != VIPClaimed || recent[2].Type != ServerUp {
		t.Errorf("recent %+v, want the last three", recent)
	}
	late, kept := b.Subscribe(1)
	if len(kept) != 3 || kept[2].Seq != 4 {
		t.Errorf("a late subscriber got %+v kept", kept)
	}
	late.Close()
	late.Close()
	b.Publish(Event{Type: DCLost})
	if _, open := <-late.C(); open {
		t.Error("a closed subscription got an event")
	}
	var none *Bus
	none.Publish(Event{Type: DCLost}) // a nil bus takes and drops
	if s, kept := none.Subscribe(1); kept != nil || s == nil {
		t.Error("a nil bus's subscription")
	}
}

// TestWatchQuorum: a change of quorum is published once per change; the
// first answer is the baseline.
func TestWatchQuorum(t *testing.T) {
	b := NewBus("n1", 10)
	answers := make(chan bool)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); WatchQuorum(ctx, b, time.Millisecond, func() bool { return <-answers }) }()
	for _, a := range []bool{false, true, true, false, false, true} {
		answers <- a
	}
	cancel()
	go func() {
		for range answers {
		}
	}()
	<-done
	var got []string
	for _, e := range b.Recent() {
		got = append(got, e.Type)
	}
	if strings.Join(got, " ") != "quorum_regained quorum_lost quorum_regained" {
		t.Errorf("events %v", got)
	}
}

// TestDCWatch: the first DC is the baseline; each new one is an event;
// a leaderless moment in between is not.
func TestDCWatch(t *testing.T) {
	b := NewBus("n1", 10)
	w := NewDCWatch(b)
	for _, dc := range []string{"", "n1", "n1", "", "n2", "n2", "n1"} {
		w.Saw(dc)
	}
	var got []string
	for _, e := range b.Recent() {
		got = append(got, e.Type+":"+e.Target)
	}
	if strings.Join(got, " ") != "dc_changed:n2 dc_changed:n1" {
		t.Errorf("events %v", got)
	}
}
