package cluster

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
)

// configurationChanges counts the configuration entries in nd's Raft log
// after index from.
func configurationChanges(t *testing.T, nd *Node, from uint64) int {
	t.Helper()
	last, err := nd.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	changes := 0
	for i := from + 1; i <= last; i++ {
		var l raft.Log
		if err := nd.store.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		if l.Type == raft.LogConfiguration {
			changes++
		}
	}
	return changes
}

// TestAdmittedVoterIsNotAddedAgain: one membership step that admits a
// node as a voter changes the Raft configuration once; the promotion of
// non-voters does not take the new voter for a non-voter and add it again.
func TestAdmittedVoterIsNotAddedAgain(t *testing.T) {
	c := newTestCluster(t, 0, nil)
	dc := c.startIdle(c.config(1, 1))
	c.waitFor("n1 leads alone", 15*time.Second, dc.IsLeader)
	if err := dc.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.startIdle(c.config(2, 3)) // expects 3: never bootstraps on its own
	c.join("n2", "n1")
	c.waitFor("n2 live in the DC's gossip", 10*time.Second, func() bool {
		for _, m := range dc.members() {
			if m.Name == "n2" && m.MetaErr == nil && m.State == memberlist.StateAlive {
				return true
			}
		}
		return false
	})
	from := dc.raft.LastIndex()
	dc.ReconcileMembers(context.Background())
	if got := raftServers(dc)["n2"]; got != raft.Voter {
		t.Fatalf("n2 is %v in Raft, want a voter", got)
	}
	if n := configurationChanges(t, dc, from); n != 1 {
		t.Errorf("admitting one voter changed the Raft configuration %d times, want once", n)
	}
}

// TestMembershipStepHoldsNoLockAcrossPings: a step pinging a new member
// whose Raft port does not answer (up to the RPC timeout) holds up no
// other step: one whose context has ended returns while the first still
// waits.
func TestMembershipStepHoldsNoLockAcrossPings(t *testing.T) {
	c := newTestCluster(t, 0, nil)
	dc := c.startIdle(c.config(1, 1))
	c.waitFor("n1 leads alone", 15*time.Second, dc.IsLeader)
	if err := dc.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A member whose Raft port accepts and then says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dc.gossip.mu.Lock()
	dc.gossip.live["mute"] = member{
		Name: "mute", Addr: netip.MustParseAddr("127.0.0.1"), State: memberlist.StateAlive,
		Meta:     nodeMeta{Version: metaVersion, RaftAddr: ln.Addr().String(), Schema: fsm.Schema},
		RaftAddr: ln.Addr().String(),
	}
	dc.gossip.mu.Unlock()

	first := make(chan struct{})
	go func() {
		defer close(first)
		dc.ReconcileMembers(context.Background())
	}()
	var held net.Conn
	select {
	case held = <-accepted:
		defer held.Close()
	case <-first:
		t.Fatal("the first step did not ping the new member")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	second := make(chan struct{})
	go func() {
		defer close(second)
		dc.ReconcileMembers(ended)
	}()
	select {
	case <-second:
	case <-first:
		<-second
		t.Fatal("a step whose context had ended waited for another step's ping")
	}
	held.Close()
	<-first
}
