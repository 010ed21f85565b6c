//go:build lab

package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// VIPs back and stopped). Armed and disarmed are read from the kernel:
// softdog's sysfs state and timeout, and whether m30's agent holds its
// device open.
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
	// Armed, as the kernel shows it: softdog active with the timeout m30
	// asked for, its device held open by m30's agent.
	c.eventually("m30 to arm its watchdog", 10*time.Second, func() (bool, error) {
		sd, err := readSoftdog(c.agents[lab.M30].Pid())
		return sd.active && sd.timeout == timeout && sd.heldByAgent, err
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

	// m30 is no DC now: it released and disarmed (the magic close stops
	// softdog, and the agent no longer holds its device), so nothing fires
	// even though nothing feeds it.
	var sd softdog
	if err := lab.Eventually(10*time.Second, func() (bool, error) {
		var err error
		sd, err = readSoftdog(c.agents[lab.M30].Pid())
		return !sd.active && !sd.heldByAgent, err
	}); err != nil {
		t.Errorf("m30 did not disarm its watchdog after it released the VIPs: %+v (%v)", sd, err)
	}
	after := c.dmesgCount(softdogFired)
	time.Sleep(2 * timeout) // as above: a disarmed softdog has nothing to say
	if n := c.dmesgCount(softdogFired); n != after {
		t.Errorf("the watchdog fired %d times after a clean release", n-after)
	}
}

// softdogIdentity is the identity softdog registers (drivers/watchdog/
// softdog.c), which its sysfs class directory shows.
const softdogIdentity = "Software Watchdog"

// softdog is the lab kernel's softdog as the kernel shows it: its sysfs
// class attributes (Documentation/ABI/testing/sysfs-class-watchdog; the
// lab's Debian kernel has CONFIG_WATCHDOG_SYSFS) and whether a process
// holds its device open.
type softdog struct {
	dir string
	// active is the state attribute: "active" from the device's open
	// until the magic close stops it.
	active bool
	// timeout is the timeout attribute: what WDIOC_SETTIMEOUT set.
	timeout time.Duration
	// heldByAgent: the process has softdog's device open, as /proc/PID/fd
	// shows: its own watchdogN, or, when it is watchdog0, the legacy
	// /dev/watchdog (misc), which is the same device.
	heldByAgent bool
}

// readSoftdog reads softdog's state and whether the process pid holds it.
func readSoftdog(pid int) (softdog, error) {
	dirs, err := filepath.Glob("/sys/class/watchdog/watchdog*")
	if err != nil {
		return softdog{}, err
	}
	var sd softdog
	for _, d := range dirs {
		if id, err := os.ReadFile(filepath.Join(d, "identity")); err == nil && strings.TrimSpace(string(id)) == softdogIdentity {
			sd.dir = d
			break
		}
	}
	if sd.dir == "" {
		return softdog{}, fmt.Errorf("no %q among %v", softdogIdentity, dirs)
	}
	state, err := os.ReadFile(filepath.Join(sd.dir, "state"))
	if err != nil {
		return softdog{}, err
	}
	sd.active = strings.TrimSpace(string(state)) == "active"
	secs, err := os.ReadFile(filepath.Join(sd.dir, "timeout"))
	if err != nil {
		return softdog{}, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(secs)))
	if err != nil {
		return softdog{}, fmt.Errorf("%s/timeout: %w", sd.dir, err)
	}
	sd.timeout = time.Duration(n) * time.Second
	// The device numbers that reach softdog, as the kernel lists them.
	devs := []string{filepath.Join(sd.dir, "dev")}
	if filepath.Base(sd.dir) == "watchdog0" {
		devs = append(devs, "/sys/class/misc/watchdog/dev")
	}
	var nums []string
	for _, f := range devs {
		b, err := os.ReadFile(f)
		if err != nil {
			return softdog{}, err
		}
		nums = append(nums, strings.TrimSpace(string(b)))
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return softdog{}, err
	}
	for _, fd := range fds {
		// By the device the fd reaches, not by its path: the agent runs in
		// a mount namespace of its own (ip netns exec), where the path
		// the kernel prints for it need not be /dev/watchdog. An fd closed
		// since the directory was read is simply not held.
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			continue
		}
		rdev := uint64(fi.Sys().(*syscall.Stat_t).Rdev)
		if slices.Contains(nums, fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))) {
			sd.heldByAgent = true
		}
	}
	return sd, nil
}

// dmesgCount counts the kernel log lines that contain s.
func (c *rcluster) dmesgCount(s string) int {
	c.t.Helper()
	return strings.Count(c.l.Run("", "dmesg"), s)
}
