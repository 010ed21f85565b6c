package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// records keeps what reaches a slog handler.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// atLeast counts the records at level or above whose message is msg.
func (r *records) atLeast(level slog.Level, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level >= level && rec.Message == msg {
			n++
		}
	}
	return n
}

// TestRaftChatterLevels: a peer that is down is reported once, then at
// most once a minute with the count, not on every heartbeat; each peer on
// its own; the newer term a clean hand-over meets is information.
func TestRaftChatterLevels(t *testing.T) {
	rec := &records{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &hclogAdapter{l: slog.New(rec), name: "raft", repeats: newRepeats(func() time.Time { return now })}
	hb := a.Named("replication") // the copies share the counts
	for range 70 {
		hb.Error("failed to heartbeat to", "peer", "127.0.0.2:7947", "error", "connection refused")
		now = now.Add(143 * time.Millisecond) // 7 a second, as a DC logs them
	}
	if n := rec.atLeast(slog.LevelWarn, "failed to heartbeat to"); n != 1 {
		t.Errorf("10 s of a dead peer: %d warnings, want 1", n)
	}
	if n := rec.atLeast(slog.LevelError, "failed to heartbeat to"); n != 0 {
		t.Errorf("a dead peer logged %d errors", n)
	}
	hb.Error("failed to heartbeat to", "peer", "127.0.0.3:7947", "error", "connection refused")
	if n := rec.atLeast(slog.LevelWarn, "failed to heartbeat to"); n != 2 {
		t.Errorf("a second dead peer is not reported on its own (%d warnings)", n)
	}
	now = now.Add(repeatEvery)
	hb.Error("failed to heartbeat to", "peer", "127.0.0.2:7947", "error", "connection refused")
	if n := rec.atLeast(slog.LevelWarn, "failed to heartbeat to"); n != 3 {
		t.Fatalf("a minute later: %d warnings, want the reminder", n)
	}
	last := rec.recs[len(rec.recs)-1]
	var repeated int64
	last.Attrs(func(at slog.Attr) bool {
		if at.Key == "repeated" {
			repeated = at.Value.Int64()
		}
		return true
	})
	if repeated != 69 {
		t.Errorf("the reminder counts %d repeats, want 69", repeated)
	}

	a.Error("peer has newer term, stopping replication", "peer", "n2")
	if rec.atLeast(slog.LevelWarn, "peer has newer term, stopping replication") != 0 || rec.atLeast(slog.LevelInfo, "peer has newer term, stopping replication") != 1 {
		t.Error("a hand-over's newer term is not logged as information")
	}
	a.Error("failed to take snapshot", "error", "disk full")
	if rec.atLeast(slog.LevelError, "failed to take snapshot") != 1 {
		t.Error("a real error lost its level")
	}
}

// TestGossipReportsNodesOnce: a node that goes is reported once, and once
// when it comes back.
func TestGossipReportsNodesOnce(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.waitDC()
	n1 := c.node("n1")
	// The gossip delegate logs a departure or a return under the lock
	// that guards its live members, before it updates them: once n1's
	// view shows the change, the line is written.
	inView := func() bool {
		for _, m := range n1.members() {
			if m.Name == "n3" {
				return true
			}
		}
		return false
	}
	c.waitFor("n1 to see n3", 15*time.Second, inView)
	c.crash("n3")
	c.waitFor("n1 to see n3 gone", 15*time.Second, func() bool { return !inView() })
	if !strings.Contains(c.logs.String(), `msg="node is gone: stopped, failed or cut off (said again when it is back)" component=cluster node=n1 peer=n3`) {
		t.Error("n1 did not report n3 gone")
	}
	c.restart("n3")
	c.waitFor("n1 to see n3 back", 15*time.Second, inView)
	if !strings.Contains(c.logs.String(), `msg="node is back" component=cluster node=n1 peer=n3`) {
		t.Error("n1 did not report n3 back")
	}
	if n := strings.Count(c.logs.String(), `msg="node is gone: stopped, failed or cut off (said again when it is back)" component=cluster node=n1 peer=n3`); n != 1 {
		t.Errorf("n1 reported n3 gone %d times, want once", n)
	}
}
