package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A new DC that finds a VIP whose holder did not let go may, under takeover
// lease, claim it once the holder's last renewal has certainly run out.
// The holder renews only right after a verification of its leadership
// that a majority of voters acknowledged; a verification counts from its
// sending (director/term.go), and a voter acknowledges it only while it
// follows the holder. Every majority of voters without the holder
// intersects that acknowledging majority in a voter other than the holder,
// whose last contact with the holder came after the verification was sent.
// So the latest "last contact with the holder" among a majority of the
// other voters bounds the holder's last renewal from above: ContactBound.
// On a cable pull the followers' last contact is the pull itself, well
// before an election that waits out failure detection.
//
// Each node keeps its side of it (contactTracker): Raft tells of every
// change of the leader it follows (a blocking observer, so none is lost);
// when it stops following a leader, the time of its last contact then —
// raft's LastContact, read after the change, so no earlier than the last
// contact with that leader — is kept as an upper bound. A node still
// following the holder answers "now"; one that never followed it since
// its start answers its start (the previous run may have).

// opLastContact asks a node when it last heard from a leader.
const opLastContact = "last-contact"

type lastContactRequest struct {
	Node string `json:"node"`
}

type lastContactResponse struct {
	// AgeNS is how long before the answer the node last heard from the
	// leader asked about, at most (0: it still follows it).
	AgeNS int64 `json:"age_ns"`
}

type contactTracker struct {
	mu      sync.Mutex
	started time.Time
	leader  string               // the leader followed now ("": none)
	left    map[string]time.Time // leader → last contact, when this node stopped following it
	// lost is the last leader this node stopped following: who, its last
	// contact then, and when it stopped (the election's start).
	lost LeaderLost
}

// LeaderLost is when this node stopped following a leader: the start of a
// failover as the node saw it.
type LeaderLost struct {
	Leader      string
	LastContact time.Time // its last contact with the leader
	At          time.Time // when it stopped following it
}

func newContactTracker() *contactTracker {
	return &contactTracker{started: time.Now(), left: map[string]time.Time{}}
}

// observe records that this node now follows leader ("": none); last is
// raft's LastContact read after the change.
func (c *contactTracker) observe(leader string, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" && c.leader != leader {
		c.left[c.leader] = later(last, c.started)
		c.lost = LeaderLost{Leader: c.leader, LastContact: c.left[c.leader], At: time.Now()}
	}
	c.leader = leader
	delete(c.left, leader)
}

// lastContactWith is an upper bound of this node's last contact with
// node as its leader, on this node's clock.
func (c *contactTracker) lastContactWith(node string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == node {
		return now
	}
	if t, ok := c.left[node]; ok {
		return t
	}
	return c.started
}

// lastLost is the last leader this node stopped following (zero: none).
func (c *contactTracker) lastLost() LeaderLost {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// LastLeaderLost is the last leader this node stopped following, with its
// last contact and when: how a takeover began, as this node saw it.
func (n *Node) LastLeaderLost() LeaderLost { return n.contact.lastLost() }

// trackContact feeds the tracker from Raft until ctx ends. The observer
// blocks Raft until the event is taken, so this loop only takes it.
func (n *Node) trackContact(ctx context.Context) {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, true, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	_, id := n.raft.LeaderWithID()
	n.contact.observe(string(id), n.raft.LastContact())
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			n.contact.observe(string(o.Data.(raft.LeaderObservation).LeaderID), n.raft.LastContact())
		}
	}
}

func (n *Node) serveLastContact(_ context.Context, _ string, body json.RawMessage) (any, error) {
	var r lastContactRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("last-contact request: %w", err)
	}
	now := time.Now()
	return lastContactResponse{AgeNS: int64(now.Sub(n.contact.lastContactWith(r.Node, now)))}, nil
}

// ContactBound is an upper bound, on this node's clock, of the instant
// holder's last verification as leader was sent, from the last contacts
// with it of a majority of the voters other than holder (this node's
// own included); false when fewer answered before ctx ended.
func (n *Node) ContactBound(ctx context.Context, holder string) (time.Time, bool) {
	var voters []string
	for id, s := range configuration(n.raft) {
		if s.Suffrage == raft.Voter && id != holder {
			voters = append(voters, id)
		}
	}
	total := len(voters)
	if _, ok := configuration(n.raft)[holder]; ok {
		total++
	}
	need := total/2 + 1
	type answer struct {
		at time.Time
		ok bool
	}
	answers := make(chan answer, len(voters))
	for _, v := range voters {
		if v == n.cfg.Name {
			answers <- answer{n.contact.lastContactWith(holder, time.Now()), true}
			continue
		}
		go func() {
			var resp lastContactResponse
			err := n.CallNode(ctx, v, opLastContact, lastContactRequest{Node: holder}, &resp)
			// The answer left the voter before it arrived here: its age
			// counted from now is an upper bound.
			answers <- answer{time.Now().Add(-time.Duration(resp.AgeNS)), err == nil && resp.AgeNS >= 0}
		}()
	}
	// Any majority will do: the first to answer.
	var bound time.Time
	got := 0
	for range voters {
		a := <-answers
		if !a.ok {
			continue
		}
		got++
		bound = later(bound, a.at)
		if got == need {
			return bound, true
		}
	}
	return time.Time{}, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
