package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestFailedLeaveLeavesTheNodeWhole reproduces the half-gone leave: with
// two of three nodes down, leave on the survivor fails. It must then stay
// a whole member: still in gossip, not marked leaving, and once the others
// come back every node (and a node that joins later) sees it online, in
// Raft, and a real member.
func TestFailedLeaveLeavesTheNodeWhole(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.waitDC()
	c.crash("n2")
	c.crash("n3")
	n1 := c.node("n1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := n1.Leave(ctx)
	if err == nil || !strings.Contains(err.Error(), "this node is still a member of the cluster") {
		t.Fatalf("leave without quorum: %v, want an error that says the node stays", err)
	}
	n1.gossip.mu.Lock()
	leaving := n1.gossip.meta.Leaving
	n1.gossip.mu.Unlock()
	if leaving {
		t.Error("after a failed leave the node still says in gossip that it is leaving")
	}
	if st := n1.ml.LocalNode().State; st != memberlist.StateAlive {
		t.Fatalf("after a failed leave the node's gossip state is %v: it left gossip", st)
	}

	c.restart("n2")
	c.restart("n3")
	dc := c.waitDC()
	c.start(c.config(4, 3))
	c.join("n4", dc.Name())
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		nd := c.node(name)
		c.waitFor(name+" to see n1 online and in the cluster", 20*time.Second, func() bool {
			for _, v := range nd.View().Nodes {
				if v.Name == "n1" {
					return v.Status == "online" && (v.Role == "member" || v.Role == "DC")
				}
			}
			return false
		})
	}
	if _, in := raftServers(dc)["n1"]; !in {
		t.Error("n1 is not in Raft after its failed leave")
	}
}

// TestLeaveWithQuorumRemovesTheNode: the successful leave still removes
// the node for good: out of Raft and the registry, not admitted again.
func TestLeaveWithQuorumRemovesTheNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	leaver := c.followers(dc)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the leaver out of Raft and the registry", 10*time.Second, func() bool {
		_, inRaft := raftServers(dc)[leaver.Name()]
		_, registered := dc.FSM().State().Nodes[leaver.Name()]
		return !inRaft && !registered
	})
	// More rounds of the membership step, whatever gossip still lists:
	// nothing brings it back.
	for range 3 {
		dc.ReconcileMembers(ctx)
	}
	if _, in := raftServers(dc)[leaver.Name()]; in {
		t.Error("the node that left was admitted again")
	}
}

// TestLeavingNodeIsNotAdmitted: a DC that did not handle the leave (it was
// elected meanwhile) learns from gossip that a node is on its way out, and
// does not admit it; once the node says it stays, it is admitted.
func TestLeavingNodeIsNotAdmitted(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	n4 := c.start(c.config(4, 3))
	n4.setLeaving(true)
	c.join("n4", dc.Name())
	c.waitFor("n4 in gossip on the DC", 10*time.Second, func() bool {
		for _, m := range dc.members() {
			if m.Name == "n4" && m.Meta.Leaving {
				return true
			}
		}
		return false
	})
	dc.ReconcileMembers(context.Background())
	if _, in := raftServers(dc)["n4"]; in {
		t.Fatal("a node that says it is leaving was admitted")
	}
	n4.setLeaving(false)
	c.waitFor("n4 admitted once it stays", 10*time.Second, func() bool {
		_, in := raftServers(dc)["n4"]
		return in
	})
}
