package director

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// DeviceChecker runs a fence device's own checks; fencing.Runner is the
// agent's.
type DeviceChecker interface {
	Validate(ctx context.Context, d spec.FenceDevice) error
	Monitor(ctx context.Context, d spec.FenceDevice) error
}

// deviceCheckTick is how often the DC looks for a check that is due.
const deviceCheckTick = time.Second

// startDeviceChecks runs, for the rest of the term, the fence devices'
// checks as Pacemaker's fencer does: validate-all whenever a device's
// definition is new to this term (a spec with it was applied, or the term
// began), monitor every monitor_interval. A result is committed only when
// it differs from the one recorded, so the log grows with changes, not
// with time; status shows the last.
func (t *term) startDeviceChecks(ctx context.Context) {
	checker, ok := t.d.cfg.Fencer.(DeviceChecker)
	if !ok || t.stopChecks != nil {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	t.stopChecks = cancel
	changes, unsubscribe := t.d.c.FSM().Subscribe()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer unsubscribe()
		validated := map[string]string{} // device → the definition validated
		nextMonitor := map[string]time.Time{}
		tick := time.NewTicker(deviceCheckTick)
		defer tick.Stop()
		for {
			spec := t.d.c.FSM().State().Spec
			for _, dev := range spec.Fencing.Devices {
				if cctx.Err() != nil {
					return
				}
				def := definition(dev)
				if validated[dev.Name] != def {
					validated[dev.Name] = def
					t.recordCheck(cctx, dev, fsm.CheckValidate, checker.Validate(cctx, dev))
					if dev.MonitorInterval > 0 {
						nextMonitor[dev.Name] = time.Now().Add(dev.MonitorInterval)
					}
					continue
				}
				if dev.MonitorInterval <= 0 {
					continue
				}
				if due, ok := nextMonitor[dev.Name]; !ok || !time.Now().Before(due) {
					nextMonitor[dev.Name] = time.Now().Add(dev.MonitorInterval)
					t.recordCheck(cctx, dev, fsm.CheckMonitor, checker.Monitor(cctx, dev))
				}
			}
			select {
			case <-cctx.Done():
				return
			case <-changes:
			case <-tick.C:
			}
		}
	}()
}

// definition is a device's definition, to notice a change.
func definition(d spec.FenceDevice) string {
	b, _ := json.Marshal(d)
	return string(b)
}

// recordCheck commits a check's result when it differs from the recorded
// one, and logs a failure or a recovery.
func (t *term) recordCheck(ctx context.Context, dev spec.FenceDevice, action string, err error) {
	if ctx.Err() != nil {
		return // the term ended while the check ran
	}
	c := fsm.DeviceCheck{Device: dev.Name, Action: action, OK: err == nil, At: time.Now()}
	if err != nil {
		c.Error = boundText(err.Error(), fsm.MaxCheckError)
	}
	prev, known := t.d.c.FSM().State().DeviceChecks[dev.Name]
	if known && prev.OK == c.OK && prev.Error == c.Error && (prev.Action == c.Action || c.OK) {
		return
	}
	switch {
	case err != nil:
		t.log.Error("fence device check failed: fencing with it would likely fail", "device", dev.Name, "check", action, "err", c.Error)
	case known && !prev.OK:
		t.log.Info("fence device check passes again", "device", dev.Name, "check", action)
	}
	if _, cerr := t.d.c.Commit(fsm.CmdDeviceCheck|fsm.IgnoreUnknownType, c); cerr != nil {
		t.log.Warn("recording a fence device check failed", "device", dev.Name, "err", cerr)
	}
}

// boundText keeps the start of s within n bytes, on a UTF-8 boundary.
func boundText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
