package director

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftlb/raftlb/fsm"
)

// Only the term's goroutine touches what the term holds: the VIPs, the
// IPVS table, the resources, the term's WaitGroup. Another goroutine that
// needs the live term to act (the cluster beginning a hand-over, an
// operator's fence or confirmation arriving over RPC) sends it a request
// and waits for the answer, as nomad's leader loop is the only place that
// establishes and revokes. The term reads its inbox in every phase that
// can last: while it is established (loop), in the waits of establish
// (pauses between attempts, the takeover wait) and during a hand-over's
// grace in revoke. Every other step is bounded in time, so a request is
// always answered, or the term ends and the request is refused.

// ErrNotDC is the answer to a request that needs the live DC term on a
// node that has none.
var ErrNotDC = errors.New("this node is not the DC")

type requestKind int

const (
	reqHandOver       requestKind = iota // a hand-over begins: stop balancing and the resources, record the release
	reqHandOverFailed                    // the hand-over failed: this node still leads, balance again
	reqFence                             // an operator's raftlb fence
	reqConfirm                           // an operator's raftlb fence confirm
)

var requestNames = [...]string{"hand-over", "hand-over failed", "fence", "fence confirm"}

func (k requestKind) String() string { return requestNames[k] }

// request is one thing asked of the live term.
type request struct {
	kind requestKind
	// node is the fence or confirmation's target, action the fence's
	// override ("" keeps the devices'), from the node the operator
	// asked on.
	node, action, from string
	reply              chan answer
}

// answer is the term's reply: a fencing's history entry, or why not.
type answer struct {
	ev  fsm.FenceEvent
	err error
}

// phase is where in its life the term is; a request is answered by what
// the phase allows.
type phase int

const (
	establishing phase = iota
	established
	revoking
)

// ask delivers r to the live term and waits for its answer. No term (or a
// term that ends before it reads r) is ErrNotDC.
func (d *Director) ask(ctx context.Context, r request) answer {
	t := d.current.Load()
	if t == nil {
		return answer{err: ErrNotDC}
	}
	r.reply = make(chan answer, 1)
	select {
	case t.inbox <- r:
	case <-t.done:
		return answer{err: ErrNotDC}
	case <-ctx.Done():
		return answer{err: ctx.Err()}
	}
	// The term answers every request it reads before it reads another.
	return <-r.reply
}

// serve answers one request on the term's goroutine.
func (t *term) serve(r request) {
	r.reply <- t.answer(r)
}

func (t *term) answer(r request) answer {
	switch r.kind {
	case reqHandOver:
		t.beginHandOver()
		return answer{}
	case reqHandOverFailed:
		t.handOverFailed()
		return answer{}
	case reqFence, reqConfirm:
		if t.phase == revoking {
			return answer{err: fmt.Errorf("%w: its term is ending", ErrNotDC)}
		}
		if r.kind == reqConfirm {
			return t.confirm(r.node, r.from)
		}
		return t.operatorFence(r.node, r.action, r.from)
	}
	return answer{err: fmt.Errorf("unknown request %d", r.kind)}
}

// beginHandOver runs just before this node hands its DC duties over on
// purpose. Balancing of new connections to other nodes stops before the
// successor can be elected, so no instant has two directors forwarding to
// each other (invariant 6); the established connections keep their real
// servers (quiesce), and the VIPs stay, until the successor announces
// them (revokeHandedOver). The
// release is recorded while this node still leads, so the successor may
// claim the VIPs at once, without a fence or a lease wait; the resources
// stop first, because a release is recorded only once nothing runs here
// (a stop that failed means no record: the successor fences this node).
func (t *term) beginHandOver() {
	if t.d.dp == nil || t.handingOver {
		return
	}
	t.handingOver = true
	t.ann.setHandingOver(true)
	t.log.Info("handing over: no new connection goes to another node; established ones keep their real servers, and this node's own service answers new ones, until the successor takes the VIPs")
	if !t.stopResources() {
		t.log.Error("handing over without recording a release: a resource failed to stop here, so the successor fences this node first")
	} else if vips := sortedVIPs(t.held); len(vips) > 0 {
		if _, err := t.d.c.Commit(fsm.CmdReleaseVIPs, fsm.ReleaseVIPs{Node: t.d.c.Name(), Term: t.n, VIPs: vips, Reason: fsm.ReleaseHandOver, At: time.Now()}); err != nil {
			t.log.Error("recording the hand-over's release failed: the successor will treat the VIPs as not let go", "err", err)
		}
	}
	if err := t.quiesce(); err != nil {
		t.log.Error("stopping balancing for the hand-over failed", "err", err)
	}
}

// handOverFailed: the transfer did not happen and this node still leads
// (or is about to learn it does not). Established, it balances again and
// claims back what the hand-over released (resume); a hand-over's grace
// in revoke ends at once.
func (t *term) handOverFailed() {
	if !t.handingOver {
		return
	}
	t.handingOver = false
	t.ann.setHandingOver(false)
	t.log.Warn("hand-over failed: balancing again")
	t.resumeWanted = t.phase == established
}

// resume is what an established term does after a hand-over that failed:
// the hand-over recorded a release, so claim again, start the resources
// it stopped, and balance.
func (t *term) resume() error {
	if err := t.verify(); err != nil {
		return err
	}
	if err := t.commitClaim(sortedVIPs(t.held)); err != nil {
		return err
	}
	t.startResources()
	return t.reconcile()
}

// pause waits d, answering requests meanwhile; false: ctx ended.
func (t *term) pause(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case r := <-t.inbox:
			t.serve(r)
		}
	}
}
