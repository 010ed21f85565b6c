package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

// TestSystemdLifecycle: a real agent started as systemd starts a
// Type=notify service (NOTIFY_SOCKET names a unix datagram socket) says
// READY=1 once it serves and knows a DC, and STOPPING=1 when SIGTERM
// begins its stop, before it exits cleanly.
func TestSystemdLifecycle(t *testing.T) {
	msgs := testkit.NotifySocket(t) // the agents inherit NOTIFY_SOCKET
	// until reads messages until one starts with prefix and returns it.
	until := func(prefix string) string {
		t.Helper()
		timeout := time.After(formTimeout)
		var seen []string
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, prefix) {
					return m
				}
				seen = append(seen, m)
			case <-timeout:
				t.Fatalf("no %s from the agent; it said %q", prefix, seen)
			}
		}
	}
	c := startClusterWith(t, blockSystemd, 1, "fake")
	a := c.agents[0]
	if m := until("READY=1"); !strings.Contains(m, "STATUS=DC") {
		t.Errorf("READY=1 without the node's role: %q", m)
	}
	c.signal(a, syscall.SIGTERM)
	if m := until("STOPPING=1"); !strings.Contains(m, "STATUS=stopping") {
		t.Errorf("STOPPING=1 without a status: %q", m)
	}
	if code := c.waitExit(a); code != 0 {
		t.Errorf("the agent exited %d after SIGTERM, want 0", code)
	}
}
