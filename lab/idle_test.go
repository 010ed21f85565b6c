//go:build lab

package lab_test

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// labIdle is how long TestRaftlbIdle watches; make bench-lab asks for ten
// minutes, CI for a short look.
var labIdle = flag.Duration("lab.idle", 30*time.Second, "how long TestRaftlbIdle watches an idle cluster for DC changes")

// TestRaftlbIdle: a healthy, idle cluster keeps its DC. The lab's TCG guest
// stalls for about 200 ms now and then; at the lab's timings no stall may
// make a DC step down or a node start an election: every node's event
// stream stays free of dc_gained, dc_lost, dc_changed and quorum_lost for
// the whole watch.
func TestRaftlbIdle(t *testing.T) {
	c := newRaftlbCluster(t)
	dc := c.waitHealthy(lab.Nodes())
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
