package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWitnessAndDirectors: a witness is registered as one, shown as one,
// and never listed among the nodes that can direct; a node that says it
// cannot direct leaves the list on every peer, and comes back when it can
// again; leadership can be handed to a named voter; a registered
// operation reaches a named member.
func TestWitnessAndDirectors(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.Name != "n3" {
			cfg.Dataplane = "fake"
		} else {
			cfg.Witness = true
		}
	})
	dc := c.waitDC()
	c.waitFor("the registry", 10*time.Second, func() bool { return len(dc.FSM().State().Nodes) == 3 })
	if !dc.FSM().State().Nodes["n3"].Witness || dc.FSM().State().Nodes["n1"].Witness {
		t.Errorf("registry %+v: want n3 alone a witness", dc.FSM().State().Nodes)
	}
	want := []string{"n1", "n2"}
	for _, n := range c.live() {
		c.waitFor(n.cfg.Name+" to see who can direct", 10*time.Second, func() bool { return slices.Equal(n.Directors(), want) })
	}
	if ok, why := c.node("n3").CanDirect(); ok || !strings.Contains(why, "witness") {
		t.Errorf("the witness can direct %v (%q)", ok, why)
	}
	for _, v := range dc.View().Nodes {
		if (v.Name == "n3") != v.Witness {
			t.Errorf("view of %s: witness %v", v.Name, v.Witness)
		}
	}

	c.node("n2").SetCannotDirect("claiming the VIPs failed: permission denied")
	c.waitFor("n2 to leave the directors everywhere", 10*time.Second, func() bool {
		for _, n := range c.live() {
			if !slices.Equal(n.Directors(), []string{"n1"}) {
				return false
			}
		}
		return true
	})
	var cannot string
	for _, v := range c.node("n1").View().Nodes {
		if v.Name == "n2" {
			cannot = v.CannotDirect
		}
	}
	if !strings.Contains(cannot, "permission denied") {
		t.Errorf("n1's view of n2: cannot direct %q", cannot)
	}
	c.node("n2").SetCannotDirect("")
	c.waitFor("n2 back among the directors", 10*time.Second, func() bool { return slices.Equal(c.node("n1").Directors(), want) })

	// Hand leadership to another voter, by name: it takes it.
	to := "n3"
	if dc.cfg.Name == "n3" {
		to = "n1"
	}
	if err := dc.TransferLeadershipTo(to, "test"); err != nil {
		t.Fatal(err)
	}
	c.waitFor(to+" to lead", 10*time.Second, func() bool { return c.node(to).IsLeader() })
	if err := c.node(to).TransferLeadershipTo("n9", "test"); err == nil {
		t.Error("a transfer to a node that is no voter was accepted")
	}

	c.node("n2").Handle("echo", func(_ context.Context, from string, body json.RawMessage) (any, error) {
		return from + ":" + string(body), nil
	})
	var got string
	if err := c.node("n1").CallNode(context.Background(), "n2", "echo", "hi", &got); err != nil || got != `n1:"hi"` {
		t.Errorf("CallNode: %q, %v", got, err)
	}
	if err := c.node("n1").CallNode(context.Background(), "n9", "echo", "hi", &got); err == nil {
		t.Error("CallNode to a node that is no member succeeded")
	}
}

// TestWitnessNeedsNoDataplane: a witness with a data plane is refused.
func TestWitnessNeedsNoDataplane(t *testing.T) {
	c := &testCluster{t: t, tlsDir: t.TempDir()}
	if err := InitCA(c.tlsDir, time.Hour); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.key, err = GenerateKey(); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(1, 1)
	cfg.Witness, cfg.Dataplane = true, "kernel"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "witness") {
		t.Errorf("a witness with a kernel data plane: %v", err)
	}
}

// TestDrainTellsPeers: a node whose agent stops says so in gossip before it
// leaves: every peer lists it as stopping, still online (the DC keeps it
// in the table, drained), and no longer among the nodes that can direct.
func TestDrainTellsPeers(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Dataplane = "fake" })
	c.waitDC()
	for _, n := range c.live() {
		c.waitFor(n.cfg.Name+" to see who can direct", 10*time.Second, func() bool { return len(n.Directors()) == 3 })
		if s := n.StoppingNodes(); len(s) != 0 {
			t.Fatalf("%s lists %v as stopping before anyone drains", n.cfg.Name, s)
		}
	}
	c.node("n2").Drain()
	for _, n := range c.live() {
		if n.cfg.Name == "n2" {
			continue
		}
		c.waitFor(n.cfg.Name+" to see n2 stopping", 10*time.Second, func() bool {
			s := n.StoppingNodes()
			return len(s) == 1 && s["n2"] && !slices.Contains(n.Directors(), "n2")
		})
		if !n.OnlineNodes()["n2"] {
			t.Errorf("%s shows the draining n2 offline", n.cfg.Name)
		}
	}
	if ok, why := c.node("n2").CanDirect(); ok || !strings.Contains(why, "stopping") {
		t.Errorf("a draining node can direct %v (%q)", ok, why)
	}
}
