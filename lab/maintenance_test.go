//go:build lab

package lab_test

import (
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// TestRaftlbStandby: a node put in standby keeps its place in the DC's
// kernel table at weight 0, and no new client connection reaches it; a
// DC put in standby hands the role to another node; unstandby brings the
// node back into the rotation. Judged by the DC's IPVS table and by which
// node answers the client.
func TestRaftlbStandby(t *testing.T) {
	c := newRaftlbCluster(t)
	dc := c.waitHealthy(lab.Nodes())
	var member string
	for _, n := range lab.Nodes() {
		if n != dc {
			member = n
			break
		}
	}
	if out := c.admin(dc, "node", "standby", member); !strings.Contains(out, "is in standby") {
		t.Fatalf("node standby: %s", out)
	}
	c.eventually(member+" at weight 0 in the DC's kernel", 20*time.Second, func() (bool, error) {
		svc, ok, err := c.table(dc)
		d, found := svc.Dest(lab.IP(member) + ":" + port)
		return ok && found && d.Weight == 0, err
	})
	r := c.probe(t, "probe-standby", lab.VIP+":"+port, "--interval", "20ms", "--timeout", "1s", "--duration", "1500ms")
	if r.Answers[member] != 0 || r.Successes < 30 {
		t.Errorf("with %s in standby: answers %v (%d failures), want none from it", member, r.Answers, r.Failures)
	}
	figure("lab_standby_answers_from_standby_node", float64(r.Answers[member]), "count")

	// The DC in standby: the role moves, and the old DC drains.
	c.admin(member, "node", "standby", dc)
	var next string
	c.eventually("a DC that is not in standby", 20*time.Second, func() (bool, error) {
		next = c.waitHealthy(lab.Nodes())
		return next != dc && next != member, nil
	})
	r = c.probe(t, "probe-standby-dc", lab.VIP+":"+port, "--interval", "20ms", "--timeout", "1s", "--duration", "1500ms")
	if r.Answers[dc] != 0 || r.Answers[member] != 0 || r.Answers[next] == 0 {
		t.Errorf("with %s and %s in standby: answers %v, want only %s", dc, member, r.Answers, next)
	}

	c.admin(next, "node", "unstandby", dc)
	c.admin(next, "node", "unstandby", member)
	c.eventually("every node back at weight 1", 20*time.Second, func() (bool, error) {
		svc, ok, err := c.table(next)
		if !ok || err != nil {
			return false, err
		}
		for _, n := range lab.Nodes() {
			if d, found := svc.Dest(lab.IP(n) + ":" + port); !found || d.Weight != 1 {
				return false, nil
			}
		}
		return true, nil
	})
	r = c.probe(t, "probe-unstandby", lab.VIP+":"+port, "--interval", "20ms", "--timeout", "1s", "--duration", "1500ms")
	for _, n := range lab.Nodes() {
		if r.Answers[n] == 0 {
			t.Errorf("after unstandby %s answered none (%v)", n, r.Answers)
		}
	}
}

// admin runs `raftlb CMD VERB --api … ARGS` on n's agent (the verb before
// the flags).
func (c *rcluster) admin(n, cmd, verb string, args ...string) string {
	c.t.Helper()
	return c.l.Run("", append([]string{c.l.Bin("raftlb"), cmd, verb, "--api", "unix://" + c.sock(n)}, args...)...)
}
