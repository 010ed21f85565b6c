package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

// fakeFencing records the fencing commands that reach the agent.
type fakeFencing struct {
	mu      sync.Mutex
	calls   []string
	err     error
	history []fsm.FenceEvent
}

func (f *fakeFencing) Fence(_ context.Context, node, action string) (fsm.FenceEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "fence "+node+" "+action)
	return fsm.FenceEvent{ID: 9, Target: node, Action: action, By: "n2"}, f.err
}

func (f *fakeFencing) Confirm(_ context.Context, node string) (fsm.FenceEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "confirm "+node)
	return fsm.FenceEvent{ID: 10, Target: node, By: "n1", Result: fsm.FenceConfirmed}, f.err
}

func (f *fakeFencing) FenceHistory() []fsm.FenceEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.history
}

func (f *fakeFencing) calledWith() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestFenceEndpoints: a fence request answers 202 with the committed
// intent, a confirmation 200; the history is a list, empty when nothing
// was fenced.
func TestFenceEndpoints(t *testing.T) {
	ts := startServer(t, &FakeAgent{View: sampleStatus()})
	f := &fakeFencing{}
	ts.srv.SetFencing(f)
	ctx := context.Background()
	h, err := ts.client.FenceHistory(ctx)
	if err != nil || h.Events == nil || len(h.Events) != 0 {
		t.Fatalf("empty history: %+v, %v; want an empty list", h, err)
	}
	if body, _ := ts.get(t, "/v1/fence/history"); !strings.Contains(body, `"events": []`) {
		t.Errorf("empty history JSON %s, want an empty list", body)
	}
	ev, err := ts.client.Fence(ctx, "n3", "off")
	if err != nil || ev.ID != 9 || ev.Target != "n3" {
		t.Fatalf("fence: %+v, %v", ev, err)
	}
	code, _ := ts.do(t, http.MethodPost, "/v1/fence", "application/json", []byte(`{"node":"n3"}`))
	if code != http.StatusAccepted {
		t.Errorf("fence answered %d, want 202", code)
	}
	if ev, err := ts.client.Confirm(ctx, "n3"); err != nil || ev.Result != fsm.FenceConfirmed {
		t.Fatalf("confirm: %+v, %v", ev, err)
	}
	if got := f.calledWith(); strings.Join(got, ",") != "fence n3 off,fence n3 ,confirm n3" {
		t.Errorf("calls %q", got)
	}
}

// TestFenceRejectsBadRequests: bad input gets a clear 400 and never
// reaches the agent; the DC's refusals and the lack of a DC keep their
// meaning; an agent without the commands says so.
func TestFenceRejectsBadRequests(t *testing.T) {
	ts := startServer(t, &FakeAgent{View: sampleStatus()})
	code, er := ts.do(t, http.MethodPost, "/v1/fence", "application/json", []byte(`{"node":"n3"}`))
	if code != http.StatusNotImplemented || er.Error == "" {
		t.Errorf("without fencing: %d %q, want 501", code, er.Error)
	}
	f := &fakeFencing{}
	ts.srv.SetFencing(f)
	for _, c := range []struct{ path, body, want string }{
		{"/v1/fence", `{"node":"../etc"}`, "node"},
		{"/v1/fence", `{"node":""}`, "node"},
		{"/v1/fence", `{"node":"n3","action":"on"}`, "unknown action"},
		{"/v1/fence", `{"node":"n3","actoin":"off"}`, "unknown field"},
		{"/v1/fence", `{"node":`, "fence request"},
		{"/v1/fence/confirm", `{"node":"a b"}`, "confirm request"},
		{"/v1/fence/confirm", `[]`, "confirm request"},
	} {
		code, er := ts.do(t, http.MethodPost, c.path, "application/json", []byte(c.body))
		if code != http.StatusBadRequest || !strings.Contains(er.Error, c.want) {
			t.Errorf("%s %s: %d %q, want 400 saying %q", c.path, c.body, code, er.Error, c.want)
		}
	}
	if got := f.calledWith(); len(got) != 0 {
		t.Errorf("bad requests reached the agent: %v", got)
	}
	f.err = cluster.ErrNoDC
	if code, _ := ts.do(t, http.MethodPost, "/v1/fence", "application/json", []byte(`{"node":"n3"}`)); code != http.StatusServiceUnavailable {
		t.Errorf("no DC: %d, want 503", code)
	}
	f.err = errors.New("no fence device of the spec fences n3")
	_, err := ts.client.Confirm(context.Background(), "n3")
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != http.StatusUnprocessableEntity || !strings.Contains(ae.Message, "no fence device") {
		t.Errorf("a refusal: %v, want 422 with the DC's reason", err)
	}
}
