package events

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestNotifyScriptGetsEveryEventInOrder: a failover's events reach the
// script one run each, in order, with their fields in the environment.
func TestNotifyScriptGetsEveryEventInOrder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "seen")
	s := script(t, `echo "$RAFTLB_SEQ $RAFTLB_EVENT $RAFTLB_NODE vip=$RAFTLB_VIP term=$RAFTLB_TERM server=$RAFTLB_SERVER err=$RAFTLB_ERROR" >> "$1"`+"\n")
	b := NewBus("n2", 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); RunScript(ctx, b, Script{Argv: []string{s, out}}, testkit.Discard()) }()
	testkit.WaitFor(t, "the script subscribed", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 })
	b.Publish(Event{Type: QuorumLost, Message: "quorum lost"})
	b.Publish(Event{Type: DCGained, Term: 7, Message: "this node is now the DC"})
	b.Publish(Event{Type: VIPClaimed, Term: 7, VIP: "172.95.69.100", Message: "VIP claimed"})
	b.Publish(Event{Type: ServerDown, Term: 7, Server: "172.95.69.30:80", Error: "connect: connection refused", Message: "real server down"})
	want := []string{
		"1 quorum_lost n2 vip= term= server= err=",
		"2 dc_gained n2 vip= term=7 server= err=",
		"3 vip_claimed n2 vip=172.95.69.100 term=7 server= err=",
		"4 server_down n2 vip= term=7 server=172.95.69.30:80 err=connect: connection refused",
	}
	testkit.WaitFor(t, "four runs of the script", func() bool {
		data, _ := os.ReadFile(out)
		return strings.Count(string(data), "\n") == len(want)
	})
	data, _ := os.ReadFile(out)
	if got := strings.Split(strings.TrimSpace(string(data)), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the script saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cancel()
	<-done
}

// TestNotifyScriptThatHangsIsKilledAndTheRestGoesOn: a script past its
// timeout loses its whole process group, says so in the log, and the next
// event runs; a full queue drops events, counted and logged, and never
// holds up the publisher.
func TestNotifyScriptThatHangsIsKilledAndTheRestGoesOn(t *testing.T) {
	out := filepath.Join(t.TempDir(), "seen")
	s := script(t, `echo "$RAFTLB_SEQ" >> "$1"; [ "$RAFTLB_EVENT" = dc_gained ] && sleep 300`+"\n")
	var log syncBuf
	logger := slog.New(slog.NewTextHandler(&log, nil))
	b := NewBus("n1", 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go RunScript(ctx, b, Script{Argv: []string{s, out}, Timeout: 300 * time.Millisecond, Queue: 2}, logger)
	testkit.WaitFor(t, "the script subscribed", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 })
	start := time.Now()
	b.Publish(Event{Type: DCGained})
	testkit.WaitFor(t, "the hanging run started", func() bool { data, _ := os.ReadFile(out); return len(data) > 0 })
	for range 5 {
		b.Publish(Event{Type: ServerUp})
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("publishing waited %s for the script", d)
	}
	testkit.WaitFor(t, "the queued events run", func() bool {
		data, _ := os.ReadFile(out)
		return strings.TrimSpace(string(data)) == "1\n2\n3"
	})
	// One goroutine runs the script: the kill of the first run and the
	// drop were logged before the second run began.
	if l := log.String(); !strings.Contains(l, "notify script did not finish within 300ms; its process group was killed") ||
		!strings.Contains(l, "notify script falls behind: events dropped") || !strings.Contains(l, "dropped=3") {
		t.Errorf("the kill or the drop is not logged:\n%s", l)
	}
}
