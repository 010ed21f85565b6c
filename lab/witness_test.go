//go:build lab

package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// TestRaftlbTwoNodesAndAWitness is the two-node recipe: m30 and m40 carry
// the service, m50 runs `raftlb agent --witness` (a voter that never
// directs, no data plane, no real server). Each data-plane node's cable is
// pulled in turn, twice: the other holds the VIP and serves, never two
// MACs answer. Whenever the witness was elected it handed leadership to a
// data-plane node within its term; status shows it as the witness.
func TestRaftlbTwoNodesAndAWitness(t *testing.T) {
	c := newRaftlbClusterWith(t, map[string][]string{lab.M50: {"--witness"}})
	if st := c.cli(lab.M30, "status"); !strings.Contains(st, "witness (never directs)") {
		t.Errorf("status does not show the witness:\n%s", st)
	}
	var outage []float64
	data := []string{lab.M30, lab.M40}
	for run := 1; run <= 2*len(data); run++ {
		dc := c.waitHealthy(lab.Nodes())
		if dc == lab.M50 {
			t.Fatalf("run %d: the witness is DC with the cluster healthy", run)
		}
		other := map[string]string{lab.M30: lab.M40, lab.M40: lab.M30}[dc]
		hw, aw := c.judges(fmt.Sprintf("arp-witness-%d", run))
		probe := c.startProbe(fmt.Sprintf("probe-witness-%d", run), dc)
		t0 := time.Now()
		if err := c.l.CablePull(dc); err != nil {
			t.Fatal(err)
		}
		_, t1 := c.waitVIPOnInterface([]string{other}, 30*time.Second)
		time.Sleep(time.Second) // the client settles on the new DC
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		spans, wire := c.verdicts(hw, aw)
		if wire.TwoMACRounds != 0 || overlaps(spans) != 0 {
			t.Errorf("run %d: two MACs answered %d rounds, two kernels held the VIP %s", run, wire.TwoMACRounds, overlaps(spans))
		}
		t.Logf("run %d: %s pulled; %s holds the VIP after %s; client outage %.0f ms (%d of %d failed)", run, dc, other, t1.Sub(t0), r.LongestOutageMS, r.Failures, r.Attempts)
		outage = append(outage, r.LongestOutageMS)
		if err := c.l.CablePlug(dc); err != nil {
			t.Fatal(err)
		}
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_witness_cable_pull_outage", outage, "ms")

	// The witness's terms, from its log: each ends in a hand-over.
	terms, handed := c.witnessTerms(lab.M50)
	for term := range terms {
		if !handed[term] {
			t.Errorf("the witness led term %s without handing leadership over", term)
		}
	}
	figure("lab_witness_terms_led", float64(len(terms)), "count")
}

var (
	logTermField = regexp.MustCompile(` term=(\d+)`)
	handOffLine  = regexp.MustCompile(`msg="(this node cannot direct: handing leadership to one that can|transferring leadership to a node that can direct)"`)
)

// witnessTerms reads n's agent logs: the terms in which it became DC, and
// those in which it handed leadership over.
func (c *rcluster) witnessTerms(n string) (led, handed map[string]bool) {
	c.t.Helper()
	led, handed = map[string]bool{}, map[string]bool{}
	for i := 1; i <= c.starts[n]; i++ {
		data, err := os.ReadFile(filepath.Join(c.l.LogDir(), fmt.Sprintf("agent-%s-%d.log", n, i)))
		if err != nil {
			c.t.Fatal(err)
		}
		current := ""
		for _, line := range strings.Split(string(data), "\n") {
			m := logTermField.FindStringSubmatch(line)
			switch {
			case becameDC.MatchString(line) && m != nil:
				current = m[1]
				led[current] = true
			case handOffLine.MatchString(line) && current != "":
				handed[current] = true
			}
		}
	}
	return led, handed
}
