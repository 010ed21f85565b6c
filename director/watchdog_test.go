package director

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
)

// fakeWatchdog counts what the director does to its watchdog.
type fakeWatchdog struct {
	mu                    sync.Mutex
	opened, fed, disarmed int
	openErr               error
}

func (w *fakeWatchdog) open() (Watchdog, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.openErr != nil {
		return nil, w.openErr
	}
	w.opened++
	return w, nil
}

func (w *fakeWatchdog) Feed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fed++
	return nil
}

func (w *fakeWatchdog) Disarm() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.disarmed++
	return nil
}

func (w *fakeWatchdog) counts() (opened, fed, disarmed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opened, w.fed, w.disarmed
}

// TestWatchdogArmedFedAndDisarmed: a term that takes the VIPs arms the
// watchdog first, feeds it after each verification, and disarms it once
// it has released cleanly; a node that has not verified feeds nothing.
func TestWatchdogArmedFedAndDisarmed(t *testing.T) {
	wd := &fakeWatchdog{}
	lease := quorum.Lease{Duration: 3 * time.Second} // a renewal, and its verification, every second
	w := newWorld(t, func(c *Config) { c.Watchdog = wd.open; c.Lease = lease })
	w.run()
	if o, f, _ := wd.counts(); o != 0 || f != 0 {
		t.Fatalf("a follower armed (%d) or fed (%d) the watchdog", o, f)
	}
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") })
	o, f, d := wd.counts()
	if o != 1 || f == 0 || d != 0 {
		t.Fatalf("after the claim: opened %d, fed %d, disarmed %d; want armed once and fed", o, f, d)
	}
	testkit.WaitFor(t, "a renewal to feed it", func() bool { _, f2, _ := wd.counts(); return f2 > f })
	// From here on every verification fails; the fake counts them, and
	// spec changes drive them (each is one handle, which verifies first).
	from := w.c.setVerifyErr(errNotLeader)
	refused := func(n int) {
		t.Helper()
		w.c.setSpec(squid([]string{"wlc", "rr"}[n%2]))
		testkit.WaitFor(t, fmt.Sprintf("refused verification %d", n), func() bool {
			return w.c.verifications() >= from+n
		})
	}
	refused(1)
	// The term verifies and feeds on its one goroutine: once a
	// verification was refused, whatever the last one that held fed is
	// counted.
	_, f, _ = wd.counts()
	refused(2)
	refused(3)
	if _, f2, _ := wd.counts(); f2 != f {
		t.Errorf("fed %d times during two refused verifications", f2-f)
	}
	w.c.setVerifyErr(nil)
	w.c.leaders <- follower
	testkit.WaitFor(t, "the watchdog disarmed after the release", func() bool { _, _, d := wd.counts(); return d == 1 })
	if w.has("eth0") {
		t.Error("disarmed while the VIP is still on the interface")
	}
}

// TestWatchdogThatCannotBeArmed: a configured watchdog that cannot be
// armed means no claim: the node says it cannot direct and hands over.
func TestWatchdogThatCannotBeArmed(t *testing.T) {
	wd := &fakeWatchdog{openErr: errors.New("open /dev/watchdog: device or resource busy")}
	w := newWorld(t, func(c *Config) { c.Watchdog = wd.open })
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "a hand-over", func() bool { return len(w.c.transferReasons()) > 0 })
	if r := w.c.transferReasons()[0]; !strings.Contains(r, "arming the watchdog") {
		t.Errorf("transfer %q, want the watchdog named", r)
	}
	if w.has("eth0") {
		t.Error("the VIP was claimed without the watchdog armed")
	}
	if can, _ := w.c.CanDirect(); can {
		t.Error("the node still says it can direct")
	}
}
