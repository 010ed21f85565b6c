package director

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/testkit"
)

// phaseMetrics records the takeover phases the director reports.
type phaseMetrics struct {
	mu     sync.Mutex
	phases []string
	total  time.Duration
}

func (m *phaseMetrics) Reconciled(time.Duration)         {}
func (m *phaseMetrics) Probed(health.Key, time.Duration) {}
func (m *phaseMetrics) TakeoverPhase(p string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phases = append(m.phases, p)
	m.total += d
}

func (m *phaseMetrics) got() ([]string, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.phases), m.total
}

// TestTakeoverPhases: a term reports, once, each phase of its way from the
// old DC's last contact to its first announcement, in order, and they add
// up to the whole; later announcements report nothing more.
func TestTakeoverPhases(t *testing.T) {
	m := &phaseMetrics{}
	w := newWorld(t, func(c *Config) { c.Metrics = m; c.GARPCount = 2 })
	now := time.Now()
	w.c.fakeLeader.mu.Lock()
	w.c.lost = cluster.LeaderLost{Leader: "m40", LastContact: now.Add(-700 * time.Millisecond), At: now.Add(-200 * time.Millisecond)}
	w.c.fakeLeader.mu.Unlock()
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the burst sent", func() bool { return len(w.arp.Sent()) == 2 })
	want := []string{"detection", "election", "barrier", "takeover", "verify", "ipvs", "commit", "place", "announce"}
	phases, total := m.got()
	if !slices.Equal(phases, want) {
		t.Fatalf("phases reported %v, want %v once each", phases, want)
	}
	if total < 700*time.Millisecond || total > time.Minute {
		t.Errorf("the phases add up to %s, want at least the 700 ms since the old DC's last contact", total)
	}
	if n := strings.Count(w.logs.String(), "takeover phases"); n != 1 {
		t.Errorf("the phases logged %d times, want once", n)
	}
}

// TestTakeoverPhasesWithoutAnOldDC: a node that followed no leader before
// its election (a first election) reports from its election on.
func TestTakeoverPhasesWithoutAnOldDC(t *testing.T) {
	m := &phaseMetrics{}
	w := newWorld(t, func(c *Config) { c.Metrics = m })
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the first announcement", func() bool { return len(w.arp.Sent()) > 0 })
	testkit.WaitFor(t, "the phases reported", func() bool { p, _ := m.got(); return len(p) > 0 })
	if phases, _ := m.got(); slices.Contains(phases, "detection") || slices.Contains(phases, "election") || phases[0] != "barrier" {
		t.Errorf("phases %v, want them from the barrier on", phases)
	}
}
