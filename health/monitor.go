package health

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// Key names one checked real server of one service.
type Key struct {
	Service spec.ServiceKey
	Server  netip.AddrPort
}

// Spec is what to check for a key and how.
type Spec struct {
	Check  spec.HealthCheck
	Target Target
}

// ChangeLogMessage is the log message of a health state change, logged
// once per change at Info and never per probe.
const ChangeLogMessage = "real server health changed"

// Monitor runs one probe loop per key and reports changes of Up only: a
// steady cluster makes no calls and no log lines.
type Monitor struct {
	logger     *slog.Logger
	onChange   func(Key, State)
	now        func() time.Time
	newChecker func(spec.HealthCheck) (Checker, error)
	observe    func(Key, time.Duration)

	// setMu serialises Set and Stop, which wait for probe loops to end;
	// the loops themselves take only mu.
	setMu   sync.Mutex
	mu      sync.Mutex
	probes  map[Key]*probeLoop
	states  map[Key]State
	stopped bool
	wg      sync.WaitGroup
}

// probeLoop is the goroutine checking one key.
type probeLoop struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}
}

// MonitorConfig sets up a Monitor. Every field may be left zero.
type MonitorConfig struct {
	Logger *slog.Logger
	// OnChange is called from a probe goroutine, never with the monitor's
	// lock held, each time a server's Up changes; it must return promptly
	// and must not call Set or Stop.
	OnChange func(Key, State)
	// Dial opens the probes' connections (nil: a plain net.Dialer).
	Dial DialFunc
	// Exec is the node's policy for exec checks (nil: none run).
	Exec *Exec
	// Observe, when set, is told how long each probe took.
	Observe func(Key, time.Duration)
}

// NewMonitor returns a monitor with no targets.
func NewMonitor(cfg MonitorConfig) *Monitor {
	logger, onChange := cfg.Logger, cfg.OnChange
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Key, State) {}
	}
	dial, exec, observe := cfg.Dial, cfg.Exec, cfg.Observe
	if observe == nil {
		observe = func(Key, time.Duration) {}
	}
	return &Monitor{
		logger:     logger,
		onChange:   onChange,
		now:        time.Now,
		newChecker: func(hc spec.HealthCheck) (Checker, error) { return NewChecker(hc, dial, exec) },
		observe:    observe,
		probes:     map[Key]*probeLoop{},
		states:     map[Key]State{},
	}
}

// Set makes targets the set of checked servers. A new key is probed at
// once; a removed key's loop is stopped (and Set waits for it, so it
// reports nothing afterwards) and its state forgotten; a key whose spec
// changed is restarted with its state kept; an unchanged key's loop runs
// on untouched, its rise/fall counts included.
func (m *Monitor) Set(targets map[Key]Spec) {
	m.setMu.Lock()
	defer m.setMu.Unlock()

	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	var ended []chan struct{}
	for k, p := range m.probes {
		spec, keep := targets[k]
		if keep && reflect.DeepEqual(spec, p.spec) {
			continue
		}
		p.cancel()
		ended = append(ended, p.done)
		delete(m.probes, k)
		if !keep {
			delete(m.states, k)
		}
	}
	m.mu.Unlock()
	// A restarted key's old loop must be gone before the new one starts,
	// or their reports could arrive out of order.
	for _, done := range ended {
		<-done
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for k, spec := range targets {
		if _, running := m.probes[k]; running {
			continue
		}
		st, known := m.states[k]
		if !known {
			st = State{Up: true, Since: m.now()}
			m.states[k] = st
		}
		m.start(k, cloneSpec(spec), st)
	}
}

// start runs a probe loop for k. The caller holds mu.
func (m *Monitor) start(k Key, spec Spec, initial State) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probeLoop{spec: spec, cancel: cancel, done: make(chan struct{})}
	m.probes[k] = p
	m.wg.Add(1)
	go m.run(ctx, k, p, NewTracker(spec.Check.Rise, spec.Check.Fall, initial))
}

// States returns a copy of every checked server's state.
func (m *Monitor) States() map[Key]State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.states)
}

// Stop stops every probe loop and waits for them. Set does nothing after
// Stop.
func (m *Monitor) Stop() {
	m.setMu.Lock()
	defer m.setMu.Unlock()
	m.mu.Lock()
	m.stopped = true
	for k, p := range m.probes {
		p.cancel()
		delete(m.probes, k)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Monitor) run(ctx context.Context, k Key, p *probeLoop, tracker *Tracker) {
	defer m.wg.Done()
	defer close(p.done)
	log := m.logger.With("service", k.Service.String(), "server", k.Server.String(), "check", p.spec.Check.Type)

	checker, err := m.newChecker(p.spec.Check)
	if err != nil {
		// fsm validation makes this unreachable; if it is reached, the
		// server fails its checks visibly rather than passing silently.
		log.Error("health check cannot run; counting every probe as failed", "err", err)
		checker = failingChecker{err}
	}
	interval := p.spec.Check.Interval
	if interval <= 0 {
		interval = spec.DefaultCheckInterval
	}
	timeout := p.spec.Check.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultCheckTimeout
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		m.probe(ctx, log, k, p.spec.Target, checker, tracker, timeout)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe checks once, records the result and reports a change.
func (m *Monitor) probe(ctx context.Context, log *slog.Logger, k Key, t Target, c Checker, tracker *Tracker, timeout time.Duration) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	err := c.Check(pctx, t)
	m.observe(k, time.Since(start))
	cancel()

	m.mu.Lock()
	if ctx.Err() != nil {
		// Stopped or replaced while probing: a cancelled probe says
		// nothing about the server.
		m.mu.Unlock()
		return
	}
	if errors.Is(err, ErrNotRun) {
		// Nor does a check this node would not run: the server keeps its
		// state, and status says why it is not checked.
		st := tracker.State()
		before := m.states[k].LastError
		st.LastError = err.Error()
		m.states[k] = st
		m.mu.Unlock()
		if before != st.LastError {
			log.Warn("health check not run: the server keeps its state", "err", err)
		}
		return
	}
	st, changed := tracker.Observe(err, m.now())
	m.states[k] = st
	m.mu.Unlock()

	if err != nil && !changed {
		log.Debug("health probe failed", "err", err)
	}
	if !changed {
		return
	}
	if st.Up {
		log.Info(ChangeLogMessage, "health", "up")
	} else {
		log.Info(ChangeLogMessage, "health", "down", "err", st.LastError)
	}
	m.onChange(k, st)
}

// failingChecker fails every probe with the reason the check cannot run.
type failingChecker struct{ err error }

func (f failingChecker) Check(context.Context, Target) error { return f.err }

// cloneSpec copies the slices of a spec, so a caller reusing them cannot
// change a running check behind the monitor's back.
func cloneSpec(s Spec) Spec {
	s.Check.ExpectStatus = slices.Clone(s.Check.ExpectStatus)
	s.Check.Command = slices.Clone(s.Check.Command)
	return s
}
