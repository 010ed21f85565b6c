package director

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// The log records who holds each VIP (fsm.Holder): a DC commits its claim
// before it places a VIP on its interface, and a deliberate release when it
// lets go. A new DC that finds a holder that did not let go follows the
// spec's takeover policy before it claims:
//
//   - fence: the holder is fenced first, and the VIP claimed only after the
//     fence succeeded (or an operator confirmed the node is down);
//   - lease: the claim waits until the old holder's lease has certainly
//     run out in its kernel (quorum.Lease.OldHolderGone);
//   - immediate: the VIP is claimed at once; both nodes may answer ARP
//     until the old lease ends.

// takeable reports whether this term may put vip on its interface now,
// and if not, why: who holds it, and until when a lease wait lasts.
func (t *term) takeable(state fsm.State, vip netip.Addr) (ok bool, holder fsm.Holder, until time.Time) {
	h, recorded := state.Holders[vip]
	if !recorded || h.Released || h.Node == t.d.c.Name() {
		return true, h, time.Time{}
	}
	switch state.Spec.Policy.TakeoverPolicy() {
	case spec.TakeoverImmediate:
		return true, h, time.Time{}
	case spec.TakeoverLease:
		until = t.d.cfg.Lease.OldHolderGone(t.lastVerificationBound(h.Node))
		return !time.Now().Before(until), h, until
	}
	return false, h, time.Time{} // fence: only a fence (or a confirmation) releases it
}

// awaitTakeover is the takeover step of establish. A VIP whose holder did
// not let go is taken at once (immediate), waited for here until the old
// lease has certainly ended (lease), or left out until a fencing of the
// holder, started here, succeeds (fence: the term goes on meanwhile, and
// place brings the VIP in when the fence is committed). A release
// committed meanwhile (the old holder came back and said so) ends a wait
// early.
func (t *term) awaitTakeover(ctx context.Context) error {
	changes, cancel := t.d.c.FSM().Subscribe()
	defer cancel()
	t.askContacts(ctx)
	logged := map[string]bool{}
	for {
		state := t.d.c.FSM().State()
		var wait time.Time
		for _, v := range state.Spec.VIPs {
			ok, h, until := t.takeable(state, v.Address)
			key := fmt.Sprintf("%s/%d/%s", h.Node, h.Term, v.Address)
			switch {
			case ok && h.Node != "" && !h.Released && h.Node != t.d.c.Name():
				if !logged[key] {
					t.log.Warn("taking over a VIP its holder did not let go of", "vip", v.Address, "holder", h.Node, "holder_term", h.Term,
						"takeover", state.Spec.Policy.TakeoverPolicy(), "both_may_answer_arp_for_at_most", t.d.cfg.Lease.Duration+t.d.cfg.Lease.WriteWindow())
					logged[key] = true
				}
			case ok:
			case !until.IsZero():
				if !logged[key] {
					t.log.Warn("waiting out the lease of a VIP holder that did not let go before taking the VIP over", "vip", v.Address,
						"holder", h.Node, "holder_term", h.Term, "until", time.Until(until).Round(time.Millisecond))
					logged[key] = true
				}
				if wait.IsZero() || until.After(wait) {
					wait = until
				}
			default:
				if !logged[key] {
					t.log.Warn("fencing the holder of a VIP it did not let go of before taking the VIP over", "vip", v.Address, "holder", h.Node, "holder_term", h.Term)
					logged[key] = true
				}
				t.startFenceFor(h.Node, state.Spec.Policy.TakeoverPolicy())
			}
		}
		if wait.IsZero() {
			return nil
		}
		timer := time.NewTimer(time.Until(wait))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		case <-changes:
			timer.Stop()
		case r := <-t.inbox:
			timer.Stop()
			t.serve(r)
			if t.handingOver {
				return nil // nothing to take over: the duties are being handed on
			}
		}
	}
}

// commitClaim records, before the VIPs go on the interface, that this
// term holds them: a later DC then knows whom to fence or wait out.
func (t *term) commitClaim(vips []netip.Addr) error {
	if len(vips) == 0 {
		return nil
	}
	_, err := t.d.c.Commit(fsm.CmdClaimVIPs, fsm.ClaimVIPs{Node: t.d.c.Name(), Term: t.n, VIPs: vips, At: time.Now()})
	if err != nil {
		return fmt.Errorf("recording the claim of %v: %w", vips, err)
	}
	return nil
}

// releaseOp is the RPC operation on which the DC records a member's
// release of VIPs it held in an earlier term (it lost quorum, or its agent
// restarted): the record lets a later DC claim them without a fence or a
// wait.
const releaseOp = "vip-release"

// serveRelease runs on the DC: a member reports, in its own name only,
// that it let go.
func (d *Director) serveRelease(_ context.Context, from string, body json.RawMessage) (any, error) {
	var r fsm.ReleaseVIPs
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("release request: %w", err)
	}
	if from != "" && r.Node != from {
		return nil, fmt.Errorf("a release is reported by the node that let go: %s may not report for %s", from, r.Node)
	}
	switch r.Reason {
	case fsm.ReleaseQuorumLost, fsm.ReleaseRestart, fsm.ReleaseStopped:
	default:
		return nil, fmt.Errorf("a member reports releases for quorum-lost, restart or stopped, not %q", r.Reason)
	}
	if _, err := d.c.Commit(fsm.CmdReleaseVIPs, r); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// releaseReport is what a node that is not DC has let go of and has yet
// to tell the DC, so the log says so.
type releaseReport struct {
	mu      sync.Mutex
	pending *fsm.ReleaseVIPs
}

func (r *releaseReport) set(rel fsm.ReleaseVIPs) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = &rel
}

func (r *releaseReport) take() *fsm.ReleaseVIPs {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

func (r *releaseReport) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = nil
}

// reportRelease tells the DC what this node let go of, if anything is
// pending; it keeps it for the next audit when no DC answers.
func (d *Director) reportRelease(ctx context.Context) {
	rel := d.released.take()
	if rel == nil {
		return
	}
	state := d.c.FSM().State()
	var stillMine []netip.Addr
	for _, vip := range rel.VIPs {
		if h, ok := state.Holders[vip]; ok && h.Node == rel.Node && !h.Released && (rel.Term == 0 || h.Term == rel.Term) {
			stillMine = append(stillMine, vip)
		}
	}
	if len(stillMine) == 0 {
		return // recorded already, or someone else holds them now
	}
	rel.VIPs = stillMine
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ack struct{}
	if err := d.c.CallDC(cctx, releaseOp, rel, &ack); err != nil {
		d.released.set(*rel)
		if !errors.Is(err, context.Canceled) {
			d.logger.Debug("telling the DC that this node let go of its VIPs failed; trying again", "err", err)
		}
		return
	}
	d.logger.Info("the DC recorded that this node let go of its VIPs", "vips", rel.VIPs, "reason", rel.Reason)
}

// contactTimeout bounds the question a new DC asks the voters about a
// holder's last contact; past it the election's time bounds the wait.
const contactTimeout = 500 * time.Millisecond

// askContacts learns, for every holder under takeover lease that did not
// let go, when its last successful verification was sent at the latest
// (cluster.Node.ContactBound): a majority of the other voters' last
// contact with it. On a cable pull that is the pull itself, so a lease
// shorter than failure detection has run out by the election.
func (t *term) askContacts(ctx context.Context) {
	state := t.d.c.FSM().State()
	if state.Spec.Policy.TakeoverPolicy() != spec.TakeoverLease {
		return
	}
	for _, v := range state.Spec.VIPs {
		h, ok := state.Holders[v.Address]
		if !ok || h.Released || h.Node == t.d.c.Name() {
			continue
		}
		if _, asked := t.contacts[h.Node]; asked {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, contactTimeout)
		bound, ok := t.d.c.ContactBound(qctx, h.Node)
		cancel()
		if !ok || bound.After(t.elected) {
			bound = t.elected
		}
		if t.contacts == nil {
			t.contacts = map[string]time.Time{}
		}
		t.contacts[h.Node] = bound
		t.log.Info("the holder's last verification, bounded by the voters' last contact with it", "holder", h.Node,
			"before_election", t.elected.Sub(bound).Round(time.Millisecond), "from_majority", ok)
	}
}

// lastVerificationBound is when holder's last successful verification was
// sent at the latest: what askContacts learned, else the election.
func (t *term) lastVerificationBound(holder string) time.Time {
	if b, ok := t.contacts[holder]; ok {
		return b
	}
	return t.elected
}
