package director

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
)

// A planned move (raftlb dc move, a DC put in standby, a graceful stop, a
// failback to the preferred DC) keeps every established connection: the
// DC hands over only once each other node that can direct — any of them
// may become the successor — holds a copy of every connection its kernel
// balances as the move begins, or once CopyWait has passed, which the log
// and the event stream say. The sync daemon sends a connection within
// about two seconds of its establishment (the kernel flushes a partly
// filled message after IPVS_SYNC_FLUSH_TIME): the wait is that long at
// most when nothing is lost.

// DefaultCopyWait is CopyWait's default: the kernel's flush time, its
// check period and a lab guest's stall, with room.
const DefaultCopyWait = 5 * time.Second

// connCopiesOp is the RPC operation on which a DC about to hand over asks
// a node how many of its connections that node's kernel holds a copy of.
const connCopiesOp = "conn-copies"

// maxCopyCheck bounds the connections one check names (a request of about
// 400 KB); a larger table is checked on its first maxCopyCheck entries.
const maxCopyCheck = 4096

// CopiesRequest names connections by their keys.
type CopiesRequest struct {
	Conns []dataplane.ConnKey `json:"conns"`
}

// CopiesResponse says how many of them the node holds.
type CopiesResponse struct {
	Held int `json:"held"`
}

// copyPoll is the pause between two rounds of questions; DefaultCopyStall
// how long the wait goes on without a new copy anywhere (CopyStall): the
// kernel's flush time (2 s) and its check period (1 s).
const (
	copyPoll         = 200 * time.Millisecond
	DefaultCopyStall = 3 * time.Second
)

// awaitCopies waits, on a DC about to hand over on purpose, until every
// other node that can direct holds a copy of each connection (and
// persistence template) its kernel balances for raftlb's VIPs now, or
// CopyWait has passed.
func (d *Director) awaitCopies() {
	t := d.current.Load()
	if t == nil || d.dp == nil || d.dp.Sync == nil || d.cfg.CopyWait < 0 {
		return
	}
	keys, err := d.balanced()
	if err != nil {
		d.logger.Error("planned move: reading this DC's connections failed; handing over without waiting for their copies", "err", err)
		return
	}
	peers := slices.DeleteFunc(d.c.Directors(), func(n string) bool { return n == d.c.Name() })
	if len(keys) == 0 || len(peers) == 0 {
		return
	}
	start := time.Now()
	deadline := start.Add(d.cfg.CopyWait)
	missing := map[string]int{}
	for _, p := range peers {
		missing[p] = len(keys)
	}
	req := CopiesRequest{Conns: keys}
	poll := time.NewTicker(copyPoll)
	defer poll.Stop()
	progress, least := start, len(keys)*len(peers)
	for {
		for p := range missing {
			ctx, cancel := context.WithTimeout(context.Background(), copyPoll)
			var resp CopiesResponse
			err := d.c.CallNode(ctx, p, connCopiesOp, req, &resp)
			cancel()
			switch {
			case err != nil:
				d.logger.Debug("planned move: asking for connection copies", "node", p, "err", err)
			case resp.Held >= len(keys):
				delete(missing, p)
			default:
				missing[p] = len(keys) - resp.Held
			}
		}
		if len(missing) == 0 {
			d.logger.Info("planned move: every node that can direct holds a copy of this DC's connections", "connections", len(keys), "after", time.Since(start).Round(time.Millisecond))
			return
		}
		total := 0
		for _, m := range missing {
			total += m
		}
		if total < least {
			progress, least = time.Now(), total
		}
		why := ""
		switch {
		case time.Now().After(deadline):
			why = "the wait's bound passed"
		case time.Since(progress) > d.cfg.CopyStall:
			// The kernel sends a connection again only with its next
			// packets: an idle one established before a node's backup
			// daemon started is never copied there.
			why = "no copy arrived for " + d.cfg.CopyStall.String()
		}
		if why != "" {
			msg := fmt.Sprintf("handing over before every node held a copy of this DC's %d connections (missing, by node: %v: %s); those may be reset", len(keys), missing, why)
			d.logger.Warn("planned move: "+msg, "waited", time.Since(start).Round(time.Millisecond))
			t.event(events.Event{Type: events.ConnSyncIncomplete, Message: msg})
			return
		}
		<-poll.C
	}
}

// copyActive is how recently a connection must have carried a packet to
// be waited for: realserver's sync_refresh_period. The kernel sends a
// connection again only with its packets, so a backup that started after
// an idle one was established never gets it, and waiting would be vain.
const copyActive = 10 * time.Second

// balanced is the keys of what this node's kernel balances for raftlb's
// VIPs and may still be copied: established TCP connections and
// persistence templates that carried a packet within copyActive, at most
// maxCopyCheck.
func (d *Director) balanced() ([]dataplane.ConnKey, error) {
	conns, err := d.dp.Sync.Kernel.Conns()
	if err != nil {
		return nil, err
	}
	tcp, err := d.dp.Sync.Kernel.TCPTimeout()
	if err != nil {
		return nil, err
	}
	spec := d.c.FSM().Spec()
	owned := d.owned(spec)
	persist := map[netip.AddrPort]time.Duration{}
	for _, s := range spec.Services {
		persist[netip.AddrPortFrom(s.VIP, s.Port)] = s.Persistence.Timeout
	}
	var keys []dataplane.ConnKey
	for _, c := range conns {
		if !owned[c.VIP.Addr()] {
			continue
		}
		live := false
		switch {
		case c.Proto == "IP":
			p := persist[c.VIP]
			live = p > 0 && c.Expires >= p-copyActive
		case c.Proto == "TCP" && c.State == "ESTABLISHED":
			live = c.Expires >= tcp-copyActive
		}
		if !live {
			continue
		}
		keys = append(keys, c.Key())
		if len(keys) == maxCopyCheck {
			break
		}
	}
	return keys, nil
}

// serveConnCopies answers a DC about to hand over: how many of the
// connections it names this node's kernel holds a copy of.
func (d *Director) serveConnCopies(_ context.Context, _ string, body json.RawMessage) (any, error) {
	if d.dp == nil || d.dp.Sync == nil {
		return nil, errors.New("this node runs no IPVS connection sync")
	}
	var req CopiesRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("conn-copies request: %w", err)
	}
	if len(req.Conns) > maxCopyCheck {
		return nil, fmt.Errorf("conn-copies request: %d connections, at most %d", len(req.Conns), maxCopyCheck)
	}
	conns, err := d.dp.Sync.Kernel.Conns()
	if err != nil {
		return nil, err
	}
	have := make(map[dataplane.ConnKey]bool, len(conns))
	for _, c := range conns {
		have[c.Key()] = true
	}
	held := 0
	for _, k := range req.Conns {
		if have[k] {
			held++
		}
	}
	return CopiesResponse{Held: held}, nil
}

// quiesce, as a hand-over begins, keeps the DC's IPVS table but lets it
// send no new connection to another node: every real server but this
// node's own address goes to weight 0. A client whose ARP cache still
// points here until the successor announces the VIPs keeps its
// established connections — they follow their entries to their real
// servers, where a flushed table would have answered them with a reset —
// while a new connection is served here, and no packet the successor
// forwards to this node as a real server is balanced on (the two directors
// never send a connection to each other: invariant 6's one exception,
// bounded by the hand-over's grace). The writes need this term's
// leadership, which the hand-over still has; when they are not allowed,
// or fail, the table is flushed instead, as a hand-over did before.
func (t *term) quiesce() error {
	d := t.d
	state := d.c.FSM().State()
	own := state.Nodes[d.c.Name()].Address
	owned := d.owned(state.Spec)
	current, err := d.dp.IPVS.Services()
	if err == nil {
		desired := make([]dataplane.Service, 0, len(current))
		for _, s := range current {
			if !owned[s.Key.VIP] {
				continue
			}
			s.Dests = slices.Clone(s.Dests)
			for i := range s.Dests {
				if s.Dests[i].Addr != own {
					s.Dests[i].Weight = 0
				}
			}
			desired = append(desired, s)
		}
		var n int
		n, err = dataplane.Apply(d.dp.IPVS, dataplane.Plan(current, desired, owned), t.allowed)
		d.writes.Add(uint64(n))
	}
	if err != nil {
		t.log.Warn("handing over: keeping the table for established connections failed; removing it", "err", err)
		return d.flush(state.Spec)
	}
	return nil
}
