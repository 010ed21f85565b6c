package fsm

import (
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// TestIntervalFloorsOnlyForNewSpecs: a spec below the floors is refused
// when proposed (ValidateNew, which ParseServices and apply use), but a
// spec already in the log from an older release still applies (Validate,
// which Apply and Restore use), or nodes would diverge on replay.
func TestIntervalFloorsOnlyForNewSpecs(t *testing.T) {
	old := squidSpec()
	old.Services[0].HealthCheck.Interval = time.Millisecond
	old.Services[0].HealthCheck.Timeout = time.Millisecond
	if err := old.Validate(); err != nil {
		t.Errorf("a 1ms check in the log: %v, want it applied", err)
	}
	if err := old.ValidateNew(); err == nil || !strings.Contains(err.Error(), "1ms: want at least 100ms") {
		t.Errorf("a 1ms check proposed: %v, want the floor", err)
	}
	f := New()
	if res := f.setSpec(SetSpec{Spec: old}); res.Err != nil {
		t.Errorf("the FSM refused a spec of an older release: %v", res.Err)
	}
	if got := spec.MinInterval(spec.CheckExec); got != time.Second {
		t.Errorf("exec floor %s", got)
	}
}
