package cluster

import (
	"context"
	"testing"
	"time"
)

// TestContactTracker: a leader still followed was heard from now; one left
// behind, at the last contact when this node stopped following it, never
// before the node's start; one never followed, at the start.
func TestContactTracker(t *testing.T) {
	c := newContactTracker()
	start := c.started
	now := start.Add(time.Hour)
	c.observe("n1", time.Time{})
	if got := c.lastContactWith("n1", now); !got.Equal(now) {
		t.Errorf("a followed leader: %v, want now", got)
	}
	before := time.Now()
	c.observe("", start.Add(time.Minute))
	if got := c.lastContactWith("n1", now); !got.Equal(start.Add(time.Minute)) {
		t.Errorf("a leader left behind: %v, want the last contact when it was left", got)
	}
	if l := c.lastLost(); l.Leader != "n1" || !l.LastContact.Equal(start.Add(time.Minute)) || l.At.Before(before) {
		t.Errorf("the leader lost: %+v, want n1 with its last contact, left after %v", l, before)
	}
	c.observe("n2", start.Add(2*time.Minute))
	c.observe("n1", start.Add(3*time.Minute))
	if got := c.lastContactWith("n1", now); !got.Equal(now) {
		t.Errorf("a leader followed again: %v, want now", got)
	}
	c.observe("n2", time.Time{})
	if got := c.lastContactWith("n1", now); !got.Equal(start) {
		t.Errorf("a leader left with no contact known: %v, want the start", got)
	}
	if got := c.lastContactWith("n9", now); !got.Equal(start) {
		t.Errorf("a leader never followed: %v, want the start", got)
	}
}

// TestContactBoundAfterTheDCIsCutOff: the DC verifies its leadership, then
// is cut off; the new DC's bound of the old one's last verification is no
// earlier than that verification's sending, and earlier than its own
// election (the followers stopped hearing from the old DC at the cut).
// While the old DC was followed, the bound is now.
func TestContactBoundAfterTheDCIsCutOff(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	followers := c.followers(dc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	asked := time.Now()
	if bound, ok := followers[0].ContactBound(ctx, dc.Name()); !ok || bound.Before(asked) {
		t.Fatalf("while the DC is followed: bound %v (ok %v), want no earlier than the question (%v)", bound, ok, asked)
	}
	sent := time.Now()
	if err := dc.VerifyLeader(dc.raft.CurrentTerm()); err != nil {
		t.Fatal(err)
	}
	c.partition(dc.Name())
	next := c.waitDC(followers...)
	elected := time.Now()
	bound, ok := next.ContactBound(ctx, dc.Name())
	if !ok {
		t.Fatal("no bound from a majority of the other voters")
	}
	if bound.Before(sent) {
		t.Fatalf("the bound %v is before the old DC's last verification was sent (%v): unsafe", bound, sent)
	}
	if !bound.Before(elected) {
		t.Errorf("the bound %v is no earlier than the new DC's election (%v): it gains nothing", bound, elected)
	}
	c.heal()
}
