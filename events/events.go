// Package events is the agent's one stream of what happened: the DC
// gained or lost, a VIP claimed or released, a real server up or down,
// quorum lost or regained, an address conflict, a fencing. The director
// and the agent publish; the admin API (raftlb events), notify scripts
// and mail alerts subscribe. Publishing never blocks: a subscriber that
// falls behind loses events, and counts them.
package events

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The event types.
const (
	DCGained        = "dc_gained"
	DCLost          = "dc_lost"
	VIPClaimed      = "vip_claimed"
	VIPReleased     = "vip_released"
	ServerUp        = "server_up"
	ServerDown      = "server_down"
	DCChanged       = "dc_changed" // another node became DC, as this node sees it
	QuorumLost      = "quorum_lost"
	QuorumRegained  = "quorum_regained"
	AddressConflict = "address_conflict"
	FenceStarted    = "fence_started"
	FenceSucceeded  = "fence_succeeded"
	FenceFailed     = "fence_failed"
	// ConnSyncIncomplete: a DC handed over on purpose before every other
	// node that can direct held a copy of its connections.
	ConnSyncIncomplete = "conn_sync_incomplete"
	// The resources that move with the DC.
	ResourceStarted    = "resource_started"
	ResourceStopped    = "resource_stopped"
	ResourceFailed     = "resource_failed"      // a start or a monitor failed
	ResourceStopFailed = "resource_stop_failed" // the node must not be trusted to have let go
)

// Types lists every event type, in the order a reader meets them.
var Types = []string{DCGained, DCLost, DCChanged, VIPClaimed, VIPReleased, ServerUp, ServerDown, QuorumLost, QuorumRegained, AddressConflict, FenceStarted, FenceSucceeded, FenceFailed,
	ConnSyncIncomplete, ResourceStarted, ResourceStopped, ResourceFailed, ResourceStopFailed}

// Event is one thing that happened, as seen by Node. Fields that do not
// apply are empty. No secret is ever in an event.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Node    string    `json:"node"`
	Term    uint64    `json:"term,omitempty"`
	VIP     string    `json:"vip,omitempty"`
	Service string    `json:"service,omitempty"`
	Server  string    `json:"server,omitempty"`
	// Target is the node a fencing is aimed at.
	Target string `json:"target,omitempty"`
	// Resource is the spec's resource an event is about.
	Resource string `json:"resource,omitempty"`
	// Message says what happened in a sentence; Error why, when
	// something failed (a check's last error, a fence agent's).
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

// DefaultKeep is how many recent events a bus keeps for raftlb events and
// the status page.
const DefaultKeep = 200

// Bus delivers events to subscribers and keeps the recent ones. A nil
// *Bus takes events and drops them.
type Bus struct {
	node string
	keep int
	now  func() time.Time

	mu     sync.Mutex
	seq    uint64
	recent []Event
	subs   map[*Subscription]struct{}
}

// NewBus returns the bus of node, keeping the last keep events (at least
// one).
func NewBus(node string, keep int) *Bus {
	return &Bus{node: node, keep: max(keep, 1), now: time.Now, subs: map[*Subscription]struct{}{}}
}

// Publish numbers e, stamps it with the time and the node, keeps it and
// hands it to every subscriber that has room.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq, e.Node = b.seq, b.node
	if e.Time.IsZero() {
		e.Time = b.now().UTC()
	}
	b.recent = append(b.recent, e)
	if len(b.recent) > b.keep {
		b.recent = append(b.recent[:0:0], b.recent[len(b.recent)-b.keep:]...)
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Recent returns the events kept, oldest first.
func (b *Bus) Recent() []Event {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Event(nil), b.recent...)
}

// Subscription receives the events published after it was made, in
// order, up to its buffer; what did not fit is counted.
type Subscription struct {
	c       chan Event
	dropped atomic.Uint64
	bus     *Bus
	once    sync.Once
}

// Subscribe returns a subscription with room for buffer events (at least
// one) and, taken under the same lock so none is missed or repeated, the
// events kept until then.
func (b *Bus) Subscribe(buffer int) (*Subscription, []Event) {
	s := &Subscription{c: make(chan Event, max(buffer, 1)), bus: b}
	if b == nil {
		return s, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[s] = struct{}{}
	return s, append([]Event(nil), b.recent...)
}

// C delivers the events; it is closed by Close.
func (s *Subscription) C() <-chan Event { return s.c }

// Dropped is how many events did not fit in the buffer.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		if s.bus != nil {
			s.bus.mu.Lock()
			delete(s.bus.subs, s)
			s.bus.mu.Unlock()
		}
		close(s.c)
	})
}

// WatchQuorum publishes quorum_lost and quorum_regained on b as has
// changes, asked every interval, until ctx ends. The first answer is the
// baseline: a node that starts without quorum says so once it has it.
func WatchQuorum(ctx context.Context, b *Bus, interval time.Duration, has func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	known, had := false, false
	for {
		now := has()
		switch {
		case !known:
			known = true
		case had && !now:
			b.Publish(Event{Type: QuorumLost, Message: "quorum lost: this node sees no majority of the voters"})
		case !had && now:
			b.Publish(Event{Type: QuorumRegained, Message: "quorum regained"})
		}
		had = now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DCWatch turns the leaders a node learns of into dc_changed events: one
// each time another node than the last known DC becomes DC.
type DCWatch struct {
	b    *Bus
	mu   sync.Mutex
	last string
}

// NewDCWatch returns a DCWatch publishing on b.
func NewDCWatch(b *Bus) *DCWatch { return &DCWatch{b: b} }

// Saw is told each leader this node learns of ("" while none is known).
func (w *DCWatch) Saw(dc string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if dc == "" || dc == w.last {
		return
	}
	if w.last != "" {
		w.b.Publish(Event{Type: DCChanged, Target: dc, Message: "the DC is now " + dc + " (was " + w.last + ")"})
	}
	w.last = dc
}
