package cluster

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// TestLeadershipPublishesEveryNewTerm: two leader events in a row with
// different terms mean leadership was lost and regained; the second must
// reach subscribers, or a DC would carry its old term's verification into
// the new one. A repeat of the same state is not an event.
func TestLeadershipPublishesEveryNewTerm(t *testing.T) {
	l := newLeadership()
	ch, cancel := l.subscribe()
	defer cancel()
	<-ch // the current state
	for _, step := range []struct {
		ev      LeaderEvent
		publish bool
	}{
		{LeaderEvent{IsLeader: true, Term: 2}, true},
		{LeaderEvent{IsLeader: true, Term: 2}, false},
		{LeaderEvent{IsLeader: true, Term: 3}, true}, // lost and regained
		{LeaderEvent{IsLeader: false, Term: 4}, true},
		{LeaderEvent{IsLeader: false, Term: 5}, false}, // a follower's term is not news
		{LeaderEvent{IsLeader: true, Term: 6}, true},
	} {
		if got := l.publish(step.ev); got != step.publish {
			t.Errorf("publish(%+v) = %v, want %v", step.ev, got, step.publish)
		}
		select {
		case got := <-ch:
			if !step.publish {
				t.Errorf("after %+v the subscriber got %+v, want nothing", step.ev, got)
			} else if got != step.ev {
				t.Errorf("subscriber got %+v, want %+v", got, step.ev)
			}
		default:
			if step.publish {
				t.Errorf("after %+v the subscriber got nothing", step.ev)
			}
		}
	}
}

// TestVerifyLeaderChecksTheTerm: a DC verifies its leadership in the term
// it acts for; a verification for an earlier term fails even though the
// node leads (it lost and regained leadership in between).
func TestVerifyLeaderChecksTheTerm(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	term := dc.raft.CurrentTerm()
	if err := dc.VerifyLeader(term); err != nil {
		t.Fatalf("VerifyLeader(%d) on the DC: %v", term, err)
	}
	if err := dc.VerifyLeader(term - 1); err == nil || !strings.Contains(err.Error(), "term moved") {
		t.Errorf("VerifyLeader(%d) while leading in term %d: %v, want a term error", term-1, term, err)
	}
	for _, n := range c.followers(dc) {
		if err := n.VerifyLeader(term); err == nil {
			t.Errorf("VerifyLeader on follower %s succeeded", n.Name())
		}
	}
}

// TestRPCRefusesToSpeakForAnotherNode: a peer's certificate names it; a
// request that claims to come from another node is refused before it is
// served.
func TestRPCRefusesToSpeakForAnotherNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	liar, victim := c.followers(dc)[0], c.followers(dc)[1].Name()
	conn, err := liar.mux.dial(dc.RaftAddr(), dc.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{rpcMagic}); err != nil {
		t.Fatal(err)
	}
	// A leave on behalf of the victim would remove it from the cluster.
	if err := json.NewEncoder(conn).Encode(rpcRequest{Op: opLeave, From: victim}); err != nil {
		t.Fatal(err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(conn, maxRPCSize)).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Error, "certificate is for") {
		t.Errorf("%s claiming to be %s: response %+v, want a refusal naming the certificate", liar.Name(), victim, resp)
	}
	if _, ok := raftServers(dc)[victim]; !ok {
		t.Errorf("%s was removed from Raft on a request %s sent in its name", victim, liar.Name())
	}
}
