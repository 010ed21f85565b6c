package fsm

import (
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

func TestApplySetSpec(t *testing.T) {
	a := applier{f: New()}
	res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	if *res != (Result{Version: 1, Changed: true}) {
		t.Fatalf("first apply = %+v, want version 1, changed", *res)
	}
	want := squidSpec()
	want.Version = 1
	if got := a.f.Spec(); !reflect.DeepEqual(got, want) {
		t.Errorf("Spec() = %+v\nwant %+v", got, want)
	}

	// The version a proposer sends is ignored: the FSM assigns versions.
	next := webSpec()
	next.Version = 99
	res = a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: next, ExpectVersion: 1}))
	if *res != (Result{Version: 2, Changed: true}) {
		t.Fatalf("second apply = %+v, want version 2, changed", *res)
	}
	if v := a.f.Spec().Version; v != 2 {
		t.Errorf("version = %d, want 2", v)
	}
}

func TestApplySameSpecIsNoOp(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	ch, cancel := a.f.Subscribe()
	defer cancel()

	same := squidSpec()
	same.Version = 5                                           // ignored
	same.Services[0].RealServers.Servers = []spec.RealServer{} // empty, not nil: same spec
	res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: same}))
	if *res != (Result{Version: 1, Changed: false}) {
		t.Errorf("re-apply = %+v, want version 1, unchanged", *res)
	}
	select {
	case <-ch:
		t.Error("watchers signalled for a no-op")
	default:
	}

	// The empty spec of a fresh FSM equals an empty services file.
	empty, err := spec.ParseServices(nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := applier{f: New()}
	if res := fresh.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: empty})); res.Changed || res.Version != 0 {
		t.Errorf("empty file on a fresh FSM = %+v, want a no-op at version 0", *res)
	}
}

func TestApplySetSpecConflict(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: webSpec()}))
	before := a.f.State()

	for _, expect := range []uint64{1, 3} {
		res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec(), ExpectVersion: expect}))
		var ce *ConflictError
		if !errors.As(res.Err, &ce) || *ce != (ConflictError{Expected: expect, Current: 2}) {
			t.Errorf("ExpectVersion %d: Err = %v, want ConflictError{%d, 2}", expect, res.Err, expect)
		}
		if res.Changed || res.Version != 2 {
			t.Errorf("ExpectVersion %d: result %+v, want unchanged at version 2", expect, *res)
		}
	}
	if !reflect.DeepEqual(a.f.State(), before) {
		t.Error("a conflicting apply changed the state")
	}
	// The matching version goes through.
	res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec(), ExpectVersion: 2}))
	if res.Err != nil || res.Version != 3 {
		t.Errorf("ExpectVersion 2: %+v, want version 3", *res)
	}
}

func TestApplyInvalidSpecChangesNothing(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	before := a.f.State()
	ch, cancel := a.f.Subscribe()
	defer cancel()

	bad := webSpec()
	bad.Services[0].Scheduler = "fastest"
	bad.Services[1].Port = 0
	res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: bad}))
	var ve *spec.ValidationError
	if !errors.As(res.Err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("Err = %v, want a *ValidationError with 2 problems", res.Err)
	}
	if res.Changed || res.Version != 1 {
		t.Errorf("result %+v, want unchanged at version 1", *res)
	}
	if !reflect.DeepEqual(a.f.State(), before) {
		t.Error("an invalid spec changed the state")
	}
	select {
	case <-ch:
		t.Error("watchers signalled for a rejected spec")
	default:
	}
}

func TestApplyNodes(t *testing.T) {
	a := applier{f: New()}
	m30, m40 := testNode("m30", "10.0.0.30"), testNode("m40", "10.0.0.40")
	moved := m30
	moved.Address = netip.MustParseAddr("10.0.0.31")
	retried := m30
	retried.JoinedAt = m30.JoinedAt.Add(time.Minute)
	invalid := testNode("m50", "10.0.0.50")
	invalid.RaftAddr = netip.AddrPort{}

	steps := []struct {
		name        string
		typ         CommandType
		payload     any
		wantChanged bool
		wantErr     string
		wantNodes   map[string]Node
	}{
		{"register m30", CmdRegisterNode, m30, true, "", map[string]Node{"m30": m30}},
		{"register m40", CmdRegisterNode, m40, true, "", map[string]Node{"m30": m30, "m40": m40}},
		{"register m30 again", CmdRegisterNode, m30, false, "", map[string]Node{"m30": m30, "m40": m40}},
		{"retried join keeps first JoinedAt", CmdRegisterNode, retried, false, "", map[string]Node{"m30": m30, "m40": m40}},
		{"m30 changes address", CmdRegisterNode, moved, true, "", map[string]Node{"m30": moved, "m40": m40}},
		{"invalid node", CmdRegisterNode, invalid, false, "node.raft_addr", map[string]Node{"m30": moved, "m40": m40}},
		{"deregister m30", CmdDeregisterNode, DeregisterNode{Name: "m30"}, true, "", map[string]Node{"m40": m40}},
		{"deregister unknown", CmdDeregisterNode, DeregisterNode{Name: "m99"}, false, "", map[string]Node{"m40": m40}},
		{"deregister without name", CmdDeregisterNode, DeregisterNode{}, false, "name", map[string]Node{"m40": m40}},
		{"deregister m40", CmdDeregisterNode, DeregisterNode{Name: "m40"}, true, "", map[string]Node{}},
	}
	for _, st := range steps {
		res := a.result(t, mustEncode(t, st.typ, st.payload))
		if res.Changed != st.wantChanged || res.Version != 0 {
			t.Errorf("%s: result %+v, want changed=%t version 0", st.name, *res, st.wantChanged)
		}
		var ve *spec.ValidationError
		switch {
		case st.wantErr == "" && res.Err != nil:
			t.Errorf("%s: Err = %v", st.name, res.Err)
		case st.wantErr != "" && (!errors.As(res.Err, &ve) || ve.Problems[0].Path != st.wantErr):
			t.Errorf("%s: Err = %v, want a problem at %s", st.name, res.Err, st.wantErr)
		}
		if got := a.f.State().Nodes; !reflect.DeepEqual(got, st.wantNodes) {
			t.Errorf("%s: nodes = %+v\nwant %+v", st.name, got, st.wantNodes)
		}
	}
}

func TestApplyUnknownCommand(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	before := a.f.State()

	// A newer leader's command flagged as skippable.
	if got := a.apply([]byte{1, 0x40 | byte(IgnoreUnknownType), '{', '}'}); got != nil {
		t.Errorf("Apply(unknown, ignore flag) = %#v, want nil", got)
	}
	if !reflect.DeepEqual(a.f.State(), before) {
		t.Error("a skipped command changed the state")
	}

	for name, data := range map[string][]byte{
		"unknown type without the flag": {1, 0x40, '{', '}'},
		"known type with a bad payload": {1, byte(CmdSetSpec) | byte(IgnoreUnknownType), '{'},
		"unknown envelope version":      {2, 0x40 | byte(IgnoreUnknownType), '{', '}'},
		"empty entry":                   nil,
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("Apply did not panic")
				}
				if err, ok := r.(error); !ok || !strings.Contains(err.Error(), "log entry") {
					t.Errorf("panic value %v does not name the log entry", r)
				}
			}()
			a.apply(data)
		})
	}
}

func TestStateIsACopy(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: webSpec()}))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	want := a.f.State()

	st := a.f.State()
	st.Spec.VIPs[0].Interface = "changed"
	st.Spec.Services[0].RealServers.Servers[0].Weight = 9
	st.Spec.Services[0].HealthCheck.ExpectStatus[0] = 500
	st.Spec.Services[1].HealthCheck.Command[0] = "/bin/false"
	delete(st.Nodes, "m30")
	spec := a.f.Spec()
	spec.Services[0].HealthCheck.Path = "/changed"

	if !reflect.DeepEqual(a.f.State(), want) {
		t.Error("modifying a returned copy changed the FSM")
	}
}

func TestSubscribe(t *testing.T) {
	a := applier{f: New()}
	ch, cancel := a.f.Subscribe()
	other, cancelOther := a.f.Subscribe()
	defer cancelOther()

	// Two changes while nobody reads coalesce into one pending signal, and
	// Apply does not block.
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	for name, c := range map[string]<-chan struct{}{"first": ch, "second": other} {
		select {
		case <-c:
		default:
			t.Fatalf("%s watcher not signalled", name)
		}
		select {
		case <-c:
			t.Errorf("%s watcher got two signals; they should coalesce", name)
		default:
		}
	}

	cancel()
	cancel() // idempotent
	if _, open := <-ch; open {
		t.Error("channel still open after cancel")
	}
	// A cancelled watcher is no longer signalled (a send would panic).
	a.result(t, mustEncode(t, CmdDeregisterNode, DeregisterNode{Name: "m30"}))
	select {
	case <-other:
	default:
		t.Error("remaining watcher not signalled")
	}
}

// TestConcurrentReaders is for the race detector: readers and watchers run
// while Raft applies and restores.
func TestConcurrentReaders(t *testing.T) {
	a := applier{f: New()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, cancel := a.f.Subscribe()
			defer cancel()
			for {
				select {
				case <-done:
					return
				case <-ch:
				default:
				}
				if st := a.f.State(); st.Spec.Validate() != nil {
					t.Error("a reader saw an invalid spec")
					return
				}
				_ = a.f.Spec()
			}
		}()
	}
	specs := []spec.Spec{squidSpec(), webSpec()}
	for i := range 200 {
		a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: specs[i%2]}))
		a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", []string{"10.0.0.30", "10.0.0.31"}[i%2])))
	}
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if err := a.f.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	if v := a.f.Spec().Version; v != 200 {
		t.Errorf("version = %d after 200 alternating specs, want 200", v)
	}
}
