package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// The states of a resource on this node.
const (
	StateStopped    = "stopped"
	StateStarting   = "starting"
	StateStarted    = "started"
	StateStopping   = "stopping"
	StateFailed     = "failed"      // a start or monitor failed; stopped since
	StateStopFailed = "stop-failed" // a stop failed: it may still run here
)

// Status is one resource as this node sees it, for status.
type Status struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	// Since is when the state began.
	Since time.Time `json:"since"`
	// LastError is the last failed action's error.
	LastError string `json:"last_error,omitempty"`
	// Monitored is when monitor last succeeded; Failures counts the
	// failed actions since this node started.
	Monitored time.Time `json:"monitored,omitzero"`
	Failures  int       `json:"failures,omitempty"`
}

// Notice is told of every change of a resource's state, with the error
// of the action that led to it.
type Notice func(name, state string, err error)

// Group is this node's resources, in the order they start. It runs one
// action at a time; its methods may be called from several goroutines.
type Group struct {
	run    *Runner
	logger *slog.Logger
	notice Notice

	// act serialises actions; mu guards the fields below.
	act       sync.Mutex
	mu        sync.Mutex
	started   []spec.Resource // in start order, as they were started
	status    map[string]*Status
	order     []string
	dueAt     map[string]time.Time
	unstopped map[string]spec.Resource // stops that failed, or a last run's: may still run
	file      string
}

// GroupConfig is how a group keeps and reports its state.
type GroupConfig struct {
	Logger *slog.Logger
	Notice Notice // nil: nobody
	// StateFile keeps what may run on this node across restarts
	// (state.go); empty: not kept.
	StateFile string
}

// NewGroup returns a group with what the state file says may run here
// (not Clean until stopped), or an error when that file is unreadable.
func NewGroup(run *Runner, cfg GroupConfig) (*Group, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notice == nil {
		cfg.Notice = func(string, string, error) {}
	}
	g := &Group{run: run, logger: cfg.Logger, notice: cfg.Notice, status: map[string]*Status{}, dueAt: map[string]time.Time{}, unstopped: map[string]spec.Resource{}, file: cfg.StateFile}
	if err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

// set records r's state.
func (g *Group) set(r spec.Resource, state string, err error) {
	g.mu.Lock()
	st, ok := g.status[r.Name]
	if !ok {
		st = &Status{Name: r.Name}
		g.status[r.Name] = st
		g.order = append(g.order, r.Name)
	}
	st.Kind = r.Kind()
	changed := st.State != state
	if changed {
		st.State, st.Since = state, time.Now()
	}
	if err != nil {
		st.LastError = err.Error()
		st.Failures++
	}
	notice := g.notice
	g.mu.Unlock()
	if changed || err != nil {
		notice(r.Name, state, err)
	}
}

// Check says why r's program may not run on this node, or nil.
func (g *Group) Check(r spec.Resource) error { return g.run.Check(r) }

// Attach sets where the group logs and whom it tells of each change of
// state (the director that runs it).
func (g *Group) Attach(logger *slog.Logger, n Notice) {
	g.act.Lock()
	defer g.act.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.logger, g.notice = logger, n
}

// StopFailed says a stop failed here and nothing has stopped that
// resource since.
func (g *Group) StopFailed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name := range g.unstopped {
		if st, ok := g.status[name]; ok && st.State == StateStopFailed {
			return true
		}
	}
	return false
}

// Started is the resources started here, in start order.
func (g *Group) Started() []spec.Resource {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.started)
}

// Matches says whether exactly rs, as defined, is started here.
func (g *Group) Matches(rs []spec.Resource) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.started) == 0 && len(rs) == 0 {
		return true
	}
	return reflect.DeepEqual(g.started, rs)
}

// Clean says that nothing may run here: whatever was started (by this
// run or, as the state file says, the last) has been stopped, and no stop
// failed. A node that is not clean must not be trusted to have let go.
func (g *Group) Clean() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.unstopped) == 0
}

// Status lists every resource this node has run or been told of, in the
// order first seen; known lists the spec's (shown as stopped until run).
func (g *Group) Status(known []spec.Resource) []Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Status
	seen := map[string]bool{}
	for _, r := range known {
		seen[r.Name] = true
		if st, ok := g.status[r.Name]; ok {
			out = append(out, *st)
		} else {
			out = append(out, Status{Name: r.Name, Kind: r.Kind(), State: StateStopped})
		}
	}
	for _, n := range g.order {
		if !seen[n] && g.status[n].State != StateStopped {
			out = append(out, *g.status[n])
		}
	}
	return out
}

// Start starts rs in order, asking allowed before each (the DC's check
// that it still leads). On a failure it stops the failed resource and
// every one started before it, in reverse, and returns the start's error
// joined with any stop's (a stop error means the node is not Clean).
func (g *Group) Start(ctx context.Context, rs []spec.Resource, allowed func() error) error {
	g.act.Lock()
	defer g.act.Unlock()
	for _, r := range rs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := allowed(); err != nil {
			return errors.Join(fmt.Errorf("resource %s not started: %w", r.Name, err), g.stopLocked(g.Started()))
		}
		g.set(r, StateStarting, nil)
		// Recorded before it runs: a start that is cut short by a
		// crash may have done its work.
		g.mu.Lock()
		g.unstopped[r.Name] = r
		g.saveLocked()
		g.mu.Unlock()
		res := g.run.Run(context.WithoutCancel(ctx), r, Start)
		if res.Err != nil {
			g.logger.Error("resource start failed: stopping it and what was started before it", "resource", r.Name, "kind", r.Kind(), "exit", res.Code, "timed_out", res.TimedOut, "err", res.Err, "output", res.Output)
			g.set(r, StateFailed, res.Err)
			// Whatever the start left behind is stopped too, as
			// Pacemaker stops a resource whose start failed.
			stopErr := g.stopLocked(append(g.Started(), r))
			return errors.Join(res.Err, stopErr)
		}
		g.mu.Lock()
		g.started = append(g.started, r)
		if r.MonitorInterval > 0 {
			g.dueAt[r.Name] = time.Now().Add(r.MonitorInterval)
		}
		g.saveLocked()
		g.mu.Unlock()
		g.logger.Info("resource started", "resource", r.Name, "kind", r.Kind(), "took", res.Took.Round(time.Millisecond))
		g.set(r, StateStarted, nil)
	}
	return nil
}

// Stop stops every started resource, in reverse.
func (g *Group) Stop() error {
	g.act.Lock()
	defer g.act.Unlock()
	return g.stopLocked(g.Started())
}

// StopAll stops every resource of rs in reverse, started here or not, and
// those a failed stop left: a node starting up may run what its last run
// started (a stop of what is not running succeeds).
func (g *Group) StopAll(rs []spec.Resource) error {
	g.act.Lock()
	defer g.act.Unlock()
	all := slices.Clone(rs)
	g.mu.Lock()
	for _, r := range g.unstopped {
		if !slices.ContainsFunc(all, func(x spec.Resource) bool { return x.Name == r.Name }) {
			all = append([]spec.Resource{r}, all...)
		}
	}
	g.mu.Unlock()
	return g.stopLocked(all)
}

// stopLocked stops rs in reverse; each failure is recorded (the resource
// may still run here) and the others are stopped all the same.
func (g *Group) stopLocked(rs []spec.Resource) error {
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		g.set(r, StateStopping, nil)
		res := g.run.Run(context.Background(), r, Stop)
		g.mu.Lock()
		g.started = slices.DeleteFunc(g.started, func(x spec.Resource) bool { return x.Name == r.Name })
		delete(g.dueAt, r.Name)
		if res.Err != nil {
			g.unstopped[r.Name] = r
		} else {
			delete(g.unstopped, r.Name)
		}
		g.saveLocked()
		g.mu.Unlock()
		if res.Err != nil {
			g.logger.Error("resource stop failed: it may still run on this node, which must not be trusted to have let go", "resource", r.Name, "kind", r.Kind(), "exit", res.Code, "timed_out", res.TimedOut, "err", res.Err, "output", res.Output)
			g.set(r, StateStopFailed, res.Err)
			errs = append(errs, res.Err)
			continue
		}
		g.logger.Info("resource stopped", "resource", r.Name, "kind", r.Kind(), "took", res.Took.Round(time.Millisecond))
		g.set(r, StateStopped, nil)
	}
	return errors.Join(errs...)
}

// MonitorDue runs monitor on each started resource whose interval has
// passed, and returns the first that failed (not running, or the monitor
// itself failed), with its error.
func (g *Group) MonitorDue(ctx context.Context) (spec.Resource, error) {
	g.act.Lock()
	defer g.act.Unlock()
	for _, r := range g.Started() {
		g.mu.Lock()
		due, ok := g.dueAt[r.Name]
		g.mu.Unlock()
		if !ok || time.Now().Before(due) {
			continue
		}
		res := g.run.Run(context.WithoutCancel(ctx), r, Monitor)
		g.mu.Lock()
		g.dueAt[r.Name] = time.Now().Add(r.MonitorInterval)
		if res.Err == nil {
			g.status[r.Name].Monitored = time.Now()
		}
		g.mu.Unlock()
		if res.Err != nil {
			g.logger.Error("resource monitor failed", "resource", r.Name, "kind", r.Kind(), "exit", res.Code, "timed_out", res.TimedOut, "err", res.Err, "output", res.Output)
			g.set(r, StateFailed, res.Err)
			return r, res.Err
		}
	}
	return spec.Resource{}, nil
}

// NextDue is when the next monitor is due (zero: none).
func (g *Group) NextDue() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next time.Time
	for _, at := range g.dueAt {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}
