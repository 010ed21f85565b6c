package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRemoveNode: from any node, the DC removes a node that is gone; an
// online node only with force; the DC itself and an unknown node are
// refused; each refusal changes nothing.
func TestRemoveNode(t *testing.T) {
	c := newTestCluster(t, 4, func(cfg *Config) { cfg.Dataplane = "fake" })
	dc := c.waitDC()
	others := c.followers(dc)
	from, online, gone := others[0], others[1], others[2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name, want string
	}{
		{dc.Name(), "is the DC: move the DC first"},
		{online.Name(), "is online (gossip sees it alive)"},
		{"n9", "is not a node of this cluster"},
	} {
		err := from.RemoveNode(ctx, tc.name, false)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("remove %s: %v, want refused: %q", tc.name, err, tc.want)
		}
	}
	if got := len(raftServers(dc)); got != 4 {
		t.Fatalf("refused removals changed Raft: %d servers", got)
	}

	c.crash(gone.Name())
	c.waitFor(gone.Name()+" gone from gossip", 15*time.Second, func() bool {
		return from.RemoveNode(ctx, gone.Name(), false) == nil
	})
	c.waitFor(gone.Name()+" out of Raft and the registry on every node", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if _, in := raftServers(nd)[gone.Name()]; in {
				return false
			}
			if _, reg := nd.FSM().State().Nodes[gone.Name()]; reg {
				return false
			}
		}
		return true
	})
	if err := from.RemoveNode(ctx, online.Name(), true); err != nil {
		t.Fatalf("forced removal: %v", err)
	}
	if _, in := raftServers(dc)[online.Name()]; in {
		t.Error("a forced removal left the node in Raft")
	}
}

// TestMoveDC: from any node, the DC role moves to the node named, or to
// any node that can direct; a move to the DC itself, or to a node that
// cannot direct, is refused.
func TestMoveDC(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Dataplane = "fake"
		if cfg.Name == "n3" {
			cfg.Dataplane, cfg.Witness = "none", true
		}
	})
	dc := c.waitDC()
	if dc.Name() == "n3" {
		if _, err := dc.MoveDC(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		dc = c.waitDC()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	from := c.node("n3") // a witness: it forwards
	for _, tc := range []struct{ to, want string }{
		{dc.Name(), "is the DC already"},
		{"n3", "cannot take the DC role"},
		{"n9", "cannot take the DC role"},
	} {
		if _, err := from.MoveDC(ctx, tc.to); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("move to %s: %v, want refused: %q", tc.to, err, tc.want)
		}
	}
	other := map[string]string{"n1": "n2", "n2": "n1"}[dc.Name()]
	moved, err := from.MoveDC(ctx, other)
	if err != nil || moved != other {
		t.Fatalf("move to %s: %q, %v", other, moved, err)
	}
	c.waitFor(other+" to lead", 10*time.Second, func() bool { return c.node(other).IsLeader() })
	if moved, err := c.node(other).MoveDC(ctx, ""); err != nil || moved != dc.Name() {
		t.Errorf("move to any: %q, %v; want %s, the only other node that can direct", moved, err, dc.Name())
	}
}
