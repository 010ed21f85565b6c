package health

import "time"

// State is what is known of one real server's health.
type State struct {
	// Up says whether the server takes traffic. A server never probed is
	// up: a new DC must not drop the healthy servers it inherits before it
	// has probed them.
	Up bool `json:"up"`
	// Since is when Up last changed, or when monitoring began.
	Since time.Time `json:"since,omitzero"`
	// LastError is the most recent failure, kept after the server comes
	// back so the status view can say what happened.
	LastError string `json:"last_error,omitempty"`
	// Checked is false until the first probe's result is known.
	Checked bool `json:"checked"`
}

// Tracker turns a stream of probe results into up/down decisions with
// rise and fall counts, as ldirectord and keepalived do: an up server goes
// down after fall consecutive failures, a down server comes up after rise
// consecutive successes. A result that agrees with the current state
// resets the streak, so a flapping server never changes state when rise
// and fall are at least 2. It is a pure step function: no clock, no
// goroutine.
type Tracker struct {
	rise, fall int
	state      State
	streak     int // consecutive results against the current state
}

// NewTracker returns a tracker starting from initial. A rise or fall below
// 1 counts as 1.
func NewTracker(rise, fall int, initial State) *Tracker {
	return &Tracker{rise: max(rise, 1), fall: max(fall, 1), state: initial}
}

// State returns the current state.
func (t *Tracker) State() State { return t.state }

// Observe records one probe result (nil is success) made at now and
// returns the new state and whether Up changed. Only a change of Up counts
// as a change: the first result, which sets Checked, does not.
func (t *Tracker) Observe(err error, now time.Time) (State, bool) {
	t.state.Checked = true
	healthy := err == nil
	if !healthy {
		t.state.LastError = err.Error()
	}
	if healthy == t.state.Up {
		t.streak = 0
		return t.state, false
	}
	t.streak++
	need := t.fall
	if healthy {
		need = t.rise
	}
	if t.streak < need {
		return t.state, false
	}
	t.state.Up = healthy
	t.state.Since = now
	t.streak = 0
	return t.state, true
}
