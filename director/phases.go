package director

import (
	"time"
)

// Where a takeover's time goes, as the new DC saw it, phase by phase: each
// is the time from the previous mark to its own. The first two come from
// the cluster (the last leader this node followed), the others from the
// term's first way to its VIPs:
//
//   - detection: the last contact with the old DC → this node stopped
//     following it (Raft's heartbeat timeout; a graceful hand-over's
//     leadership transfer makes it short);
//   - election: → this node was elected;
//   - barrier: → its FSM held everything committed before the term;
//   - takeover: → a recorded holder that did not let go was fenced,
//     waited out or taken (takeover.go);
//   - verify: → leadership verified in the term for the claim;
//   - ipvs: → the IPVS table programmed;
//   - commit: → the claim of the VIPs committed;
//   - place: → the VIPs on their interface, their answers granted;
//   - announce: → the first gratuitous ARP sent.
//
// The client's own switch (its ARP cache, its retransmission) comes after
// and is measured by the lab. Each phase is logged once per term and
// observed by the metrics (raftlb_takeover_phase_seconds).
const (
	phaseDetection = "detection"
	phaseElection  = "election"
	phaseBarrier   = "barrier"
	phaseTakeover  = "takeover"
	phaseVerify    = "verify"
	phaseIPVS      = "ipvs"
	phaseCommit    = "commit"
	phasePlace     = "place"
	phaseAnnounce  = "announce"
	// phaseStart marks where the first phase starts: the old DC's last
	// contact, or the election when that is not known.
	phaseStart = "start"
)

// phaseOrder is the phases in the order they happen.
var phaseOrder = []string{phaseDetection, phaseElection, phaseBarrier, phaseTakeover, phaseVerify, phaseIPVS, phaseCommit, phasePlace, phaseAnnounce}

// phases records the marks of one term's way to its first announcement.
// Only the term's goroutine touches it.
type phases struct {
	at   map[string]time.Time
	done bool
}

// mark records that phase ended now, the first time only: a claim retried
// or a VIP placed later in the term does not move it.
func (p *phases) mark(phase string) {
	if p.done {
		return
	}
	if p.at == nil {
		p.at = map[string]time.Time{}
	}
	if _, ok := p.at[phase]; !ok {
		p.at[phase] = time.Now()
	}
}

// durations is each phase's length, in order, for the phases whose start
// and end are both known; total is from the first known start to the last
// end.
func (p *phases) durations() (out []phaseTime, total time.Duration) {
	var first, prev time.Time
	for _, name := range append([]string{phaseStart}, phaseOrder...) {
		at, ok := p.at[name]
		if !ok {
			continue
		}
		if !prev.IsZero() && !at.Before(prev) {
			out = append(out, phaseTime{name, at.Sub(prev)})
		}
		if first.IsZero() {
			first = at
		}
		prev = at
	}
	if !first.IsZero() {
		total = prev.Sub(first)
	}
	return out, total
}

type phaseTime struct {
	name string
	d    time.Duration
}

// startPhases sets the marks the cluster knows at the term's start: the
// old DC's last contact, when this node stopped following it, and the
// election. A node that was not following a leader shortly before this
// term (a first election, a restart) starts at the election, without a
// detection or election phase.
func (t *term) startPhases() {
	t.phases = phases{at: map[string]time.Time{phaseStart: t.elected}}
	lost := t.d.c.LastLeaderLost()
	if lost.Leader != "" && lost.Leader != t.d.c.Name() && !lost.At.IsZero() && !lost.At.After(t.elected) && t.elected.Sub(lost.At) < time.Minute {
		t.phases.at[phaseStart] = lost.LastContact
		t.phases.at[phaseDetection] = lost.At
		t.phases.at[phaseElection] = t.elected
	}
}

// reportPhases logs and observes a term's phases once its first
// announcement has gone out.
func (t *term) reportPhases() {
	if t.phases.done {
		return
	}
	t.phases.mark(phaseAnnounce)
	t.phases.done = true
	list, total := t.phases.durations()
	args := []any{"total", total.Round(time.Millisecond)}
	for _, p := range list {
		args = append(args, p.name, p.d.Round(100*time.Microsecond))
		if m := t.d.cfg.Metrics; m != nil {
			m.TakeoverPhase(p.name, p.d)
		}
	}
	t.log.Info("takeover phases: from the old DC's last sign of life (or this term's start) to the first announcement", args...)
}
