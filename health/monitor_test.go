package health

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// backend is a real server whose health page the test switches between
// 200 and 503, counting the probes it answers.
type backend struct {
	srv     *httptest.Server
	healthy atomic.Bool
	ok, bad atomic.Int64
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.healthy.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.healthy.Load() {
			b.ok.Add(1)
			return
		}
		b.bad.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) probes() int64 { return b.ok.Load() + b.bad.Load() }

func (b *backend) addr() netip.AddrPort {
	return netip.MustParseAddrPort(b.srv.Listener.Addr().String())
}

// key and spec for checking b as a server of the test service.
func (b *backend) key() Key {
	return Key{
		Service: spec.ServiceKey{VIP: netip.MustParseAddr("172.95.69.100"), Port: 80, Protocol: spec.ProtocolTCP},
		Server:  b.addr(),
	}
}

func (b *backend) spec(rise, fall int) Spec {
	return Spec{
		Check: spec.HealthCheck{
			Type: spec.CheckHTTP, Path: "/", ExpectStatus: []int{200},
			// Short interval for a quick test; a long timeout, so a slow
			// test machine cannot fail a probe the backend answered.
			Interval: 10 * time.Millisecond, Timeout: testkit.WaitTimeout,
			Rise: rise, Fall: fall, OnFail: spec.OnFailRemove,
		},
		Target: Target{Addr: b.addr(), VIP: netip.MustParseAddrPort("172.95.69.100:80")},
	}
}

// event is one onChange call with the backend's probe counts at that
// moment.
type event struct {
	key     Key
	state   State
	ok, bad int64
}

// recorder collects onChange calls and the monitor's log.
type recorder struct {
	backends map[Key]*backend
	events   chan event

	mu  sync.Mutex
	log bytes.Buffer
}

func newRecorder(backends ...*backend) *recorder {
	r := &recorder{backends: map[Key]*backend{}, events: make(chan event, 100)}
	for _, b := range backends {
		r.backends[b.key()] = b
	}
	return r
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Write(p)
}

func (r *recorder) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

func (r *recorder) monitor(t *testing.T) *Monitor {
	logger := slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := NewMonitor(MonitorConfig{Logger: logger, Dial: testkit.DialContext(t), OnChange: func(k Key, st State) {
		b := r.backends[k]
		r.events <- event{key: k, state: st, ok: b.ok.Load(), bad: b.bad.Load()}
	}})
	t.Cleanup(m.Stop)
	return m
}

func (r *recorder) next(t *testing.T, what string) event {
	t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(testkit.WaitTimeout):
		t.Fatalf("no state change: %s", what)
		return event{}
	}
}

func (r *recorder) none(t *testing.T, when string) {
	t.Helper()
	select {
	case e := <-r.events:
		t.Fatalf("%s: unexpected state change %+v", when, e)
	default:
	}
}

func checked(m *Monitor, k Key) func() bool {
	return func() bool { return m.States()[k].Checked }
}

// loopOf returns the probe loop running for k, or nil.
func loopOf(m *Monitor, k Key) *probeLoop {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.probes[k]
}

func TestMonitorReportsEachChangeOnce(t *testing.T) {
	const rise, fall = 2, 3
	b := newBackend(t)
	rec := newRecorder(b)
	m := rec.monitor(t)
	k := b.key()

	m.Set(map[Key]Spec{k: b.spec(rise, fall)})
	if st, ok := m.States()[k]; !ok || !st.Up {
		t.Fatalf("before the first probe: %+v, want up (never probed counts as up)", st)
	}
	testkit.WaitFor(t, "the first probe", checked(m, k))
	rec.none(t, "healthy from the start")

	b.healthy.Store(false)
	e := rec.next(t, "server stopped answering 200")
	if e.key != k || e.state.Up || e.bad != fall {
		t.Errorf("down event %+v, want down after exactly %d failed probes", e, fall)
	}
	if e.state.LastError != "status 503, want 200" || e.state.Since.IsZero() {
		t.Errorf("down state %+v", e.state)
	}
	testkit.WaitFor(t, "more probes while down", func() bool { return b.bad.Load() >= fall+5 })
	rec.none(t, "staying down")

	b.healthy.Store(true)
	ok0 := b.ok.Load()
	e = rec.next(t, "server answering again")
	if !e.state.Up || e.ok-ok0 != rise {
		t.Errorf("up event %+v, want up after exactly %d good probes", e, rise)
	}
	upOK := e.ok
	testkit.WaitFor(t, "more probes while up", func() bool { return b.ok.Load() >= upOK+5 })
	rec.none(t, "staying up")

	st := m.States()[k]
	if !st.Up || !st.Checked || st.LastError != "status 503, want 200" {
		t.Errorf("final state %+v", st)
	}
	if n := strings.Count(rec.logText(), ChangeLogMessage); n != 2 {
		t.Errorf("%d change log lines, want 2:\n%s", n, rec.logText())
	}
}

func TestMonitorSet(t *testing.T) {
	a, b := newBackend(t), newBackend(t)
	rec := newRecorder(a, b)
	m := rec.monitor(t)
	ka, kb := a.key(), b.key()
	specA := a.spec(2, 2)

	m.Set(map[Key]Spec{ka: specA, kb: b.spec(2, 2)})
	testkit.WaitFor(t, "both checked", func() bool { return checked(m, ka)() && checked(m, kb)() })
	a.healthy.Store(false)
	if e := rec.next(t, "a failing"); e.key != ka || e.state.Up {
		t.Fatalf("event %+v, want a down", e)
	}
	down := m.States()[ka]
	loopA, loopB := loopOf(m, ka), loopOf(m, kb)

	// Removing b stops its loop before Set returns; a runs on untouched.
	m.Set(map[Key]Spec{ka: a.spec(2, 2)})
	select {
	case <-loopB.done:
	default:
		t.Fatal("Set returned with the removed key's loop still running")
	}
	if _, ok := m.States()[kb]; ok {
		t.Error("the removed key still has a state")
	}
	if loopOf(m, ka) != loopA {
		t.Error("Set restarted a key whose spec did not change")
	}
	if st := m.States()[ka]; st != down {
		t.Errorf("unchanged key's state %+v, want %+v", st, down)
	}
	from := a.probes()
	testkit.WaitFor(t, "a probed on", func() bool { return a.probes() >= from+2 })
	bProbes := b.probes()
	testkit.WaitFor(t, "a probed on", func() bool { return a.probes() >= from+7 })
	if got := b.probes(); got != bProbes {
		t.Errorf("the removed key was probed %d more times", got-bProbes)
	}

	// A changed check restarts the loop and keeps the state.
	changed := a.spec(2, 2)
	changed.Check.Interval = 15 * time.Millisecond
	m.Set(map[Key]Spec{ka: changed})
	if loopOf(m, ka) == loopA {
		t.Error("Set did not restart a key whose check changed")
	}
	select {
	case <-loopA.done:
	default:
		t.Error("the replaced loop is still running")
	}
	if st := m.States()[ka]; st.Up || !st.Since.Equal(down.Since) {
		t.Errorf("restarted key's state %+v, want the old down state %+v", st, down)
	}
	rec.none(t, "restarting a check")
	a.healthy.Store(true)
	if e := rec.next(t, "a recovering"); e.key != ka || !e.state.Up {
		t.Fatalf("event %+v, want a up", e)
	}

	// A key added back starts afresh, up until probed.
	m.Set(map[Key]Spec{ka: changed, kb: b.spec(2, 2)})
	testkit.WaitFor(t, "b checked again", checked(m, kb))
	if st := m.States()[kb]; !st.Up {
		t.Errorf("re-added key %+v, want up", st)
	}

	// Stop ends every loop; Set afterwards starts nothing.
	loops := []*probeLoop{loopOf(m, ka), loopOf(m, kb)}
	m.Stop()
	for _, l := range loops {
		select {
		case <-l.done:
		default:
			t.Error("Stop returned with a loop running")
		}
	}
	m.Set(map[Key]Spec{ka: changed})
	if loopOf(m, ka) != nil {
		t.Error("Set after Stop started a loop")
	}
	m.Stop() // idempotent
}

func TestMonitorUnrunnableCheckFails(t *testing.T) {
	b := newBackend(t)
	rec := newRecorder(b)
	m := rec.monitor(t)
	spec := b.spec(1, 1)
	spec.Check.BodyRegex = "(" // fsm validation would have refused it
	m.Set(map[Key]Spec{b.key(): spec})
	e := rec.next(t, "an unrunnable check")
	if e.state.Up || !strings.Contains(e.state.LastError, "body_regex") {
		t.Errorf("event %+v, want down with the reason", e)
	}
}
