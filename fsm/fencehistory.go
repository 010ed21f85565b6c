package fsm

import (
	"slices"
	"time"
	"unicode/utf8"

	"github.com/raftlb/raftlb/spec"
)

// FenceEvent is one entry of the fencing history, as crm_mon shows it: the
// DC commits the intent before the agent runs and the result after.
type FenceEvent struct {
	// ID is the log index of the intent.
	ID     uint64 `json:"id"`
	Target string `json:"target"`
	Action string `json:"action"`
	// By is the DC that fenced (or the node an operator confirmed on), in
	// Term.
	By     string    `json:"by"`
	Term   uint64    `json:"term"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Result is "" while the agent runs, then success, failed or
	// confirmed (an operator said the node is down).
	Result    string    `json:"result,omitempty"`
	Completed time.Time `json:"completed,omitzero"`
	Level     int       `json:"level,omitempty"`
	Device    string    `json:"device,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	ExitCode  int       `json:"exit_code,omitempty"`
	// DurationMS is how long the fencing took, all levels and retries.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Output is the end of the agent's output, bounded.
	Output string `json:"output,omitempty"`
}

// The results of a fencing.
const (
	FenceSuccess   = "success"
	FenceFailed    = "failed"
	FenceConfirmed = "confirmed"
)

// MaxFenceHistory bounds the history kept in the replicated state.
const MaxFenceHistory = 100

// FenceStart is the intent, committed before the agent runs.
type FenceStart struct {
	Target string    `json:"target"`
	Action string    `json:"action"`
	By     string    `json:"by"`
	Term   uint64    `json:"term"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// FenceDone is the result of the fencing whose intent is at log index ID.
// On success every VIP the target held counts as released (fenced).
type FenceDone struct {
	ID         uint64    `json:"id"`
	Result     string    `json:"result"`
	Level      int       `json:"level,omitempty"`
	Device     string    `json:"device,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	ExitCode   int       `json:"exit_code,omitempty"`
	DurationMS int64     `json:"duration_ms,omitempty"`
	Output     string    `json:"output,omitempty"`
	At         time.Time `json:"at"`
}

// FenceConfirm is an operator's word that Target is down (raftlb fence
// confirm, like stonith_admin --confirm): every VIP it held counts as
// released, and a takeover waiting for a fence goes ahead.
type FenceConfirm struct {
	Target string    `json:"target"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

func (f *FSM) fenceStart(index uint64, c FenceStart) *Result {
	v := &validator{}
	if err := spec.ValidateNodeName(c.Target); err != nil {
		v.addf("target", "%v", err)
	}
	if err := spec.ValidateNodeName(c.By); err != nil {
		v.addf("by", "%v", err)
	}
	if c.Action != spec.FenceReboot && c.Action != spec.FenceOff {
		v.addf("action", "unknown action %q", c.Action)
	}
	v.sentence("reason", c.Reason, 256)
	if len(v.problems) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: v.problems}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendFence(FenceEvent{ID: index, Target: c.Target, Action: c.Action, By: c.By, Term: c.Term, Reason: c.Reason, At: c.At.UTC()})
	return &Result{Changed: true}
}

func (f *FSM) fenceDone(d FenceDone) *Result {
	v := &validator{}
	if d.Result != FenceSuccess && d.Result != FenceFailed {
		v.addf("result", "unknown result %q", d.Result)
	}
	if len(d.Output) > spec.MaxFenceOutput || !utf8.ValidString(d.Output) {
		v.addf("output", "at most %d bytes of UTF-8", spec.MaxFenceOutput)
	}
	if len(v.problems) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: v.problems}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.state.FenceHistory {
		e := &f.state.FenceHistory[i]
		if e.ID != d.ID || e.Result != "" {
			continue
		}
		e.Result, e.Completed, e.Level, e.Device = d.Result, d.At.UTC(), d.Level, d.Device
		e.Attempts, e.ExitCode, e.DurationMS, e.Output = d.Attempts, d.ExitCode, d.DurationMS, d.Output
		if d.Result == FenceSuccess {
			f.releaseHeldBy(e.Target, ReleaseFenced, d.At)
		}
		return &Result{Changed: true}
	}
	return &Result{} // an intent since dropped from the bounded history
}

func (f *FSM) fenceConfirm(index uint64, c FenceConfirm) *Result {
	v := &validator{}
	if err := spec.ValidateNodeName(c.Target); err != nil {
		v.addf("target", "%v", err)
	}
	if err := spec.ValidateNodeName(c.By); err != nil {
		v.addf("by", "%v", err)
	}
	if len(v.problems) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: v.problems}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendFence(FenceEvent{
		ID: index, Target: c.Target, Action: spec.FenceOff, By: c.By, Reason: "an operator confirmed the node is down",
		At: c.At.UTC(), Result: FenceConfirmed, Completed: c.At.UTC(),
	})
	f.releaseHeldBy(c.Target, ReleaseConfirmed, c.At)
	return &Result{Changed: true}
}

// appendFence adds e to the bounded history. The caller holds mu.
func (f *FSM) appendFence(e FenceEvent) {
	f.state.FenceHistory = append(f.state.FenceHistory, e)
	if n := len(f.state.FenceHistory); n > MaxFenceHistory {
		f.state.FenceHistory = append([]FenceEvent(nil), f.state.FenceHistory[n-MaxFenceHistory:]...)
	}
}

// releaseHeldBy marks every VIP node holds as let go. The caller holds mu.
func (f *FSM) releaseHeldBy(node, reason string, at time.Time) {
	for vip, h := range f.state.Holders {
		if h.Node == node && !h.Released {
			h.Released, h.Reason, h.ReleasedAt = true, reason, at.UTC()
			f.state.Holders[vip] = h
		}
	}
}

// DeviceCheck is the DC's check of a fence device: validate-all when a
// spec with the device is applied (are its options right?), monitor every
// monitor_interval (is the device reachable?). Only a change is
// committed.
type DeviceCheck struct {
	Device string    `json:"device"`
	Action string    `json:"action"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

// The actions a device check runs.
const (
	CheckValidate = "validate-all"
	CheckMonitor  = "monitor"
)

// MaxCheckError bounds a device check's error.
const MaxCheckError = 512

func (f *FSM) deviceCheck(c DeviceCheck) *Result {
	v := &validator{}
	if !spec.ValidDeviceName(c.Device) {
		v.addf("device", "%q is not a device name", c.Device)
	}
	if c.Action != CheckValidate && c.Action != CheckMonitor {
		v.addf("action", "unknown check %q", c.Action)
	}
	if len(c.Error) > MaxCheckError || !utf8.ValidString(c.Error) {
		v.addf("error", "at most %d bytes of UTF-8", MaxCheckError)
	}
	if c.OK && c.Error != "" {
		v.addf("error", "a check that passed has no error")
	}
	if len(v.problems) > 0 {
		return &Result{Err: &spec.ValidationError{Problems: v.problems}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.ContainsFunc(f.state.Spec.Fencing.Devices, func(d spec.FenceDevice) bool { return d.Name == c.Device }) {
		return &Result{} // the device left the spec meanwhile
	}
	if f.state.DeviceChecks == nil {
		f.state.DeviceChecks = map[string]DeviceCheck{}
	}
	c.At = c.At.UTC()
	f.state.DeviceChecks[c.Device] = c
	return &Result{Changed: true}
}

// dropDeviceChecks forgets the checks of devices no longer in spec. The
// caller holds mu.
func (f *FSM) dropDeviceChecks(s spec.Spec) {
	for name := range f.state.DeviceChecks {
		if !slices.ContainsFunc(s.Fencing.Devices, func(d spec.FenceDevice) bool { return d.Name == name }) {
			delete(f.state.DeviceChecks, name)
		}
	}
}
