//go:build lab

package lab_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// softdogFired is what softdog with soft_noboot=1 logs when its timeout
// ends unfed (drivers/watchdog/softdog.c).
const softdogFired = "softdog: Triggered - Reboot ignored"

// TestRaftlbWatchdog: m30 runs with --watchdog (the lab's softdog, which
// logs instead of rebooting; the VM has one, so only m30 gets it). While
// m30 is a healthy DC for several timeouts, the watchdog never fires; when
// its agent is frozen (SIGSTOP) past the timeout, the kernel log says it
// fired; a clean release disarms it (no firing after the agent gave the
// VIPs back and stopped).
func TestRaftlbWatchdog(t *testing.T) {
	const timeout = 3 * time.Second
	c := newRaftlbClusterWith(t, map[string][]string{lab.M30: {"--watchdog", "/dev/watchdog", "--watchdog-timeout", timeout.String()}})
	dc := c.waitHealthy(lab.Nodes())
	// Make m30 the DC: stop the others' DC in turn (a graceful stop hands
	// over to one of the rest).
	for try := 0; dc != lab.M30; try++ {
		if try == 6 {
			t.Fatalf("m30 never became DC (last DC %s)", dc)
		}
		if err := c.agents[dc].Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		c.startAgent(dc)
		dc = c.waitHealthy(lab.Nodes())
	}
	c.eventually("m30 to arm its watchdog", 10*time.Second, func() (bool, error) {
		out, err := c.agents[lab.M30].Output()
		return strings.Contains(out, "watchdog armed"), err
	})

	// Healthy: several timeouts pass, the watchdog never fires. The time is
	// what is tested: softdog says nothing when it is fed in time, so no
	// event marks a timeout that passed without firing.
	before := c.dmesgCount(softdogFired)
	time.Sleep(4 * timeout)
	if n := c.dmesgCount(softdogFired); n != before {
		t.Fatalf("a healthy DC's watchdog fired %d times", n-before)
	}

	// Frozen past the timeout: it fires.
	c.signal(lab.M30, syscall.SIGSTOP)
	t0 := time.Now()
	c.eventually("the frozen DC's watchdog to fire", 4*timeout, func() (bool, error) {
		return c.dmesgCount(softdogFired) > before, nil
	})
	fired := time.Since(t0)
	c.signal(lab.M30, syscall.SIGCONT)
	figure("lab_watchdog_frozen_dc_fired_after", ms(fired), "ms")
	c.waitHealthy(lab.Nodes())

	// m30 is no DC now: it released and disarmed, so nothing fires even
	// though nothing feeds it.
	if out, _ := c.agents[lab.M30].Output(); !strings.Contains(out, "watchdog disarmed") {
		t.Errorf("m30 did not disarm its watchdog after it released the VIPs")
	}
	after := c.dmesgCount(softdogFired)
	time.Sleep(2 * timeout) // as above: a disarmed softdog has nothing to say
	if n := c.dmesgCount(softdogFired); n != after {
		t.Errorf("the watchdog fired %d times after a clean release", n-after)
	}
}

// dmesgCount counts the kernel log lines that contain s.
func (c *rcluster) dmesgCount(s string) int {
	c.t.Helper()
	return strings.Count(c.l.Run("", "dmesg"), s)
}
