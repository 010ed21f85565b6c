package director

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/resources"
	rspec "github.com/raftlb/raftlb/spec"
)

// monitorEvery is the resources' monitor interval in these tests: the
// floor, so that a test of the monitor waits little and the others see
// few monitor calls (calls() leaves them out).
const monitorEvery = rspec.MinResourceMonitorInterval

// resourceWorld is a director with two resources (a, then b): commands
// from a hook directory that log each call ("NAME ACTION") to calls; a
// file fail-NAME-ACTION in dir makes that action fail.
func resourceWorld(t *testing.T) (w *world, dir string, calls func() string) {
	w, dir, calls = resourceWorldStopped(t)
	w.run()
	// At start-up a node stops whatever its last run may have started.
	testkit.WaitFor(t, "the start-up's stops, in reverse", func() bool { return calls() == "b stop, a stop" })
	if err := os.Remove(filepath.Join(dir, "calls")); err != nil {
		t.Fatal(err)
	}
	return w, dir, calls
}

func resourceWorldStopped(t *testing.T) (w *world, dir string, calls func() string) {
	dir = t.TempDir()
	log := filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "hook")
	script := "#!/bin/sh\nd=" + dir + "\necho \"$1 $2\" >> $d/calls\n[ -e $d/fail-$1-$2 ] && exit 1\n[ $2 = monitor ] && [ -e $d/down-$1 ] && exit 7\nexit 0\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	w, _ = fenceWorld(t, rspec.TakeoverFence, func(c *Config) {
		g, err := resources.NewGroup(resources.NewRunner(resources.Config{Node: "m30", HookDirs: []string{dir}}), resources.GroupConfig{Logger: testkit.Discard(), StateFile: filepath.Join(dir, "resources.json")})
		if err != nil {
			t.Fatal(err)
		}
		c.Resources = g
	})
	spec := withTakeover(rspec.TakeoverFence)
	for _, n := range []string{"a", "b"} {
		spec.Resources = append(spec.Resources, rspec.Resource{Name: n, Command: []string{hook, n},
			StartTimeout: 5 * time.Second, StopTimeout: 5 * time.Second, MonitorTimeout: 5 * time.Second, MonitorInterval: monitorEvery})
	}
	w.c.setSpec(spec)
	// m40's claim (fenceWorld) was let go of: nothing to fence.
	w.c.apply(fsm.CmdReleaseVIPs, fsm.ReleaseVIPs{Node: "m40", Term: 1, VIPs: []netip.Addr{vip}, Reason: fsm.ReleaseHandOver, At: time.Now()})
	calls = func() string {
		b, _ := os.ReadFile(log)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.HasSuffix(l, " monitor") {
				out = append(out, l)
			}
		}
		return strings.Join(out, ", ")
	}
	return w, dir, calls
}

// TestResourcesStartAfterTheClaimAndStopInReverse: a new DC starts the
// resources in order once it holds the VIP, and a DC that loses
// leadership lets go of the VIP, then stops them in reverse, and only
// then has a release to report.
func TestResourcesStartAfterTheClaimAndStopInReverse(t *testing.T) {
	w, _, calls := resourceWorld(t)
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the resources started", func() bool {
		st := w.d.Resources()
		return calls() == "a start, b start" && st[1].State == resources.StateStarted
	})
	logs := w.logs.String()
	if c, s := strings.Index(logs, "VIP claimed"), strings.Index(logs, "resource started"); c < 0 || s < c {
		t.Errorf("the VIP claim (at %d) must come before the first start (at %d)", c, s)
	}
	if st := w.d.Resources(); len(st) != 2 || st[0].State != resources.StateStarted {
		t.Errorf("status %+v", st)
	}
	w.c.leaders <- follower
	testkit.WaitFor(t, "the resources stopped", func() bool { return calls() == "a start, b start, b stop, a stop" })
	testkit.WaitFor(t, "the resource events", func() bool {
		return w.sawEvents("vip_claimed 172.95.69.100", "resource_started a", "resource_started b", "resource_stopped b", "resource_stopped a")
	})
	testkit.WaitFor(t, "the VIP released", func() bool { return !w.has("eth0") })
	// The release is reported once the stops are done (here, or already
	// recorded through the fake DC).
	testkit.WaitFor(t, "the release to report", func() bool {
		if rel := w.d.released.take(); rel != nil {
			w.d.released.set(*rel)
			return rel.Reason == fsm.ReleaseQuorumLost
		}
		h := w.holder()
		return h.Node == "m30" && h.Released
	})
}

// startedResources is a resource world whose node became DC and started
// a and b; the stop of failStop ("": none) will fail.
func startedResources(t *testing.T, failStop string) (*world, func() string) {
	t.Helper()
	w, dir, calls := resourceWorld(t)
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the resources started", func() bool { return calls() == "a start, b start" })
	if failStop != "" {
		if err := os.WriteFile(filepath.Join(dir, "fail-"+failStop+"-stop"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w, calls
}

// TestHandOverStopsTheResourcesBeforeTheRelease: a hand-over records the
// release only after every resource stopped; when a stop fails it
// records none, so the successor fences this node.
func TestHandOverStopsTheResourcesBeforeTheRelease(t *testing.T) {
	for _, stopFails := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean", true: "stop fails"}[stopFails], func(t *testing.T) {
			w, calls := startedResources(t, map[bool]string{true: "a"}[stopFails])
			w.c.setHandingOver(true)
			if got := calls(); got != "a start, b start, b stop, a stop" {
				t.Errorf("calls when the release is recorded: %q", got)
			}
			h := w.holder()
			if h.Released == stopFails {
				t.Errorf("holder %+v: released %v, want %v", h, h.Released, !stopFails)
			}
			if stopFails && !strings.Contains(w.logs.String(), "successor fences this node") {
				t.Error("a stop failure on hand-over is not logged as such")
			}
		})
	}
}

// TestResourceStartFailureHandsTheDCOver: a start that fails stops what
// was started, in reverse; the node says it cannot direct and asks for
// the DC role to move, keeping the VIP meanwhile.
func TestResourceStartFailureHandsTheDCOver(t *testing.T) {
	w, dir, calls := resourceWorld(t)
	if err := os.WriteFile(filepath.Join(dir, "fail-b-start"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the DC role asked to move", func() bool { return w.c.movesAsked() == 1 })
	if got := calls(); got != "a start, b start, b stop, a stop" {
		t.Errorf("calls %q", got)
	}
	if ok, why := w.c.CanDirect(); ok || !strings.Contains(why, "resource b") {
		t.Errorf("CanDirect %v %q, want a no naming resource b", ok, why)
	}
	if !w.has("eth0") {
		t.Error("the VIP left before the move: the balanced service does not depend on the resources")
	}
}

// TestResourceStopFailureIsNoRelease: a DC that lost leadership and could
// not stop a resource has no release to report (the next DC fences it),
// and shows the resource as stop-failed.
func TestResourceStopFailureIsNoRelease(t *testing.T) {
	w, calls := startedResources(t, "b")
	w.c.leaders <- follower
	testkit.WaitFor(t, "the resources stopped", func() bool { return strings.HasSuffix(calls(), "b stop, a stop") })
	testkit.WaitFor(t, "the VIP released", func() bool { return !w.has("eth0") })
	testkit.WaitFor(t, "the term to end", func() bool { return w.d.current.Load() == nil })
	if rel := w.d.released.take(); rel != nil || w.holder().Released {
		t.Errorf("a node whose stop failed reports a release %+v", rel)
	}
	if st := w.d.Resources(); st[1].State != resources.StateStopFailed {
		t.Errorf("b: %+v", st[1])
	}
}

// TestFailedHandOverStartsTheResourcesAgain: a hand-over that fails
// leaves this node DC: it starts the resources the hand-over stopped —
// unless a stop failed, which makes it give up leadership without a
// release instead.
func TestFailedHandOverStartsTheResourcesAgain(t *testing.T) {
	for _, stopFails := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean", true: "stop fails"}[stopFails], func(t *testing.T) {
			w, calls := startedResources(t, map[bool]string{true: "b"}[stopFails])
			w.c.setHandingOver(true)
			w.c.setHandingOver(false)
			if !stopFails {
				testkit.WaitFor(t, "the resources started again", func() bool { return calls() == "a start, b start, b stop, a stop, a start, b start" })
				return
			}
			testkit.WaitFor(t, "leadership given up without a release", func() bool {
				r := w.c.transferReasons()
				return len(r) > 0 && strings.Contains(r[len(r)-1], "stop failed")
			})
			if strings.Count(calls(), "start") != 2 {
				t.Errorf("a node whose stop failed started resources again: %s", calls())
			}
		})
	}
}

// TestMonitorFailureRestartsTheResources: a resource found stopped
// behind raftlb's back restarts the list: stopped in reverse, started in
// order, on this node.
func TestMonitorFailureRestartsTheResources(t *testing.T) {
	w, dir, calls := resourceWorld(t)
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the resources started", func() bool { return calls() == "a start, b start" })
	if err := os.WriteFile(filepath.Join(dir, "down-a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the restart", func() bool { return strings.HasPrefix(calls(), "a start, b start, b stop, a stop, a start, b start") })
	os.Remove(filepath.Join(dir, "down-a"))
	if st := w.d.Resources(); st[0].Failures == 0 || !strings.Contains(st[0].LastError, "not running") {
		t.Errorf("a's status after its monitor failed: %+v", st[0])
	}
	if w.c.movesAsked() != 0 {
		t.Error("a monitor failure whose restart succeeded moved the DC role")
	}
}
