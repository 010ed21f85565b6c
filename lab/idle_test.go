//go:build lab

package lab_test

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// labIdle is how long TestRaftlbIdle watches; make bench-lab asks for ten
// minutes, CI for a short look.
var labIdle = flag.Duration("lab.idle", 30*time.Second, "how long TestRaftlbIdle watches an idle cluster for DC changes")

// labHog keeps every CPU of the VM busy during TestRaftlbIdle: one busy
// loop per CPU, at the agents' own priority.
var labHog = flag.Bool("lab.hog", false, "TestRaftlbIdle: keep every CPU of the VM busy while it watches")

// TestRaftlbIdle: a healthy, idle cluster keeps its DC. The lab's TCG guest
// stalls for about 200 ms now and then; at the lab's timings no stall may
// make a DC step down or a node start an election: every node's event
// stream stays free of dc_gained, dc_lost, dc_changed and quorum_lost for
// the whole watch.
//
// With -lab.hog every CPU of the VM is kept busy meanwhile (a busy loop per
// CPU in the VM's root namespace, at the agents' priority): the same must
// hold on a host busy with other work.
func TestRaftlbIdle(t *testing.T) {
	c := newRaftlbCluster(t)
	dc := c.waitHealthy(lab.Nodes())
	hogs := 0
	if *labHog {
		for i := range runtime.NumCPU() {
			p, err := c.l.Start("", fmt.Sprintf("hog-%d", i), "sh", "-c", "while :; do :; done")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			hogs++
		}
	}
	figure("lab_idle_hog_cpus", float64(hogs), "count")
	seen := map[string]uint64{}
	for _, n := range lab.Nodes() {
		evs, err := c.events(n)
		if err != nil {
			t.Fatal(err)
		}
		seen[n] = lastSeq(evs)
	}
	start := time.Now()
	var changes []string
	// Nothing to wait for but the clock: the watch reads the event
	// streams every 10 s (each keeps its last 200), and a change would be
	// in them.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		<-tick.C
		done = time.Since(start) >= *labIdle
		for _, n := range lab.Nodes() {
			evs, err := c.events(n)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Seq <= seen[n] {
					continue
				}
				switch e.Type {
				case "dc_gained", "dc_lost", "dc_changed", "quorum_lost":
					changes = append(changes, fmt.Sprintf("%s %s on %s", e.Time.UTC().Format("15:04:05.000"), e.Type, n))
				}
			}
			seen[n] = lastSeq(evs)
		}
	}
	watched := time.Since(start)
	figure("lab_idle_watched", watched.Seconds(), "s")
	figure("lab_idle_dc_events", float64(len(changes)), "count")
	if len(changes) > 0 {
		t.Errorf("an idle cluster (DC %s) changed its DC or lost quorum in %s:\n%s", dc, watched.Round(time.Second), strings.Join(changes, "\n"))
	}
}
