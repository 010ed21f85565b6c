package api

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// FakeAgent is an Agent for tests of the admin API and of its clients: it
// answers what its fields say and records every call.
type FakeAgent struct {
	mu sync.Mutex

	View status.Status // what Status returns
	// Current is what Spec returns; SpecWaitErr what WaitForSpec does.
	Current     spec.Spec
	SpecWaitErr error
	// NoDC makes Leader answer that no DC is known.
	NoDC bool
	// Nodes is the registry State returns (with Current as its spec).
	Nodes map[string]fsm.Node
	// Standbys and Disables record SetStandby and SetServerDisabled.
	Standbys []StandbyRequest
	Disables []fsm.ServerDisable

	// Apply, when set, answers ApplySpec; otherwise ApplyResult and
	// ApplyErr do.
	Apply       func(spec spec.Spec, expectVersion uint64, calls int) (cluster.ApplyResult, error)
	ApplyResult cluster.ApplyResult
	ApplyErr    error

	JoinContacted int
	JoinErr       error
	LeaveErr      error
	// AdminErr answers RemoveNode and MoveDC; Removed and Moved record
	// them.
	AdminErr error
	Removed  []NodeRequest
	Moved    []string
	// MoveStalls makes a MoveDC succeed without the successor ever taking
	// over; otherwise the successor becomes the DC that Leader names and
	// holds every VIP of Current in State's holders.
	MoveStalls bool
	holders    map[netip.Addr]fsm.Holder

	// FenceResult is what every fencing comes to in the history (success
	// when empty); FenceErr refuses fence and confirm requests.
	FenceResult string
	FenceErr    error

	fences  []fsm.FenceEvent
	applied []AppliedSpec
	joined  [][]string
	leaves  int
}

// AppliedSpec is one ApplySpec call.
type AppliedSpec struct {
	Spec   spec.Spec
	Expect uint64
}

// Name implements Agent.
func (a *FakeAgent) Name() string { return a.Status().Node }

// Status implements Agent.
func (a *FakeAgent) Status() status.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.View
}

// State implements Agent.
func (a *FakeAgent) State() fsm.State {
	spec := a.Spec()
	a.mu.Lock()
	defer a.mu.Unlock()
	return fsm.State{Spec: spec, Nodes: a.Nodes, Holders: maps.Clone(a.holders)}
}

// SetStandby implements Agent.
func (a *FakeAgent) SetStandby(_ context.Context, node string, standby bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Standbys = append(a.Standbys, StandbyRequest{Node: node, Standby: standby})
	return a.AdminErr
}

// SetServerDisabled implements Agent.
func (a *FakeAgent) SetServerDisabled(_ context.Context, ref fsm.ServerRef, disabled bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Disables = append(a.Disables, fsm.ServerDisable{ServerRef: ref, Disabled: disabled})
	return a.AdminErr
}

// Leader implements Agent: View.DC, or "dc" when the view names none.
func (a *FakeAgent) Leader() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.NoDC:
		return ""
	case a.View.DC != "":
		return a.View.DC
	}
	return "dc"
}

// Spec implements Agent.
func (a *FakeAgent) Spec() spec.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	if reflect.DeepEqual(a.Current, spec.Spec{}) {
		return fsm.New().Spec() // what a new cluster holds
	}
	return a.Current
}

// WaitForSpec implements Agent.
func (a *FakeAgent) WaitForSpec(context.Context, uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.SpecWaitErr
}

// ApplySpec implements Agent.
func (a *FakeAgent) ApplySpec(_ context.Context, spec spec.Spec, expectVersion uint64) (cluster.ApplyResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applied = append(a.applied, AppliedSpec{spec, expectVersion})
	if a.Apply != nil {
		return a.Apply(spec, expectVersion, len(a.applied))
	}
	return a.ApplyResult, a.ApplyErr
}

// Join implements Agent.
func (a *FakeAgent) Join(_ context.Context, addrs []string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.joined = append(a.joined, slices.Clone(addrs))
	return a.JoinContacted, a.JoinErr
}

// Leave implements Agent.
func (a *FakeAgent) Leave(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leaves++
	return a.LeaveErr
}

// RemoveNode implements Agent.
func (a *FakeAgent) RemoveNode(_ context.Context, name string, force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Removed = append(a.Removed, NodeRequest{Node: name, Force: force})
	return a.AdminErr
}

// MoveDC implements Agent: the DC moves to the node asked for, or "n2".
func (a *FakeAgent) MoveDC(_ context.Context, to string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Moved = append(a.Moved, to)
	if to == "" {
		to = "n2"
	}
	if a.AdminErr != nil || a.MoveStalls {
		return to, a.AdminErr
	}
	a.View.DC = to
	a.holders = make(map[netip.Addr]fsm.Holder)
	for _, v := range a.Current.VIPs {
		a.holders[v.Address] = fsm.Holder{Node: to, Term: 2}
	}
	return to, nil
}

// Applied returns the ApplySpec calls so far.
func (a *FakeAgent) Applied() []AppliedSpec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.applied)
}

// Joins returns the addresses of every Join call so far.
func (a *FakeAgent) Joins() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.joined)
}

// Leaves counts the Leave calls so far.
func (a *FakeAgent) Leaves() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leaves
}

// Fence implements Fencing: the intent is answered, the history holds its
// result at once.
func (a *FakeAgent) Fence(_ context.Context, node, action string) (fsm.FenceEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.FenceErr != nil {
		return fsm.FenceEvent{}, a.FenceErr
	}
	if action == "" {
		action = spec.DefaultFenceAction
	}
	ev := fsm.FenceEvent{ID: uint64(len(a.fences) + 1), Target: node, Action: action, By: a.View.DC, Reason: "requested by an operator"}
	done := ev
	done.Result, done.Attempts, done.Level, done.Device = a.FenceResult, 1, 1, "fake"
	if done.Result == "" {
		done.Result = fsm.FenceSuccess
	}
	if done.Result != fsm.FenceSuccess {
		done.ExitCode, done.Output = 1, "Failed: Unable to connect"
	}
	a.fences = append(a.fences, done)
	return ev, nil
}

// Confirm implements Fencing.
func (a *FakeAgent) Confirm(_ context.Context, node string) (fsm.FenceEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.FenceErr != nil {
		return fsm.FenceEvent{}, a.FenceErr
	}
	ev := fsm.FenceEvent{ID: uint64(len(a.fences) + 1), Target: node, Action: spec.FenceOff, By: a.View.Node, Result: fsm.FenceConfirmed}
	a.fences = append(a.fences, ev)
	return ev, nil
}

// FenceHistory implements Fencing.
func (a *FakeAgent) FenceHistory() []fsm.FenceEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.fences)
}
