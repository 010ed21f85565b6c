package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// fencedSampleSpec is sampleSpec with a fence device: schema 2.
func fencedSampleSpec() spec.Spec {
	s := sampleSpec(3128)
	s.Fencing = spec.Fencing{Devices: []spec.FenceDevice{{
		Name: "dummy", Agent: "fence_dummy", Hosts: map[string]string{"n1": "", "n2": ""},
		Action: spec.FenceReboot, Timeout: 10 * time.Second,
	}}}
	return s
}

// TestMixedVersions: n3 plays the release before schema 2. Every node
// says which schema it reads; the DC refuses a spec that uses fencing
// (schema 2) and names n3, and changes nothing; a spec of schema 1 goes
// through everywhere; an entry marked safe to skip is skipped by n3 alone,
// logged and counted; a witness (schema 2) is not admitted while n3 reads
// 1. Once n3 runs the new release, both go through, and a node of the old
// release is then refused admission, since the log uses schema 2.
func TestMixedVersions(t *testing.T) {
	c := newMixedCluster(t, 3, nil, map[string]int{"n3": 1})
	dc := c.waitDC()
	c.waitFor("the registry to record each node's schema", 10*time.Second, func() bool {
		nodes := dc.FSM().State().Nodes
		return len(nodes) == 3 && nodes["n1"].Schema == fsm.Schema && nodes["n3"].Schema == 1
	})
	for _, v := range dc.View().Nodes {
		if want := map[bool]int{true: 1, false: fsm.Schema}[v.Name == "n3"]; v.Schema != want {
			t.Errorf("the view of %s: schema %d, want %d", v.Name, v.Schema, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := dc.FSM().State().Spec.Version
	for _, from := range []*Node{dc, c.followers(dc)[0]} {
		_, err := from.ApplySpec(ctx, fencedSampleSpec(), 0)
		var se *fsm.SchemaError
		if !errors.As(err, &se) && (err == nil || !strings.Contains(err.Error(), "schema 2")) {
			t.Fatalf("a fencing spec applied on %s with n3 at schema 1: %v; want it refused", from.Name(), err)
		}
		if !strings.Contains(err.Error(), "n3") || !strings.Contains(err.Error(), "upgrade") {
			t.Errorf("the refusal does not name the node to upgrade: %v", err)
		}
	}
	if v := dc.FSM().State().Spec.Version; v != before {
		t.Fatalf("a refused apply changed the spec version %d → %d", before, v)
	}
	res, err := dc.ApplySpec(ctx, sampleSpec(3128), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.live() {
		c.waitFor(n.Name()+" to apply the schema-1 spec", 10*time.Second, func() bool { return n.FSM().State().Spec.Version == res.Version })
	}

	// An informational entry of schema 2, marked safe to skip.
	check := fsm.DeviceCheck{Device: "dummy", Action: "monitor", OK: true, At: time.Now()}
	index, err := dc.Commit(fsm.CmdDeviceCheck|fsm.IgnoreUnknownType, check)
	if err != nil {
		t.Fatalf("an entry older nodes may skip was refused: %v", err)
	}
	old := c.node("n3")
	c.waitFor("n3 to skip the entry", 10*time.Second, func() bool { return old.FSM().Skipped() == 1 })
	for _, n := range c.live() {
		c.waitFor(n.Name()+" to apply past the entry", 10*time.Second, func() bool { return n.raft.AppliedIndex() >= index })
		if want := map[bool]uint64{true: 1, false: 0}[n == old]; n.FSM().Skipped() != want || n.View().SkippedEntries != want {
			t.Errorf("%s skipped %d entries (view %d), want %d", n.Name(), n.FSM().Skipped(), n.View().SkippedEntries, want)
		}
	}
	if got := dc.FSM().State().Schema; got != 1 {
		t.Errorf("an entry older nodes may skip raised the log's schema to %d", got)
	}
	if !strings.Contains(c.logs.String(), "skipped a log entry this release cannot read") {
		t.Error("the skip is not logged")
	}

	// A witness needs schema 2 in the registry: not admitted while n3
	// reads 1.
	wcfg := c.config(4, 3)
	wcfg.Witness = true
	c.start(wcfg)
	c.join("n4", dc.Name())
	c.waitRefused(dc, "n4", "this change needs schema 2 (fencing and witness nodes), which n3 cannot read")
	if !strings.Contains(c.logs.String(), `peer=n4 why="this change needs schema 2 (fencing and witness nodes), which n3 cannot read`) {
		t.Error("the witness's refusal is not logged")
	}
	if _, in := raftServers(dc)["n4"]; in {
		t.Fatal("the witness was admitted to Raft while n3 reads schema 1")
	}

	// n3 is upgraded: stopped (while it is down it still counts: it would
	// replay the log when it came back), then restarted on the new release.
	c.crash("n3")
	dc = c.waitDC(c.node("n1"), c.node("n2")) // n4 is not in Raft
	c.waitFor("gossip to see n3 gone", 15*time.Second, func() bool {
		for _, m := range dc.members() {
			if m.Name == "n3" && m.State == memberlist.StateAlive {
				return false
			}
		}
		return true
	})
	if _, err := dc.ApplySpec(ctx, fencedSampleSpec(), 0); err == nil || !strings.Contains(err.Error(), "n3") {
		t.Fatalf("a fencing spec applied while n3, of schema 1, is down: %v", err)
	}
	c.mu.Lock()
	delete(c.schemas, "n3")
	c.mu.Unlock()
	c.restart("n3")
	dc = c.waitDC(c.node("n1"), c.node("n2"), c.node("n3"))
	c.waitFor("the registry to record n3's new schema", 20*time.Second, func() bool {
		return dc.FSM().State().Nodes["n3"].Schema == fsm.Schema
	})
	c.waitFor("the witness admitted", 20*time.Second, func() bool {
		_, in := raftServers(dc)["n4"]
		return in && dc.FSM().State().Nodes["n4"].Witness
	})
	if _, err := dc.ApplySpec(ctx, fencedSampleSpec(), 0); err != nil {
		t.Fatalf("the fencing spec, every node upgraded: %v", err)
	}
	if got := dc.FSM().State().Schema; got != 2 {
		t.Errorf("the log's schema %d after a fencing spec, want 2", got)
	}

	// Now the log uses schema 2: a node of the old release stays out.
	c.mu.Lock()
	c.schemas["n5"] = 1
	c.mu.Unlock()
	c.start(c.config(5, 3))
	c.join("n5", dc.Name())
	c.waitRefused(dc, "n5", "it reads schema 1 and the log uses schema 2: upgrade raftlb on it")
	if !strings.Contains(c.logs.String(), `peer=n5 why="it reads schema 1 and the log uses schema 2: upgrade raftlb on it"`) {
		t.Error("the old node's refusal is not logged")
	}
	if _, in := raftServers(dc)["n5"]; in {
		t.Error("a node of the old release was admitted to a log of schema 2")
	}
	if _, ok := dc.FSM().State().Nodes["n5"]; ok {
		t.Error("a node of the old release was registered")
	}
}
