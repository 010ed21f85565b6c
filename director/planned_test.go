package director

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/internal/testkit"
)

// plannedConns is the DC's connection table in the planned-move tests: an
// established connection and a persistence template (the service's is
// 20 s) that carried a packet within copyActive, to be copied; a closing
// connection, another address's, and an established connection and a
// template idle for longer, which are not waited for.
func plannedConns() (table []dataplane.Conn, waited []dataplane.ConnKey) {
	ap := netip.MustParseAddrPort
	v := netip.AddrPortFrom(vip, 3128)
	tcp := dataplane.DefaultTCPTimeout
	table = []dataplane.Conn{
		{Proto: "TCP", Client: ap("10.0.0.9:40000"), VIP: v, Dest: ap("127.0.0.40:3128"), State: "ESTABLISHED", Expires: tcp - time.Second},
		{Proto: "IP", Client: ap("10.0.0.9:0"), VIP: v, Dest: ap("127.0.0.40:3128"), State: "NONE", Expires: 19 * time.Second},
		{Proto: "TCP", Client: ap("10.0.0.9:40001"), VIP: v, Dest: ap("127.0.0.50:3128"), State: "FIN_WAIT", Expires: time.Minute},
		{Proto: "TCP", Client: ap("10.0.0.9:40002"), VIP: ap("192.0.2.1:80"), Dest: ap("127.0.0.50:80"), State: "ESTABLISHED", Expires: tcp},
		{Proto: "TCP", Client: ap("10.0.0.9:40003"), VIP: v, Dest: ap("127.0.0.50:3128"), State: "ESTABLISHED", Expires: tcp - time.Minute},
		{Proto: "IP", Client: ap("10.0.0.8:0"), VIP: v, Dest: ap("127.0.0.50:3128"), State: "NONE", Expires: 5 * time.Second},
	}
	return table, []dataplane.ConnKey{table[0].Key(), table[1].Key()}
}

// fakePeers answers the DC's conn-copies questions as the other nodes
// would: holding `held` of the connections named, counting the questions.
type fakePeers struct {
	held  atomic.Int32
	asked atomic.Int32
	mu    sync.Mutex
	named []dataplane.ConnKey
}

func (p *fakePeers) serve(_ context.Context, _ string, body json.RawMessage) (any, error) {
	var req CopiesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.named = req.Conns
	p.mu.Unlock()
	p.asked.Add(1)
	return CopiesResponse{Held: int(p.held.Load())}, nil
}

// TestPlannedMoveWaitsForCopies: a DC handing over on purpose keeps
// balancing until the other nodes hold copies of its established
// connections and persistence templates (nothing else is waited for), and
// only then stops balancing for the transfer.
func TestPlannedMoveWaitsForCopies(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.CopyWait = time.Minute })
	table, waited := plannedConns()
	w.sync.SetConns(table)
	peers := &fakePeers{}
	w.c.Handle(connCopiesOp, peers.serve)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })

	begun := make(chan struct{})
	go func() { defer close(begun); w.c.setHandingOver(true) }()
	testkit.WaitFor(t, "the peers asked twice", func() bool { return peers.asked.Load() >= 4 })
	if got := w.dests(); len(got) != 3 || got["127.0.0.40:3128"] != 1 {
		t.Errorf("balancing stopped before the peers held the copies: %v", got)
	}
	peers.mu.Lock()
	named := peers.named
	peers.mu.Unlock()
	if !slices.Equal(named, waited) {
		t.Errorf("the peers were asked for %v, want %v", named, waited)
	}
	peers.held.Store(int32(len(waited)))
	<-begun
	if got := w.dests(); !maps.Equal(got, quiesced) {
		t.Errorf("the hand-over began, the copies held, but the table is %v, want %v", got, quiesced)
	}
	if !strings.Contains(w.logs.String(), "every node that can direct holds a copy of this DC's connections") {
		t.Errorf("the wait's end is not logged")
	}
	if w.sawEvents("conn_sync_incomplete") {
		t.Errorf("conn_sync_incomplete published though every copy was held: %v", w.events())
	}
}

// TestPlannedMoveWaitIsBounded: copies that never arrive hold the move up
// for CopyWait at most; then it goes on, and the log and the event stream
// say how many were missing.
func TestPlannedMoveWaitIsBounded(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.CopyWait = 50 * time.Millisecond })
	table, _ := plannedConns()
	w.sync.SetConns(table)
	w.c.Handle(connCopiesOp, (&fakePeers{}).serve)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	w.c.setHandingOver(true)
	if got := w.dests(); !maps.Equal(got, quiesced) {
		t.Errorf("the hand-over did not go on after the bounded wait: %v", got)
	}
	if !w.sawEvents("conn_sync_incomplete") || !strings.Contains(w.logs.String(), "handing over before every node held a copy of this DC's 2 connections (missing, by node: map[m40:2 m50:2]: the wait's bound passed)") {
		t.Errorf("events %v; logs:\n%s", w.events(), w.logs.String())
	}
}

// TestPlannedMoveStopsWaitingWithoutProgress: copies that stop arriving
// (the kernel never sends an idle connection established before a node's
// backup started) end the wait after CopyStall, long before CopyWait.
func TestPlannedMoveStopsWaitingWithoutProgress(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.CopyWait = time.Hour; c.CopyStall = 100 * time.Millisecond })
	table, _ := plannedConns()
	w.sync.SetConns(table)
	peers := &fakePeers{}
	peers.held.Store(1)
	w.c.Handle(connCopiesOp, peers.serve)
	w.run()
	w.c.leaders <- leader(2)
	testkit.WaitFor(t, "the VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })
	w.c.setHandingOver(true)
	if got := w.dests(); !maps.Equal(got, quiesced) {
		t.Errorf("the hand-over did not go on after the copies stalled: %v", got)
	}
	if !strings.Contains(w.logs.String(), "map[m40:1 m50:1]: no copy arrived for 100ms") {
		t.Errorf("logs:\n%s", w.logs.String())
	}
}

// TestServeConnCopies: a node counts the named connections its kernel holds
// (same client, VIP and real server); a request it cannot read, or one too
// large, is refused.
func TestServeConnCopies(t *testing.T) {
	w := newWorld(t, nil)
	table, _ := plannedConns()
	w.sync.SetConns(table[:2])
	other := table[0].Key()
	other.Dest = netip.MustParseAddrPort("127.0.0.50:3128") // a copy that went elsewhere does not count
	var resp CopiesResponse
	if err := w.c.CallNode(context.Background(), "m40", connCopiesOp, CopiesRequest{Conns: []dataplane.ConnKey{table[0].Key(), table[1].Key(), table[2].Key(), other}}, &resp); err != nil || resp.Held != 2 {
		t.Errorf("held %d, %v; want 2", resp.Held, err)
	}
	for _, bad := range []string{`{"conns":[],"extra":1}`, `{"conns":"x"}`, fmt.Sprintf(`{"conns":[%s{}]}`, strings.Repeat("{},", maxCopyCheck))} {
		if _, err := w.d.serveConnCopies(context.Background(), "m40", json.RawMessage(bad)); err == nil || !strings.Contains(err.Error(), "conn-copies request") {
			t.Errorf("%.40s…: %v, want a refusal", bad, err)
		}
	}
}

// TestQuiesceFallsBackToFlush: a hand-over whose writes are no longer
// allowed (the verification's window passed and leadership cannot be
// verified) removes the table instead of keeping it: a table it cannot
// quiesce could send new connections to the successor.
func TestQuiesceFallsBackToFlush(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	tm.verifiedAt = time.Time{}
	w.c.setVerifyErr(errNotLeader)
	tm.beginHandOver()
	if len(w.table()) != 0 {
		t.Errorf("a hand-over that could not quiesce kept the table: %v", w.table())
	}
	if !strings.Contains(w.logs.String(), "keeping the table for established connections failed; removing it") {
		t.Errorf("the fallback is not logged")
	}
}
