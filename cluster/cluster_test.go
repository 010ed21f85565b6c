package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/spec"
)

func TestThreeNodesElectOneDCAndAgree(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	c.waitFor("all nodes registered", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if len(nd.FSM().State().Nodes) != 3 {
				return false
			}
		}
		return true
	})
	for _, nd := range c.live() {
		st := nd.View()
		if st.DC != dc.Name() || !st.Quorum || st.Stale {
			t.Errorf("%s: status dc=%q quorum=%v stale=%v, want dc=%q with quorum", nd.Name(), st.DC, st.Quorum, st.Stale, dc.Name())
		}
		if st.NodesConfigured != 3 {
			t.Errorf("%s: %d nodes configured, want 3", nd.Name(), st.NodesConfigured)
		}
		if nd == dc && st.LastContactMS != 0 {
			t.Errorf("the DC reports its last contact with a DC %d ms ago", st.LastContactMS)
		}
		roles := map[string]string{}
		for _, ns := range st.Nodes {
			roles[ns.Name] = ns.Role
			if ns.Status != "online" {
				t.Errorf("%s sees %s %s, want online", nd.Name(), ns.Name, ns.Status)
			}
		}
		for _, name := range []string{"n1", "n2", "n3"} {
			want := "member"
			if name == dc.Name() {
				want = "DC"
			}
			if roles[name] != want {
				t.Errorf("%s sees %s as %q, want %q", nd.Name(), name, roles[name], want)
			}
		}
	}
}

// TestTheDCIsNeverStale: commits on the DC never make it report itself
// stale or catching up, however often status is read while they apply.
func TestTheDCIsNeverStale(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	// A DC that followed another first: Raft keeps its last contact from
	// then.
	c.crash(c.waitDC().Name())
	dc := c.waitDC()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for port := uint16(1000); port < 1030; port++ {
			if _, err := dc.ApplySpec(context.Background(), sampleSpec(port), 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads == 0 {
				t.Fatal("status was never read while the applies ran")
			}
			return
		default:
		}
		if v := dc.View(); v.Stale || v.Warning != "" || v.LastContactMS != 0 {
			t.Fatalf("the DC's view while it commits: stale %v, warning %q, last contact %d ms", v.Stale, v.Warning, v.LastContactMS)
		}
	}
}

func TestDCCrashElectsNewDC(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(string(rune('0'+size))+"nodes", func(t *testing.T) {
			c := newTestCluster(t, size, nil)
			old := c.waitDC()
			oldTerm := old.raft.CurrentTerm()
			c.crash(old.Name())
			dc := c.waitDC()
			if dc.Name() == old.Name() {
				t.Fatalf("crashed node %s is still DC", old.Name())
			}
			if term := dc.raft.CurrentTerm(); term <= oldTerm {
				t.Errorf("new DC term %d, want > %d", term, oldTerm)
			}
			// The crashed node stays configured and shows as offline.
			c.waitFor("crashed node offline in status", 10*time.Second, func() bool {
				for _, ns := range dc.View().Nodes {
					if ns.Name == old.Name() {
						return ns.Status == "offline"
					}
				}
				return false
			})
			if _, ok := raftServers(dc)[old.Name()]; !ok {
				t.Errorf("crashed node was removed from Raft; it must stay configured")
			}
		})
	}
}

func TestPartitionedMinorityHasNoDC(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.waitDC()
	c.partition(old.Name())

	var majority []*Node
	for _, nd := range c.live() {
		if nd != old {
			majority = append(majority, nd)
		}
	}
	dc := c.waitDC(majority...)
	c.waitFor("the cut-off DC to step down", 10*time.Second, func() bool { return !old.IsLeader() })
	c.waitFor("the minority to report no quorum", 10*time.Second, func() bool {
		st := old.View()
		return !st.Quorum && st.DC == "" && st.Warning != ""
	})
	if st := dc.View(); !st.Quorum || st.DC != dc.Name() {
		t.Errorf("majority status dc=%q quorum=%v, want dc=%q with quorum", st.DC, st.Quorum, dc.Name())
	}

	c.heal()
	c.waitFor("the healed node to see a DC with quorum again", 15*time.Second, func() bool {
		st := old.View()
		return st.Quorum && st.DC != ""
	})
}

func TestJoinIsIdempotent(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	c.waitFor("3 voters", 10*time.Second, func() bool { return len(raftServers(dc)) == 3 })
	c.waitFor("registry of 3", 5*time.Second, func() bool { return len(dc.FSM().State().Nodes) == 3 })
	registry := dc.FSM().State().Nodes
	before := dc.raft.LastIndex()
	for i := 0; i < 3; i++ {
		c.join("n2", "n1")
		c.join("n3", "n2")
		c.join("n1", "n3")
	}
	// Let the DC reconcile what the joins told it, then compare.
	dc.wake()
	if err := dc.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := len(raftServers(dc)); got != 3 {
		t.Fatalf("after repeated joins Raft has %d servers, want 3", got)
	}
	if !reflect.DeepEqual(dc.FSM().State().Nodes, registry) {
		t.Errorf("repeated joins changed the registry:\n%v\nwant\n%v", dc.FSM().State().Nodes, registry)
	}
	// Only the barrier itself may have been written.
	if after := dc.raft.LastIndex(); after > before+1 {
		t.Errorf("repeated joins wrote %d log entries", after-before-1)
	}
}

func TestApplyFromAnyNodeAndRejectInvalid(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	follower := c.followers(dc)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := follower.ApplySpec(ctx, sampleSpec(3128), 0)
	if err != nil || !res.Changed || res.Version != 1 {
		t.Fatalf("apply via follower: %+v, %v; want version 1 changed", res, err)
	}
	// The same spec again changes nothing.
	res, err = follower.ApplySpec(ctx, sampleSpec(3128), 0)
	if err != nil || res.Changed || res.Version != 1 {
		t.Fatalf("no-op apply: %+v, %v; want version 1 unchanged", res, err)
	}
	bad := sampleSpec(3128)
	bad.Services[0].Scheduler = "fastest"
	// Bypass local validation to prove the DC refuses it too.
	if _, err := follower.forward(ctx, rpcRequest{Op: opApply, Spec: &bad}); err != nil {
		t.Fatalf("forward: %v", err)
	}
	resp, _ := follower.forward(ctx, rpcRequest{Op: opApply, Spec: &bad})
	if _, err := follower.wireToResult(resp); err == nil {
		t.Fatal("DC accepted an unknown scheduler")
	}
	if _, err := follower.ApplySpec(ctx, bad, 0); err == nil || !strings.Contains(err.Error(), "scheduler") {
		t.Fatalf("invalid spec: err=%v, want a scheduler error", err)
	}
	var ve *spec.ValidationError
	if _, err := dc.ApplySpec(ctx, bad, 0); !errors.As(err, &ve) {
		t.Fatalf("invalid spec on DC: %v, want *spec.ValidationError", err)
	}
	if _, err := follower.ApplySpec(ctx, sampleSpec(8080), 7); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale expect_version: %v, want ErrConflict", err)
	}
	c.waitFor("every node at spec version 1", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if s := nd.FSM().Spec(); s.Version != 1 || s.Services[0].Port != 3128 {
				return false
			}
		}
		return true
	})
}

func TestRestartKeepsSpecAndDoesNotRebootstrap(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.waitDC()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.node("n1").ApplySpec(ctx, sampleSpec(3128), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor("spec everywhere", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if nd.FSM().Spec().Version != res.Version {
				return false
			}
		}
		return true
	})
	want := c.node("n1").FSM().Spec()
	bootstraps := strings.Count(c.logs.String(), "bootstrapped the cluster")
	// Stop the whole cluster, then start it again from disk.
	for _, name := range []string{"n1", "n2", "n3"} {
		c.crash(name)
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		nd := c.restart(name)
		if !nd.hadState {
			t.Fatalf("%s: restarted without its Raft state", name)
		}
	}
	dc := c.waitDC()
	c.waitFor("the spec restored on every node", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if !reflect.DeepEqual(nd.FSM().Spec(), want) {
				return false
			}
		}
		return true
	})
	if got := len(raftServers(dc)); got != 3 {
		t.Errorf("after restart Raft has %d servers, want 3", got)
	}
	if got := strings.Count(c.logs.String(), "bootstrapped the cluster"); got != bootstraps {
		t.Errorf("restarted nodes bootstrapped again (%d bootstraps before restart, %d after)", bootstraps, got)
	}
}

func TestSnapshotRestoreGivesIdenticalState(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 2
	})
	dc := c.waitDC()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for port := uint16(1000); port < 1030; port++ {
		if _, err := dc.ApplySpec(ctx, sampleSpec(port), 0); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor("a snapshot on the DC", 10*time.Second, func() bool {
		snaps, err := raft.NewFileSnapshotStore(dc.cfg.DataDir+"/raft", 2, nil)
		if err != nil {
			return false
		}
		list, _ := snaps.List()
		return len(list) > 0
	})
	// A node that joins now is far behind the truncated log: it must be
	// brought up to date by InstallSnapshot.
	cfg := c.config(4, 3)
	cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs = 4, 50*time.Millisecond, 2
	late := c.start(cfg)
	c.join("n4", "n1")
	want := dc.FSM().State()
	// It started with no snapshot of its own, so a restore is the
	// leader's InstallSnapshot. Restore counts before it returns, a
	// moment after the state it set can be read.
	c.waitFor("the late node to restore the DC's snapshot", 15*time.Second, func() bool {
		return late.FSM().Restores() > 0
	})
	c.waitFor("the late node to converge", 15*time.Second, func() bool {
		return reflect.DeepEqual(late.FSM().State().Spec, want.Spec)
	})
	// And a node restarted from its own snapshot has the same state.
	c.crash("n4")
	late = c.restart("n4")
	c.waitFor("the restarted node to converge", 15*time.Second, func() bool {
		return reflect.DeepEqual(late.FSM().State().Spec, dc.FSM().State().Spec)
	})
}

func TestNodesBeyondMaxVotersJoinAsNonVoters(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxVoters = 3 })
	dc := c.waitDC()
	cfg := c.config(4, 0)
	cfg.MaxVoters = 3
	c.start(cfg)
	c.join("n4", "n1")
	c.waitFor("n4 as non-voter", 10*time.Second, func() bool {
		s, ok := raftServers(dc)["n4"]
		return ok && s == raft.Nonvoter
	})
	c.waitFor("n4 shown as non-voter", 10*time.Second, func() bool {
		for _, ns := range dc.View().Nodes {
			if ns.Name == "n4" {
				return ns.Role == "non-voter"
			}
		}
		return false
	})
	// A voter leaving gracefully makes room: the non-voter is promoted.
	var leaver *Node
	for _, nd := range c.live() {
		if nd != dc && nd.Name() != "n4" {
			leaver = nd
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.crash(leaver.Name())
	c.waitFor("n4 promoted to voter", 10*time.Second, func() bool {
		s, ok := raftServers(dc)["n4"]
		_, gone := raftServers(dc)[leaver.Name()]
		return ok && s == raft.Voter && !gone
	})
	c.waitFor("leaver deregistered", 10*time.Second, func() bool {
		_, ok := dc.FSM().State().Nodes[leaver.Name()]
		return !ok
	})
}

func TestDCLeaveHandsOverLeadership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.waitDC()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.crash(old.Name())
	dc := c.waitDC()
	c.waitFor("the old DC out of Raft", 10*time.Second, func() bool {
		_, ok := raftServers(dc)[old.Name()]
		return !ok
	})
}

// TestWrongGossipKeyCannotJoin: a node with another gossip key, or with
// none, is told at once that the key differs (not after the join's
// deadline with a generic message) and never reaches Raft.
func TestWrongGossipKeyCannotJoin(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"another key", func(cfg *Config) { cfg.GossipKey = other }},
		{"no key", func(cfg *Config) { cfg.GossipKey, cfg.TLS, cfg.Insecure = nil, nil, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.config(4+i, 0)
			tc.mod(&cfg)
			intruder := c.start(cfg)
			// The deadline is generous: the key mismatch must be
			// recognised from memberlist's answer, not by running out
			// of time.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := intruder.Join(ctx, []string{dc.GossipAddr()})
			if !errors.Is(err, ErrGossipKey) {
				t.Fatalf("join error %v, want ErrGossipKey (%q)", err, ErrGossipKey)
			}
			if ctx.Err() != nil {
				t.Errorf("the join ran into its deadline: the mismatch was not recognised from memberlist's answer")
			}
			if _, ok := raftServers(dc)[cfg.Name]; ok {
				t.Errorf("node %s with the wrong gossip key is in Raft", cfg.Name)
			}
		})
	}
}

// TestKeyMismatchRecognisesMemberlistErrors: memberlist's own words, in
// the case this version writes them and in the case an older one did.
func TestKeyMismatchRecognisesMemberlistErrors(t *testing.T) {
	for _, msg := range []string{
		"1 error occurred:\n\t* failed to join 127.0.0.1:7946: no installed keys could decrypt the message",
		"No installed keys could decrypt the message",
		"failed to join 127.0.0.1:7946: encryption is configured but remote state is not encrypted",
		"failed to join 127.0.0.1:7946: remote state is encrypted and encryption is not configured",
	} {
		if !keyMismatch(errors.New(msg)) {
			t.Errorf("keyMismatch(%q) = false, want true", msg)
		}
	}
	for _, err := range []error{nil, errors.New("failed to join 127.0.0.1:7946: dial tcp 127.0.0.1:7946: connect: connection refused")} {
		if keyMismatch(err) {
			t.Errorf("keyMismatch(%v) = true, want false", err)
		}
	}
}

func TestWrongCACannotJoin(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	rogueCA := t.TempDir()
	if err := InitCA(rogueCA, time.Hour); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.4")
	if err := IssueNodeCert(rogueCA, "n4", []net.IP{ip.AsSlice()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(4, 0)
	var err error
	if cfg.TLS, err = LoadTLS(rogueCA, "n4"); err != nil {
		t.Fatal(err)
	}
	intruder := c.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = intruder.Join(ctx, []string{dc.GossipAddr()})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("join with a certificate from another CA: err=%v, want a certificate error", err)
	}
	// The DC sees the gossip member but never admits it to Raft.
	c.waitRefused(dc, "n4", "")
	if !strings.Contains(c.logs.String(), "not admitting node to Raft") {
		t.Error("the DC refused n4 without logging it")
	}
	if _, ok := raftServers(dc)["n4"]; ok {
		t.Error("node with a certificate from another CA is in Raft")
	}
}

// TestHandOverHooks: a hand-over runs the hooks (true) while this node
// still leads, before the transfer, and not again once it succeeded.
func TestHandOverHooks(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	var mu sync.Mutex
	var calls []string
	dc.OnHandOver(func(begun bool) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, fmt.Sprintf("begun=%v leader=%v", begun, dc.IsLeader()))
	})
	dc.HandOver()
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	if want := []string{"begun=true leader=true"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %q, want %q", got, want)
	}
	if dc.IsLeader() {
		t.Fatal("after the hand-over this node still leads")
	}
}
