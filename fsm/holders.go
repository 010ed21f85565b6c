package fsm

import (
	"net/netip"
	"slices"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// Holder is who the log says holds a VIP on its interface: the DC that
// claimed it and in which term, and whether it has let go on purpose. A
// new DC reads it before it takes the VIP: a holder that did not let go is
// fenced, or waited out, or not, as the spec's takeover policy says.
type Holder struct {
	Node  string    `json:"node"`
	Term  uint64    `json:"term"`
	Since time.Time `json:"since"`
	// Released says the holder let go (ReleasedAt, for Reason), or the
	// cluster made sure it did (fenced, confirmed by an operator).
	Released   bool      `json:"released,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	ReleasedAt time.Time `json:"released_at,omitzero"`
}

// Why a holder let go, or how the cluster made sure it did.
const (
	ReleaseHandOver   = "handover"    // a graceful hand-over: the successor may claim at once
	ReleaseQuorumLost = "quorum-lost" // it noticed in time that it had lost quorum
	ReleaseRestart    = "restart"     // its agent restarted and put the VIPs back on lo
	ReleaseStopped    = "stopped"     // its agent stopped cleanly
	ReleaseFenced     = "fenced"      // fenced (STONITH) by the DC
	ReleaseConfirmed  = "confirmed"   // an operator confirmed the node is down
)

func validReleaseReason(r string) bool {
	switch r {
	case ReleaseHandOver, ReleaseQuorumLost, ReleaseRestart, ReleaseStopped, ReleaseFenced, ReleaseConfirmed:
		return true
	}
	return false
}

// ClaimVIPs records that the DC of Term, Node, holds VIPs on their
// interface from At.
type ClaimVIPs struct {
	Node string       `json:"node"`
	Term uint64       `json:"term"`
	VIPs []netip.Addr `json:"vips"`
	At   time.Time    `json:"at"`
}

// ReleaseVIPs records that Node let go of VIPs (or was made to). It
// applies to a VIP whose recorded holder is Node, in Term unless Term is
// 0 (any term of Node's: a restarted agent does not know which).
type ReleaseVIPs struct {
	Node   string       `json:"node"`
	Term   uint64       `json:"term,omitempty"`
	VIPs   []netip.Addr `json:"vips"`
	Reason string       `json:"reason"`
	At     time.Time    `json:"at"`
}

func (f *FSM) claimVIPs(c ClaimVIPs) *Result {
	if p := c.validate(); len(p) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: p}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	for _, vip := range c.VIPs {
		if h, ok := f.state.Holders[vip]; ok && h.Term > c.Term {
			continue // a later term's claim is already recorded
		}
		f.state.Holders[vip] = Holder{Node: c.Node, Term: c.Term, Since: c.At.UTC()}
		changed = true
	}
	return &Result{Changed: changed}
}

func (f *FSM) releaseVIPs(r ReleaseVIPs) *Result {
	if p := r.validate(); len(p) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: p}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	for _, vip := range r.VIPs {
		h, ok := f.state.Holders[vip]
		if !ok || h.Node != r.Node || h.Released || (r.Term != 0 && r.Term != h.Term) {
			continue // not held by that node in that term, or already let go
		}
		h.Released, h.Reason, h.ReleasedAt = true, r.Reason, r.At.UTC()
		f.state.Holders[vip] = h
		changed = true
	}
	return &Result{Changed: changed}
}

func (c ClaimVIPs) validate() []spec.Problem {
	v := &validator{}
	if err := spec.ValidateNodeName(c.Node); err != nil {
		v.addf("node", "%v", err)
	}
	if c.Term == 0 {
		v.addf("term", "required")
	}
	v.vipList(c.VIPs)
	return v.problems
}

func (r ReleaseVIPs) validate() []spec.Problem {
	v := &validator{}
	if err := spec.ValidateNodeName(r.Node); err != nil {
		v.addf("node", "%v", err)
	}
	if !validReleaseReason(r.Reason) {
		v.addf("reason", "unknown reason %q", r.Reason)
	}
	v.vipList(r.VIPs)
	return v.problems
}

func (v *validator) vipList(vips []netip.Addr) {
	if len(vips) == 0 {
		v.addf("vips", "required")
	}
	for i, a := range vips {
		if !a.IsValid() || slices.Index(vips, a) != i {
			v.addf("vips", "invalid or repeated address %s", a)
		}
	}
}

// dropHolders forgets the holders of VIPs no longer in spec: the DC has
// let go of them when it applied the spec. The caller holds mu.
func (f *FSM) dropHolders(s spec.Spec) {
	for vip := range f.state.Holders {
		if !slices.ContainsFunc(s.VIPs, func(v spec.VIP) bool { return v.Address == vip }) {
			delete(f.state.Holders, vip)
		}
	}
}
