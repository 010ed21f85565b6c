package director

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/fsm"
	rspec "github.com/raftlb/raftlb/spec"
)

// Fencer runs the spec's fence devices against a node; fencing.Runner is
// the agent's.
type Fencer interface {
	Fence(ctx context.Context, f rspec.Fencing, node, action string) fencing.Outcome
}

// Fencing is done by the DC only, right after it verified its leadership
// in its term, so a node cut off from the majority can never shoot the
// majority. The intent is committed before the agent runs, the result
// after: a DC that dies in between leaves an intent without a result in
// the history, and its successor fences again.

// The RPC operations an operator's fencing commands travel on to the DC.
const (
	fenceOp        = "fence"
	fenceConfirmOp = "fence-confirm"
)

// FenceRequest asks the DC to fence Node (raftlb fence NODE).
type FenceRequest struct {
	Node string `json:"node"`
	// Action overrides the devices' action: off or reboot; empty keeps
	// theirs.
	Action string `json:"action,omitempty"`
}

// ConfirmRequest is an operator's word that Node is down (raftlb fence
// confirm NODE).
type ConfirmRequest struct {
	Node string `json:"node"`
}

// fenceBackoff is the pause after a takeover's fencing failed, doubling
// up to fenceBackoffMax: the fence is retried until it succeeds or an
// operator confirms the node is down.
const (
	fenceBackoff    = 2 * time.Second
	fenceBackoffMax = time.Minute
)

// startFenceFor makes sure a fencing of node is under way while a VIP it
// holds waits for its takeover (policy fence; the other policies need
// none). The fencing runs on its own goroutine, so the term goes on
// balancing what it holds; its success is committed, and the commit
// brings the waiting VIP in (evSpec).
func (t *term) startFenceFor(node, policy string) {
	if policy != rspec.TakeoverFence || t.ctx == nil {
		return
	}
	t.fenceMu.Lock()
	defer t.fenceMu.Unlock()
	if t.fencing[node] {
		return
	}
	if t.fencing == nil {
		t.fencing = map[string]bool{}
	}
	t.fencing[node] = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			t.fenceMu.Lock()
			delete(t.fencing, node)
			t.fenceMu.Unlock()
		}()
		t.fenceUntilDone(t.ctx, node)
	}()
}

// needsFence reports whether node holds, by the log, a VIP of the spec it
// has not let go of, and the spec's takeover policy is fence.
func needsFence(state fsm.State, node string) bool {
	if state.Spec.Policy.TakeoverPolicy() != rspec.TakeoverFence {
		return false
	}
	for _, v := range state.Spec.VIPs {
		if h, ok := state.Holders[v.Address]; ok && h.Node == node && !h.Released {
			return true
		}
	}
	return false
}

// fenceUntilDone fences node until a fencing succeeds, an operator
// confirms the node is down, or the node lets go by itself (it came back
// and said so): a failed fence is an error and means no takeover, so it
// is tried again with a growing pause.
func (t *term) fenceUntilDone(ctx context.Context, node string) {
	changes, cancel := t.d.c.FSM().Subscribe()
	defer cancel()
	pause := fenceBackoff
	for attempt := 1; ; attempt++ {
		if !needsFence(t.d.c.FSM().State(), node) {
			return
		}
		ev, err := t.fence(ctx, node, "", fmt.Sprintf("it holds VIPs it did not let go of, and the takeover policy is fence (attempt %d)", attempt))
		if ctx.Err() != nil {
			return
		}
		if err == nil && ev.Result == fsm.FenceSuccess {
			t.log.Info("fenced: its VIPs may be taken over", "node", node, "level", ev.Level, "device", ev.Device, "duration", time.Duration(ev.DurationMS)*time.Millisecond)
			return
		}
		t.d.fenceFailures.Add(1)
		t.log.Error("fencing failed: its VIPs are not taken over until a fence succeeds or an operator runs `raftlb fence confirm`",
			"node", node, "attempt", attempt, "err", errors.Join(err, eventErr(ev)), "next_attempt_in", pause)
		timer := time.NewTimer(pause)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
				break wait
			case <-changes:
				if !needsFence(t.d.c.FSM().State(), node) {
					timer.Stop()
					return
				}
			}
		}
		pause = min(2*pause, fenceBackoffMax)
	}
}

// lastLineOf is the last line of an agent's output that says something.
func lastLineOf(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func eventErr(ev fsm.FenceEvent) error {
	if ev.Result == fsm.FenceFailed {
		return fmt.Errorf("%s", lastLineOf(ev.Output))
	}
	return nil
}

// fence runs one fencing of node: verify leadership in this term, commit
// the intent, run the devices level by level, commit the result. It
// returns the history's entry. It may run on any goroutine.
func (t *term) fence(ctx context.Context, node, action, reason string) (fsm.FenceEvent, error) {
	f, err := t.beginFence(node, action, reason)
	if err != nil {
		return fsm.FenceEvent{}, err
	}
	return f.run(ctx)
}

// aFencing is one fencing whose intent is committed.
type aFencing struct {
	t      *term
	id     uint64
	node   string
	action string // the override, or ""
	spec   rspec.Fencing
}

// beginFence verifies leadership in this term and commits the intent.
func (t *term) beginFence(node, action, reason string) (*aFencing, error) {
	if t.d.cfg.Fencer == nil {
		return nil, errors.New("this agent has no fence runner")
	}
	if err := t.d.c.VerifyLeader(t.n); err != nil {
		return nil, fmt.Errorf("only a DC that has just verified its leadership fences: %w", err)
	}
	spec := t.d.c.FSM().State().Spec.Fencing
	act := action
	if act == "" {
		act = rspec.DefaultFenceAction
		if levels := spec.LevelsFor(node); len(levels) > 0 && len(levels[0]) > 0 {
			act = levels[0][0].Action
		}
	}
	id, err := t.d.c.Commit(fsm.CmdFenceStart, fsm.FenceStart{Target: node, Action: act, By: t.d.c.Name(), Term: t.n, Reason: reason, At: time.Now()})
	if err != nil {
		return nil, fmt.Errorf("recording the intent to fence %s: %w", node, err)
	}
	t.log.Warn("fencing a node", "node", node, "action", act, "reason", reason, "id", id)
	t.event(events.Event{Type: events.FenceStarted, Target: node, Message: fmt.Sprintf("fencing (%s): %s", act, reason)})
	return &aFencing{t: t, id: id, node: node, action: action, spec: spec}, nil
}

// run runs the devices and commits the result.
func (f *aFencing) run(ctx context.Context) (fsm.FenceEvent, error) {
	t := f.t
	out := t.d.cfg.Fencer.Fence(ctx, f.spec, f.node, f.action)
	done := fsm.FenceDone{
		ID: f.id, Result: fsm.FenceFailed, Level: out.Level, Device: out.Device, Attempts: out.Attempts, ExitCode: out.ExitCode,
		DurationMS: out.Duration.Milliseconds(), Output: out.Output, At: time.Now(),
	}
	if out.Success {
		done.Result = fsm.FenceSuccess
	} else if out.Err != nil {
		done.Output = boundOutput(strings.TrimLeft(done.Output+"\n"+out.Err.Error(), "\n"))
	}
	if _, err := t.d.c.Commit(fsm.CmdFenceDone, done); err != nil {
		// The successor finds an intent without a result and fences again.
		return fsm.FenceEvent{}, fmt.Errorf("recording the result of fencing %s (%s): %w", f.node, done.Result, err)
	}
	ev, _ := fenceEvent(t.d.c.FSM().State(), f.id)
	if out.Success {
		t.event(events.Event{Type: events.FenceSucceeded, Target: f.node, Message: fmt.Sprintf("fenced by device %s (level %d)", out.Device, out.Level)})
	} else {
		t.event(events.Event{Type: events.FenceFailed, Target: f.node, Message: "fencing failed", Error: errorText(out.Err)})
	}
	return ev, nil
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// boundOutput keeps the end of s within the history's bound.
func boundOutput(s string) string {
	if len(s) <= rspec.MaxFenceOutput {
		return s
	}
	b := []byte(s[len(s)-rspec.MaxFenceOutput:])
	for len(b) > 0 && b[0]&0xC0 == 0x80 {
		b = b[1:] // do not start inside a UTF-8 sequence
	}
	return string(b)
}

func fenceEvent(state fsm.State, id uint64) (fsm.FenceEvent, bool) {
	for _, e := range state.FenceHistory {
		if e.ID == id {
			return e, true
		}
	}
	return fsm.FenceEvent{}, false
}

// serveFence runs on the DC: an operator asks for a node to be fenced.
// The request is checked here and acted on by the live term (operatorFence).
func (d *Director) serveFence(ctx context.Context, from string, body json.RawMessage) (any, error) {
	var r FenceRequest
	if err := decodeStrict(body, &r); err != nil {
		return nil, fmt.Errorf("fence request: %w", err)
	}
	if err := rspec.ValidateNodeName(r.Node); err != nil {
		return nil, fmt.Errorf("fence request: %w", err)
	}
	switch r.Action {
	case "", rspec.FenceOff, rspec.FenceReboot:
	default:
		return nil, fmt.Errorf("fence request: unknown action %q (want off or reboot)", r.Action)
	}
	a := d.ask(ctx, request{kind: reqFence, node: r.Node, action: r.Action, from: from})
	if a.err != nil {
		return nil, a.err
	}
	return a.ev, nil
}

// operatorFence runs on the term's goroutine: the intent is committed
// before the answer, which carries its ID; the agent runs on, on a
// goroutine of the term, and the result lands in the history.
func (t *term) operatorFence(node, action, from string) answer {
	if node == t.d.c.Name() {
		return answer{err: fmt.Errorf("%s is the DC and does not fence itself: hand leadership over (raftlb leave, or stop it) and fence it from the new DC", node)}
	}
	if len(t.d.c.FSM().State().Spec.Fencing.LevelsFor(node)) == 0 {
		return answer{err: fmt.Errorf("no fence device of the spec fences %s", node)}
	}
	f, err := t.beginFence(node, action, "requested by an operator on "+from)
	if err != nil {
		return answer{err: err}
	}
	// The answer is the intent, read before the agent runs and records
	// its result.
	ev, _ := fenceEvent(t.d.c.FSM().State(), f.id)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		ev, err := f.run(t.ctx)
		switch {
		case err != nil:
			t.log.Error("an operator's fencing failed", "node", node, "err", err)
		case ev.Result != fsm.FenceSuccess:
			t.log.Error("an operator's fencing failed", "node", node, "err", eventErr(ev))
		}
	}()
	return answer{ev: ev}
}

// serveConfirm runs on the DC: an operator says a node is down. The live
// term records it (confirm).
func (d *Director) serveConfirm(ctx context.Context, from string, body json.RawMessage) (any, error) {
	var r ConfirmRequest
	if err := decodeStrict(body, &r); err != nil {
		return nil, fmt.Errorf("confirm request: %w", err)
	}
	if err := rspec.ValidateNodeName(r.Node); err != nil {
		return nil, fmt.Errorf("confirm request: %w", err)
	}
	a := d.ask(ctx, request{kind: reqConfirm, node: r.Node, from: from})
	if a.err != nil {
		return nil, a.err
	}
	return a.ev, nil
}

// confirm runs on the term's goroutine: the confirmation is recorded with
// the time and the node it was given on, and every VIP the node held
// counts as released (which wakes the term to take them over).
func (t *term) confirm(node, from string) answer {
	if node == t.d.c.Name() {
		return answer{err: fmt.Errorf("%s is the DC, and up", node)}
	}
	if t.d.c.OnlineNodes()[node] {
		return answer{err: fmt.Errorf("%s answers gossip: it is not down (stop its agent, or power it off, before confirming)", node)}
	}
	id, err := t.d.c.Commit(fsm.CmdFenceConfirm, fsm.FenceConfirm{Target: node, By: from, At: time.Now()})
	if err != nil {
		return answer{err: fmt.Errorf("recording the confirmation: %w", err)}
	}
	t.log.Warn("an operator confirmed a node is down: its VIPs may be taken over", "node", node, "confirmed_on", from)
	ev, _ := fenceEvent(t.d.c.FSM().State(), id)
	return answer{ev: ev}
}

func decodeStrict(body json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Fence asks the DC, wherever it is, to fence node (raftlb fence). It
// answers once the intent is committed; the result lands in the history.
func (d *Director) Fence(ctx context.Context, node, action string) (fsm.FenceEvent, error) {
	var ev fsm.FenceEvent
	if err := d.c.CallDC(ctx, fenceOp, FenceRequest{Node: node, Action: action}, &ev); err != nil {
		return fsm.FenceEvent{}, fmt.Errorf("fence %s: %w", node, err)
	}
	return ev, nil
}

// Confirm tells the DC that node is down (raftlb fence confirm): the
// confirmation is recorded as given on this node.
func (d *Director) Confirm(ctx context.Context, node string) (fsm.FenceEvent, error) {
	var ev fsm.FenceEvent
	if err := d.c.CallDC(ctx, fenceConfirmOp, ConfirmRequest{Node: node}, &ev); err != nil {
		return fsm.FenceEvent{}, fmt.Errorf("confirm %s is down: %w", node, err)
	}
	return ev, nil
}

// FenceHistory is the replicated fencing history, oldest first.
func (d *Director) FenceHistory() []fsm.FenceEvent { return d.c.FSM().State().FenceHistory }

// FenceFailures counts the takeover fencings that failed since start.
func (d *Director) FenceFailures() uint64 { return d.fenceFailures.Load() }
