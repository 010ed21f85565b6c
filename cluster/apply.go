package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/fsm"
	rspec "github.com/raftlb/raftlb/spec"
)

// ApplyResult is the outcome of a committed spec change.
type ApplyResult struct {
	Version uint64 // the spec version now in force
	Changed bool   // false when the submitted spec equalled the current one
}

// applyTimeout bounds how long one Raft apply may wait to commit.
const applyTimeout = 5 * time.Second

// ApplySpec submits spec from any node: the DC applies it, other nodes
// forward it to the DC over the mutual-TLS RPC channel. An invalid spec
// comes back as *spec.ValidationError and changes nothing. expectVersion,
// when non-zero, makes the change conditional on the current version.
func (n *Node) ApplySpec(ctx context.Context, spec rspec.Spec, expectVersion uint64) (ApplyResult, error) {
	// Validate here too, so a bad spec is refused without a round trip.
	if err := spec.ValidateNew(); err != nil {
		return ApplyResult{}, err
	}
	for {
		if n.IsLeader() {
			res, err := n.applySpecLocal(ctx, spec, expectVersion)
			if !lostLeadership(err) {
				return res, err
			}
		} else {
			resp, err := n.forward(ctx, rpcRequest{Op: opApply, Spec: &spec, ExpectVersion: expectVersion})
			if err != nil {
				return ApplyResult{}, err
			}
			return n.wireToResult(resp)
		}
		select {
		case <-ctx.Done():
			return ApplyResult{}, ErrNoDC
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) applySpecLocal(ctx context.Context, spec rspec.Spec, expectVersion uint64) (ApplyResult, error) {
	// A forwarded spec was checked where it was applied; by its release.
	if err := spec.ValidateNew(); err != nil {
		return ApplyResult{}, err
	}
	if check := n.specCheck(); check != nil {
		if problems := check(ctx, spec); len(problems) > 0 {
			return ApplyResult{}, &rspec.ValidationError{Problems: problems}
		}
	}
	cmd, err := fsm.EncodeCommand(fsm.CmdSetSpec, fsm.SetSpec{Spec: spec, ExpectVersion: expectVersion})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("encode spec: %w", err)
	}
	if err := n.checkSchema(cmd); err != nil {
		return ApplyResult{}, err
	}
	f := n.raft.Apply(cmd, applyTimeout)
	if err := n.await(f); err != nil {
		return ApplyResult{}, fmt.Errorf("commit spec: %w", err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return ApplyResult{}, fmt.Errorf("commit spec: unexpected FSM response %T", f.Response())
	}
	if res.Err != nil {
		var ce *fsm.ConflictError
		if errors.As(res.Err, &ce) {
			return ApplyResult{}, fmt.Errorf("%w: %w", ErrConflict, res.Err)
		}
		return ApplyResult{}, res.Err
	}
	return ApplyResult{Version: res.Version, Changed: res.Changed}, nil
}

// SpecCheck is asked on the DC before a spec is committed: what the
// members lack to carry it (the director asks each for its interfaces).
type SpecCheck func(ctx context.Context, spec rspec.Spec) []rspec.Problem

// SetSpecCheck registers the check.
func (n *Node) SetSpecCheck(c SpecCheck) {
	n.handlersMu.Lock()
	defer n.handlersMu.Unlock()
	n.checkSpec = c
}

func (n *Node) specCheck() SpecCheck {
	n.handlersMu.Lock()
	defer n.handlersMu.Unlock()
	return n.checkSpec
}

// applyLocal commits an internal command on the DC and returns its log
// index.
func (n *Node) applyLocal(cmd []byte) (uint64, error) { return n.applyExcept(cmd, "") }

// applyExcept is applyLocal for an entry that removes node except, which
// need not read it.
func (n *Node) applyExcept(cmd []byte, except string) (uint64, error) {
	if err := n.checkSchemaExcept(cmd, except); err != nil {
		return 0, err
	}
	f := n.raft.Apply(cmd, applyTimeout)
	if err := n.await(f); err != nil {
		return 0, err
	}
	if res, ok := f.Response().(*fsm.Result); ok && res.Err != nil {
		return f.Index(), res.Err
	}
	return f.Index(), nil
}

// Commit encodes a command of another package's (the DC's VIP holders, its
// fencing history) and commits it; only the DC can. A domain error of the
// FSM comes back as the error. The log index names the entry (a fencing's
// intent is known by it).
func (n *Node) Commit(t fsm.CommandType, payload any) (uint64, error) {
	cmd, err := fsm.EncodeCommand(t, payload)
	if err != nil {
		return 0, err
	}
	index, err := n.applyLocal(cmd)
	if err != nil {
		return 0, &CommitError{Type: t, Err: err}
	}
	return index, nil
}

// CommitError is Commit's failure: which command, and why.
type CommitError struct {
	Type fsm.CommandType
	Err  error
}

func (e *CommitError) Error() string { return fmt.Sprintf("commit %s: %v", e.Type, e.Err) }
func (e *CommitError) Unwrap() error { return e.Err }

// errNodeStopped: the node stopped while a commit was awaited.
var errNodeStopped = errors.New("the node stopped before the entry was applied")

// await waits for an Apply future, or for this node to stop. hashicorp/raft
// never answers the future of an entry that was committed but not yet
// handed to the FSM when it shuts down (an Apply future, unlike others,
// does not watch the shutdown), so a caller could wait forever for a node
// that is gone; the node's context ends before Raft shuts down.
func (n *Node) await(f raft.ApplyFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		return errNodeStopped
	}
}
