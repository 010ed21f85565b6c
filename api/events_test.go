package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/events"
)

// TestEvents: the recent events as a list; follow streams them, then each
// new one as it is published, and a Shutdown ends the stream instead of
// waiting for the client.
func TestEvents(t *testing.T) {
	ts := startServer(t, &FakeAgent{})
	if body, code := ts.get(t, "/v1/events"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("no bus: %d %s, want an empty list", code, body)
	}
	bus := events.NewBus("n1", 10)
	ts.srv.SetEvents(bus)
	bus.Publish(events.Event{Type: events.DCGained, Term: 3, Message: "this node is now the DC"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := ts.client.Events(ctx)
	if err != nil || len(list) != 1 || list[0].Type != events.DCGained || list[0].Term != 3 {
		t.Fatalf("Events: %+v, %v", list, err)
	}
	if _, code := ts.get(t, "/v1/events?follow=maybe"); code != http.StatusBadRequest {
		t.Errorf("follow=maybe: %d, want 400", code)
	}

	got := make(chan events.Event, 10)
	followed := make(chan error, 1)
	go func() {
		followed <- ts.client.FollowEvents(ctx, func(e events.Event) error { got <- e; return nil })
	}()
	if e := <-got; e.Type != events.DCGained {
		t.Fatalf("first followed event %+v, want the recent one", e)
	}
	bus.Publish(events.Event{Type: events.VIPClaimed, VIP: "172.95.69.100", Message: "VIP claimed on eth0"})
	select {
	case e := <-got:
		if e.Type != events.VIPClaimed || e.Seq != 2 {
			t.Errorf("followed %+v, want the new claim", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new event did not reach the follower")
	}
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	start := time.Now()
	if err := ts.srv.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown with a follower: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown waited %s for the follower", d)
	}
	if err := <-followed; err == nil || !strings.Contains(err.Error(), "closed the event stream") {
		t.Errorf("the follower after Shutdown: %v", err)
	}
}
