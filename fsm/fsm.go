package fsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/spec"
)

// FSM is raftlb's raft.FSM. Raft calls Apply, Snapshot and Restore; any
// goroutine may call State, Spec and Subscribe. Create it with New.
type FSM struct {
	// mu guards state. Only Apply and Restore write, and Raft never runs
	// them concurrently; the lock is for the readers.
	mu    sync.RWMutex
	state State

	watchMu  sync.Mutex
	watchers map[chan struct{}]struct{}

	schema   int // the schema this node reads
	logger   *slog.Logger
	skipped  atomic.Uint64
	restores atomic.Uint64
}

// Options configure an FSM.
type Options struct {
	// Schema is the schema version this node reads; 0 means Schema. Tests
	// set it lower to play an older release.
	Schema int
	// Logger gets the entries this node skips; nil discards.
	Logger *slog.Logger
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM holding the empty spec (version 0, no-quorum policy
// stop) and no nodes. Applying an empty services file to it is a no-op.
func New() *FSM { return NewWith(Options{}) }

// NewWith is New with options.
func NewWith(o Options) *FSM {
	if o.Schema == 0 {
		o.Schema = Schema
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &FSM{
		state:    State{Spec: spec.Spec{Policy: spec.Policy{NoQuorum: spec.DefaultNoQuorum, Takeover: spec.DefaultTakeover}}, Nodes: make(map[string]Node), Holders: make(map[netip.Addr]Holder)},
		watchers: make(map[chan struct{}]struct{}),
		schema:   o.Schema,
		logger:   o.Logger,
	}
}

// Schema is the schema version this node reads.
func (f *FSM) Schema() int { return f.schema }

// Skipped counts the entries this node skipped: flagged IgnoreUnknownType
// and beyond what its release reads.
func (f *FSM) Skipped() uint64 { return f.skipped.Load() }

// Restores counts the snapshots this FSM restored: at start from its own,
// and from a leader's InstallSnapshot.
func (f *FSM) Restores() uint64 { return f.restores.Load() }

func (f *FSM) skip(l *raft.Log, what string) {
	f.skipped.Add(1)
	f.logger.Warn("skipped a log entry this release cannot read; its proposer marked it safe to skip", "index", l.Index, "term", l.Term, "entry", what, "schema", f.schema, "skipped", f.skipped.Load())
}

// Result is what Apply returns for every known command; the proposer reads
// it from ApplyFuture.Response.
type Result struct {
	// Version is the spec version after the command, changed or not.
	Version uint64
	// Changed reports whether the state changed (and watchers were told).
	Changed bool
	// Err is a domain error: a *ValidationError or a *ConflictError. The
	// entry is still committed; it simply changed nothing.
	Err error
}

// ConflictError refuses a SetSpec whose ExpectVersion is not the current
// version: someone else changed the spec since the proposer read it.
type ConflictError struct {
	Expected uint64
	Current  uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("spec version conflict: expected version %d, current version is %d", e.Expected, e.Current)
}

// Apply applies one committed entry. An entry it cannot decode panics, which
// stops this node: skipping it would leave the node silently different from
// the others. The only exception is an unknown command type that its
// proposer flagged with IgnoreUnknownType; Apply returns nil for it.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		var unknown *UnknownCommandError
		if errors.As(err, &unknown) && unknown.IgnoreUnknown {
			f.skip(l, unknown.Error())
			return nil
		}
		panic(fmt.Errorf("fsm: cannot apply log entry %d (term %d): %w", l.Index, l.Term, err))
	}
	if need := cmd.Schema(); need > f.schema {
		// What this release would meet as an unknown type or field.
		if cmd.IgnoreUnknown {
			f.skip(l, fmt.Sprintf("%s of schema %d", cmd.Type, need))
			return nil
		}
		panic(fmt.Errorf("fsm: cannot apply log entry %d (term %d): %s needs schema %d, this release reads %d: upgrade raftlb on this node", l.Index, l.Term, cmd.Type, need, f.schema))
	}
	var res *Result
	switch cmd.Type {
	case CmdSetSpec:
		res = f.setSpec(*cmd.SetSpec)
	case CmdRegisterNode:
		res = f.registerNode(*cmd.Node)
	case CmdDeregisterNode:
		res = f.deregisterNode(*cmd.Deregister)
	case CmdClaimVIPs:
		res = f.claimVIPs(*cmd.ClaimVIPs)
	case CmdReleaseVIPs:
		res = f.releaseVIPs(*cmd.ReleaseVIPs)
	case CmdFenceStart:
		res = f.fenceStart(l.Index, *cmd.FenceStart)
	case CmdFenceDone:
		res = f.fenceDone(*cmd.FenceDone)
	case CmdFenceConfirm:
		res = f.fenceConfirm(l.Index, *cmd.FenceConfirm)
	case CmdDeviceCheck:
		res = f.deviceCheck(*cmd.DeviceCheck)
	case CmdNodeStandby:
		res = f.nodeStandby(*cmd.Standby)
	case CmdServerDisable:
		res = f.serverDisable(*cmd.Disable)
	default:
		// DecodeCommand returns an error for every other type.
		panic(fmt.Errorf("fsm: log entry %d: decoded command %s has no handler", l.Index, cmd.Type))
	}
	if res.Changed && !cmd.IgnoreUnknown {
		// Older nodes skip what is marked so; a node that reads less
		// than any other entry cannot replay this log.
		f.raiseSchema(cmd.Schema())
		f.notify()
	}
	return res
}

// raiseSchema records that the log now uses schema v.
func (f *FSM) raiseSchema(v int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Schema = max(f.state.Schema, v)
}

func (f *FSM) setSpec(c SetSpec) *Result {
	s := c.Spec.Normalized()
	// Proposers validate too; this is defence in depth, so a bad spec from
	// any path still changes nothing.
	verr := s.Validate()

	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.state.Spec.Version
	if verr == nil {
		verr = s.ValidateMembers(f.state.isNode)
	}
	switch {
	case verr != nil:
		return &Result{Version: cur, Err: verr}
	case c.ExpectVersion != 0 && c.ExpectVersion != cur:
		return &Result{Version: cur, Err: &ConflictError{Expected: c.ExpectVersion, Current: cur}}
	case spec.SameConfig(f.state.Spec, s):
		// Re-applying the same file must not make the director reconcile.
		return &Result{Version: cur}
	}
	s.Version = cur + 1
	f.state.Spec = s
	f.dropHolders(s)
	f.dropDeviceChecks(s)
	return &Result{Version: s.Version, Changed: true}
}

func (f *FSM) registerNode(n Node) *Result {
	verr := n.Validate()

	f.mu.Lock()
	defer f.mu.Unlock()
	res := &Result{Version: f.state.Spec.Version}
	if verr != nil {
		res.Err = verr
		return res
	}
	if old, ok := f.state.Nodes[n.Name]; ok && sameNode(old, n) {
		// A retried join: keep the entry, and its first JoinedAt.
		return res
	}
	if f.state.Nodes == nil {
		f.state.Nodes = make(map[string]Node)
	}
	f.state.Nodes[n.Name] = n
	res.Changed = true
	return res
}

func (f *FSM) deregisterNode(d DeregisterNode) *Result {
	var problems []spec.Problem
	if d.Name == "" {
		problems = append(problems, spec.Problem{Path: "name", Message: "required"})
	}
	if d.Revoke != nil {
		problems = append(problems, d.Revoke.validate()...)
		if d.Revoke.Node != d.Name {
			problems = append(problems, spec.Problem{Path: "revoke.node", Message: fmt.Sprintf("revokes %q while removing %q", d.Revoke.Node, d.Name)})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &Result{Version: f.state.Spec.Version}
	if len(problems) > 0 {
		res.Err = &spec.ValidationError{Problems: problems}
		return res
	}
	if _, ok := f.state.Nodes[d.Name]; ok {
		delete(f.state.Nodes, d.Name)
		res.Changed = true
	}
	if d.Revoke != nil {
		f.revoke(*d.Revoke)
		res.Changed = true
	}
	return res
}

// State returns a deep copy of the replicated state.
func (f *FSM) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// WaitForSpec returns once the spec has version v or later, or ctx's error.
func (f *FSM) WaitForSpec(ctx context.Context, v uint64) error {
	ch, cancel := f.Subscribe()
	defer cancel()
	for f.Spec().Version < v {
		select {
		case <-ctx.Done():
			return fmt.Errorf("spec version %d not applied here yet (this node has %d): %w", v, f.Spec().Version, ctx.Err())
		case <-ch:
		}
	}
	return nil
}

// Spec returns a deep copy of the current spec.
func (f *FSM) Spec() spec.Spec {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Spec.Clone()
}

// Subscribe returns a channel that receives a value after the state changes
// (an Apply that changed something, or a Restore), and a cancel function
// that closes it. Signals coalesce: the channel holds at most one, and a
// watcher that is busy gets one signal for any number of changes, so it
// must read State afresh each time. Apply never blocks on a watcher.
func (f *FSM) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.watchMu.Lock()
	if f.watchers == nil {
		f.watchers = make(map[chan struct{}]struct{})
	}
	f.watchers[ch] = struct{}{}
	f.watchMu.Unlock()

	var once sync.Once
	cancel := func() {
		once.Do(func() {
			f.watchMu.Lock()
			defer f.watchMu.Unlock()
			delete(f.watchers, ch)
			close(ch)
		})
	}
	return ch, cancel
}

func (f *FSM) notify() {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	for ch := range f.watchers {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending; it covers this change too
		}
	}
}
