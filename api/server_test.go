package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// testServer is a Server on a unix socket with a Client pointed at it.
type testServer struct {
	agent  *FakeAgent
	client *Client
	raw    *http.Client // for requests the Client cannot make
	addr   string
	left   chan struct{} // receives once per call of the left callback
	srv    *Server
}

func startServer(t *testing.T, agent *FakeAgent) *testServer {
	t.Helper()
	path := socketPath(t)
	ln, err := Listen(Addr{Unix: path})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{agent: agent, addr: "unix://" + path, left: make(chan struct{}, 8)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ts.srv = NewServer(agent, func() { ts.left <- struct{}{} }, logger)
	served := make(chan error, 1)
	go func() { served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if ts.client, err = NewClient(ts.addr); err != nil {
		t.Fatal(err)
	}
	ts.raw = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return ts
}

// get sends a raw GET and returns the body and the status code.
func (ts *testServer) get(t *testing.T, path string) (string, int) {
	t.Helper()
	resp, err := ts.raw.Get("http://raftlb" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), resp.StatusCode
}

// do sends a raw request and returns the status code and decoded body.
func (ts *testServer) do(t *testing.T, method, path, ctype string, body []byte) (int, ErrorResponse) {
	t.Helper()
	req, err := http.NewRequest(method, "http://raftlb"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := ts.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var er ErrorResponse
	// 404 and 405 come from the mux, in plain text; every handler error is JSON.
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		if err := json.Unmarshal(data, &er); err != nil {
			t.Fatalf("%s %s: %s answer is not JSON: %v: %q", method, path, resp.Status, err, data)
		}
		if er.Error == "" {
			t.Errorf("%s %s: %s answer has no error message: %q", method, path, resp.Status, data)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
		}
	}
	return resp.StatusCode, er
}

// apiError asserts that err is an *Error with the given code.
func apiError(t *testing.T, err error, code int) *Error {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T): want an *api.Error with code %d", err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("error code %d (%v), want %d", ae.Code, ae, code)
	}
	if ae.Message == "" {
		t.Errorf("error with code %d has no message", code)
	}
	return ae
}

const validServices = `vips:
  - address: 172.95.69.100
services:
  - name: squid
    vip: 172.95.69.100
    port: 3128
    scheduler: rr
`

func TestStatusJSONKeys(t *testing.T) {
	agent := &FakeAgent{View: sampleStatus()}
	ts := startServer(t, agent)

	req, _ := http.NewRequest(http.MethodGet, "http://raftlb/v1/status", nil)
	resp, err := ts.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/View: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	// These keys are the CLI's contract with scripts (status --json).
	for _, k := range []string{"dc", "term", "quorum", "spec_version", "nodes", "vips", "services"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("status JSON has no key %q: %v", k, doc)
		}
	}
	if doc["dc"] != "n2" || doc["term"] != 7.0 || doc["quorum"] != true || doc["spec_version"] != 4.0 {
		t.Errorf("status JSON values: dc=%v term=%v quorum=%v spec_version=%v", doc["dc"], doc["term"], doc["quorum"], doc["spec_version"])
	}
	nodes, _ := doc["nodes"].([]any)
	if len(nodes) != 3 {
		t.Fatalf("nodes = %v, want 3 entries", doc["nodes"])
	}
	for i, n := range nodes {
		m, _ := n.(map[string]any)
		for _, k := range []string{"name", "status", "role"} {
			if _, ok := m[k]; !ok {
				t.Errorf("nodes[%d] has no key %q: %v", i, k, m)
			}
		}
	}
	if m, _ := nodes[1].(map[string]any); m["name"] != "n2" || m["status"] != "online" || m["role"] != "DC" {
		t.Errorf("nodes[1] = %v, want n2 online DC", m)
	}
	if vips, _ := doc["vips"].([]any); len(vips) != 1 {
		t.Errorf("vips = %v, want 1 entry", doc["vips"])
	}
	if svcs, _ := doc["services"].([]any); len(svcs) != 1 {
		t.Errorf("services = %v, want 1 entry", doc["services"])
	}
}

func TestStatusThroughClient(t *testing.T) {
	want := sampleStatus()
	ts := startServer(t, &FakeAgent{View: want})
	got, err := ts.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status did not survive the round trip:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestApplyValidFile(t *testing.T) {
	agent := &FakeAgent{ApplyResult: cluster.ApplyResult{Version: 5, Changed: true}}
	ts := startServer(t, agent)

	r, err := ts.client.Apply(context.Background(), []byte(validServices), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.SpecVersion != 5 || !r.Changed || len(r.Changes) == 0 || r.CatchingUp {
		t.Errorf("apply answered %+v, want version 5 changed, with its changes", r)
	}
	want, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	applied := agent.Applied()
	if len(applied) != 1 {
		t.Fatalf("ApplySpec called %d times, want once", len(applied))
	}
	if !reflect.DeepEqual(applied[0].Spec, want) {
		t.Errorf("ApplySpec got\n%+v\nwant\n%+v", applied[0].Spec, want)
	}
	if applied[0].Expect != 0 {
		t.Errorf("expect version %d, want 0 when none was asked", applied[0].Expect)
	}
}

func TestApplyUnchanged(t *testing.T) {
	agent := &FakeAgent{ApplyResult: cluster.ApplyResult{Version: 9, Changed: false}}
	ts := startServer(t, agent)
	r, err := ts.client.Apply(context.Background(), []byte(validServices), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.SpecVersion != 9 || r.Changed || len(r.Changes) != 0 {
		t.Errorf("apply answered %+v, want version 9 unchanged, no changes", r)
	}
}

func TestApplyExpectVersion(t *testing.T) {
	agent := &FakeAgent{ApplyResult: cluster.ApplyResult{Version: 6, Changed: true}}
	ts := startServer(t, agent)

	code, _ := ts.do(t, http.MethodPost, "/v1/apply?expect_version=5", "application/yaml", []byte(validServices))
	if code != http.StatusOK {
		t.Fatalf("expect_version=5: status %d, want 200", code)
	}
	if applied := agent.Applied(); len(applied) != 1 || applied[0].Expect != 5 {
		t.Fatalf("ApplySpec calls %+v, want one with expect version 5", applied)
	}

	for _, v := range []string{"abc", "-1", "1.5", "18446744073709551616"} {
		code, er := ts.do(t, http.MethodPost, "/v1/apply?expect_version="+v, "application/yaml", []byte(validServices))
		if code != http.StatusBadRequest {
			t.Errorf("expect_version=%s: status %d, want 400", v, code)
		}
		if !strings.Contains(er.Error, "expect_version") {
			t.Errorf("expect_version=%s: error %q does not name expect_version", v, er.Error)
		}
	}
	if n := len(agent.Applied()); n != 1 {
		t.Errorf("ApplySpec called %d times, want only the valid request to reach it", n)
	}
}

func TestApplyRejectsBadFile(t *testing.T) {
	cases := []struct {
		name, file string
		paths      []string // problem paths the answer must list
		message    string   // fragment of the error message when there are no problems
	}{
		{
			name:    "invalid YAML",
			file:    "vips: [\n",
			message: "services file: yaml: line",
		},
		{
			name:    "unknown field",
			file:    "vips: []\nservise: []\n",
			message: `unknown field "servise"`,
		},
		{
			name:    "two documents",
			file:    validServices + "---\n" + validServices,
			message: "second YAML document",
		},
		{
			name:  "invalid spec",
			file:  "vips: [{address: 10.0.0.1}]\nservices:\n  - vip: 10.0.0.2\n    port: 0\n",
			paths: []string{"services[0] (10.0.0.2:0/tcp).vip", "services[0] (10.0.0.2:0/tcp).port"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			agent := &FakeAgent{}
			ts := startServer(t, agent)
			_, err := ts.client.Apply(context.Background(), []byte(tc.file), ApplyOptions{})
			ae := apiError(t, err, http.StatusBadRequest)
			var got []string
			for _, p := range ae.Problems {
				got = append(got, p.Path)
				if p.Message == "" || p.Line == 0 {
					t.Errorf("problem %+v lacks a message or a line", p)
				}
			}
			if !slices.Equal(got, tc.paths) {
				t.Errorf("problem paths %q, want %q", got, tc.paths)
			}
			if len(tc.paths) > 0 {
				if !strings.Contains(ae.Message, "nothing was changed") {
					t.Errorf("message %q: want it to say nothing was changed", ae.Message)
				}
				// The Client's error lists every problem for the operator.
				for _, p := range tc.paths {
					if !strings.Contains(ae.Error(), p) {
						t.Errorf("Error() %q does not list %q", ae.Error(), p)
					}
				}
			} else if !strings.Contains(ae.Message, tc.message) {
				t.Errorf("message %q, want it to contain %q", ae.Message, tc.message)
			}
			if n := len(agent.Applied()); n != 0 {
				t.Errorf("ApplySpec called %d times for a rejected file", n)
			}
		})
	}
}

func TestApplyOversizedBody(t *testing.T) {
	agent := &FakeAgent{}
	ts := startServer(t, agent)
	// A valid file padded with a comment past the 1 MiB limit.
	body := []byte(validServices + "# " + strings.Repeat("x", maxBody) + "\n")
	_, err := ts.client.Apply(context.Background(), body, ApplyOptions{})
	ae := apiError(t, err, http.StatusRequestEntityTooLarge)
	if !strings.Contains(ae.Message, "too large") {
		t.Errorf("message %q: want it to say the file is too large", ae.Message)
	}
	if n := len(agent.Applied()); n != 0 {
		t.Errorf("ApplySpec called %d times for an oversized body", n)
	}

	// Exactly at the limit is still accepted.
	body = []byte(validServices + "#")
	body = append(body, bytes.Repeat([]byte("x"), maxBody-len(body))...)
	if _, err := ts.client.Apply(context.Background(), body, ApplyOptions{}); err != nil {
		t.Errorf("a body of exactly %d bytes: %v", maxBody, err)
	}
	if n := len(agent.Applied()); n != 1 {
		t.Errorf("ApplySpec called %d times, want once for the body at the limit", n)
	}
}

func TestApplyAgentErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code int
	}{
		{"conflict", fmt.Errorf("%w: spec is at version 8, not 7", cluster.ErrConflict), http.StatusConflict},
		{"no DC", fmt.Errorf("forward: %w", cluster.ErrNoDC), http.StatusServiceUnavailable},
		{"validation on the DC", &spec.ValidationError{Problems: []spec.Problem{{Path: "services[0].port", Message: "taken"}}}, http.StatusBadRequest},
		{"other", errors.New("disk on fire"), http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			agent := &FakeAgent{ApplyErr: tc.err}
			ts := startServer(t, agent)
			_, err := ts.client.Apply(context.Background(), []byte(validServices), ApplyOptions{})
			ae := apiError(t, err, tc.code)
			var ve *spec.ValidationError
			if errors.As(tc.err, &ve) {
				if !reflect.DeepEqual(ae.Problems, ve.Problems) {
					t.Errorf("problems %+v, want %+v", ae.Problems, ve.Problems)
				}
			} else if ae.Message != tc.err.Error() {
				t.Errorf("message %q, want the agent's %q", ae.Message, tc.err.Error())
			}
			// A conflict without expect_version is this node being
			// behind: it catches up and compares again, twice.
			want := map[bool]int{true: 3, false: 1}[tc.name == "conflict"]
			if n := len(agent.Applied()); n != want {
				t.Errorf("ApplySpec called %d times, want %d", n, want)
			}
		})
	}
}

// TestApplyDryRunAndSummary: a dry run lists what an apply would change
// and changes nothing; the apply itself lists what it changed and is made
// conditional on the version it compared with.
func TestApplyDryRunAndSummary(t *testing.T) {
	cur, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	cur.Version = 4
	agent := &FakeAgent{Current: cur, ApplyResult: cluster.ApplyResult{Version: 5, Changed: true}}
	ts := startServer(t, agent)
	next := strings.Replace(validServices, "scheduler: rr", "scheduler: wlc", 1)
	if next == validServices {
		t.Fatal("the test file has no scheduler: rr to change")
	}
	r, err := ts.client.Apply(context.Background(), []byte(next), ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.DryRun || r.SpecVersion != 4 || len(r.Changes) != 1 || !strings.Contains(r.Changes[0].String(), "scheduler rr → wlc") {
		t.Errorf("dry run answered %+v, want the one change against version 4", r)
	}
	if n := len(agent.Applied()); n != 0 {
		t.Fatalf("a dry run called ApplySpec %d times", n)
	}
	r, err = ts.client.Apply(context.Background(), []byte(next), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.DryRun || r.SpecVersion != 5 || len(r.Changes) != 1 {
		t.Errorf("apply answered %+v, want version 5 and the one change", r)
	}
	if a := agent.Applied(); len(a) != 1 || a[0].Expect != 4 {
		t.Errorf("ApplySpec calls %+v, want one conditional on version 4", a)
	}

	agent.mu.Lock()
	agent.SpecWaitErr = context.DeadlineExceeded
	agent.mu.Unlock()
	if r, err := ts.client.Apply(context.Background(), []byte(next), ApplyOptions{}); err != nil || !r.CatchingUp {
		t.Errorf("apply on a node that has not applied the version yet: %+v, %v; want catching_up", r, err)
	}
}

// TestApplyRefusesToEmptyTheSpec: an empty or comment-only file would
// remove every service and VIP: refused unless allowed, and nothing is
// changed.
func TestApplyRefusesToEmptyTheSpec(t *testing.T) {
	cur, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	agent := &FakeAgent{Current: cur, ApplyResult: cluster.ApplyResult{Version: 2, Changed: true}}
	ts := startServer(t, agent)
	for _, file := range []string{"", "# nothing here\n"} {
		_, err := ts.client.Apply(context.Background(), []byte(file), ApplyOptions{})
		ae := apiError(t, err, http.StatusBadRequest)
		for _, want := range []string{"would remove all 1 service(s) and 1 VIP(s)", "nothing was changed", "--allow-empty"} {
			if !strings.Contains(ae.Message, want) {
				t.Errorf("%q: message %q lacks %q", file, ae.Message, want)
			}
		}
	}
	if n := len(agent.Applied()); n != 0 {
		t.Fatalf("ApplySpec called %d times for an empty file", n)
	}
	r, err := ts.client.Apply(context.Background(), nil, ApplyOptions{AllowEmpty: true})
	if err != nil || len(r.Changes) != 2 {
		t.Errorf("allowed: %+v, %v; want both removals listed", r, err)
	}
	for _, q := range []string{"dry_run=maybe", "allow_empty=2"} {
		if code, _ := ts.do(t, http.MethodPost, "/v1/apply?"+q, "application/yaml", nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
}

// TestApplyAndLeaveWithoutDCFailFast: with no DC known, apply and leave
// say so within the election wait and change nothing.
func TestApplyAndLeaveWithoutDCFailFast(t *testing.T) {
	agent := &FakeAgent{NoDC: true, View: status.Status{Warning: "this node has lost contact with the DC"}}
	ts := startServer(t, agent)
	ts.srv.dcWait = 200 * time.Millisecond
	_, err := ts.client.Apply(context.Background(), []byte(validServices), ApplyOptions{})
	ae := apiError(t, err, http.StatusServiceUnavailable)
	if !strings.Contains(ae.Message, "lost contact with the DC") || !strings.Contains(ae.Message, "nothing was changed") {
		t.Errorf("apply without a DC: %q", ae.Message)
	}
	err = ts.client.Leave(context.Background())
	ae = apiError(t, err, http.StatusServiceUnavailable)
	if !strings.HasPrefix(ae.Message, "cannot leave: no DC") {
		t.Errorf("leave without a DC: %q", ae.Message)
	}
	if len(agent.Applied()) != 0 || agent.Leaves() != 0 {
		t.Error("a request without a DC reached the agent")
	}
}

// TestSpecShow: GET /v1/spec is the applied spec as a services file.
func TestSpecShow(t *testing.T) {
	cur, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &FakeAgent{Current: cur})
	out, err := ts.client.Spec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	back, err := spec.ParseServices(out)
	if err != nil || !reflect.DeepEqual(back, cur) {
		t.Errorf("spec show → parse: %v\n%s", err, out)
	}
}

func TestJoin(t *testing.T) {
	agent := &FakeAgent{JoinContacted: 2}
	ts := startServer(t, agent)
	addrs := []string{"10.0.0.1:7946", "[fd00::2]:7946", "m40.example:7946"}
	r, err := ts.client.Join(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Contacted != 2 {
		t.Errorf("contacted %d, want 2", r.Contacted)
	}
	if got := agent.Joins(); len(got) != 1 || !slices.Equal(got[0], addrs) {
		t.Errorf("Join calls %q, want one with %q", got, addrs)
	}
}

func TestJoinAgentError(t *testing.T) {
	agent := &FakeAgent{JoinErr: errors.New("no node answered")}
	ts := startServer(t, agent)
	_, err := ts.client.Join(context.Background(), []string{"10.0.0.1:7946"})
	ae := apiError(t, err, http.StatusBadGateway)
	if ae.Message != "no node answered" {
		t.Errorf("message %q, want the agent's error", ae.Message)
	}
}

func TestJoinRejectsBadRequest(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"garbage", `{"addresses": [`, "join request"},
		{"not JSON", `hello`, "join request"},
		{"unknown field", `{"addresses": ["10.0.0.1:7946"], "force": true}`, "unknown field"},
		{"empty list", `{"addresses": []}`, "no addresses"},
		{"no list", `{}`, "no addresses"},
		{"address without port", `{"addresses": ["10.0.0.1:7946", "10.0.0.2"]}`, `"10.0.0.2"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			agent := &FakeAgent{}
			ts := startServer(t, agent)
			code, er := ts.do(t, http.MethodPost, "/v1/join", "application/json", []byte(tc.body))
			if code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", code)
			}
			if !strings.Contains(er.Error, tc.want) {
				t.Errorf("error %q, want it to contain %q", er.Error, tc.want)
			}
			if got := agent.Joins(); len(got) != 0 {
				t.Errorf("Join called with %q for a bad request", got)
			}
		})
	}
	// Through the Client as well: it reports the code.
	agent := &FakeAgent{}
	ts := startServer(t, agent)
	_, err := ts.client.Join(context.Background(), []string{"10.0.0.2"})
	apiError(t, err, http.StatusBadRequest)
	if got := agent.Joins(); len(got) != 0 {
		t.Errorf("Join called with %q for an address without port", got)
	}
}

func TestLeave(t *testing.T) {
	agent := &FakeAgent{}
	ts := startServer(t, agent)
	if err := ts.client.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := agent.Leaves(); n != 1 {
		t.Errorf("Leave called %d times, want once", n)
	}
	select {
	case <-ts.left:
	case <-time.After(10 * time.Second):
		t.Fatal("the left callback did not fire after a successful leave")
	}
	if ts.leftAfterShutdown(t) {
		t.Error("the left callback fired twice")
	}
}

// leftAfterShutdown shuts the server down and reports whether the left
// callback fired (again). Shutdown waits for the handlers, which start the
// callback before they return.
func (ts *testServer) leftAfterShutdown(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ts.left:
		return true
	default:
		return false
	}
}

func TestLeaveFailureDoesNotStopTheAgent(t *testing.T) {
	agent := &FakeAgent{LeaveErr: fmt.Errorf("hand over: %w", cluster.ErrNoDC)}
	ts := startServer(t, agent)
	err := ts.client.Leave(context.Background())
	apiError(t, err, http.StatusServiceUnavailable)
	if ts.leftAfterShutdown(t) {
		t.Error("the left callback fired after a failed leave")
	}
}

func TestWrongMethods(t *testing.T) {
	agent := &FakeAgent{View: sampleStatus()}
	ts := startServer(t, agent)
	cases := []struct{ method, path string }{
		{http.MethodPost, "/v1/status"},
		{http.MethodDelete, "/v1/status"},
		{http.MethodGet, "/v1/apply"},
		{http.MethodPut, "/v1/apply"},
		{http.MethodGet, "/v1/join"},
		{http.MethodGet, "/v1/leave"},
		{http.MethodDelete, "/v1/leave"},
	}
	for _, tc := range cases {
		code, _ := ts.do(t, tc.method, tc.path, "", []byte(validServices))
		if code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 405", tc.method, tc.path, code)
		}
	}
	if code, _ := ts.do(t, http.MethodGet, "/v1/nope", "", nil); code != http.StatusNotFound {
		t.Errorf("GET /v1/nope: status %d, want 404", code)
	}
	if len(agent.Applied()) != 0 || len(agent.Joins()) != 0 || agent.Leaves() != 0 {
		t.Error("a request with the wrong method reached the agent")
	}
}

func TestClientCannotReachAgent(t *testing.T) {
	c, err := NewClient("unix://" + socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(context.Background())
	if err == nil {
		t.Fatal("Status with no agent listening succeeded")
	}
	var ae *Error
	if errors.As(err, &ae) {
		t.Errorf("got an agent answer %v, want a connection error", ae)
	}
	if !strings.Contains(err.Error(), "cannot reach the agent") {
		t.Errorf("error %q: want it to say it cannot reach the agent", err)
	}
}

func TestNewClientRejectsBadAddr(t *testing.T) {
	if _, err := NewClient("unix://relative.sock"); err == nil {
		t.Error("NewClient accepted a relative socket path")
	}
}

// TestMaintenanceEndpoints: node removal, DC move, standby and a real
// server's disable reach the agent as asked; bad requests and refusals
// come back as clear errors that change nothing.
// TestMoveAnswersOnceSettled: a DC move answers once the successor is the
// DC this node knows and holds every VIP; one whose successor never takes
// over answers all the same (the role moved) and says what is pending.
func TestMoveAnswersOnceSettled(t *testing.T) {
	cur, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	agent := &FakeAgent{Current: cur, View: status.Status{DC: "n1"}}
	ts := startServer(t, agent)
	moved, err := ts.client.MoveDC(context.Background(), "n3")
	if err != nil || moved != (MoveResponse{DC: "n3"}) {
		t.Fatalf("settled move: %+v, %v", moved, err)
	}

	agent.mu.Lock()
	agent.MoveStalls = true
	agent.mu.Unlock()
	ts.srv.settle = 100 * time.Millisecond
	moved, err = ts.client.MoveDC(context.Background(), "n2")
	if err != nil || moved.DC != "n2" || !strings.Contains(moved.Pending, "does not know n2 as the DC yet (it knows: n3)") {
		t.Errorf("stalled move: %+v, %v", moved, err)
	}
	agent.mu.Lock()
	agent.View.DC = "n2"
	agent.mu.Unlock()
	moved, err = ts.client.MoveDC(context.Background(), "n2")
	vip := cur.VIPs[0].Address.String()
	if err != nil || !strings.Contains(moved.Pending, "n2 does not hold VIP(s) "+vip+" yet") {
		t.Errorf("move without the VIPs: %+v, %v", moved, err)
	}
}

func TestMaintenanceEndpoints(t *testing.T) {
	cur, err := spec.ParseServices([]byte(validServices))
	if err != nil {
		t.Fatal(err)
	}
	n1 := netip.MustParseAddr("10.0.0.1")
	agent := &FakeAgent{Current: cur, Nodes: map[string]fsm.Node{"n1": {Name: "n1", Address: n1}}}
	ts := startServer(t, agent)
	ctx := context.Background()
	if err := ts.client.RemoveNode(ctx, "n3", true); err != nil {
		t.Fatal(err)
	}
	if moved, err := ts.client.MoveDC(ctx, ""); err != nil || moved != (MoveResponse{DC: "n2"}) {
		t.Errorf("move: %+v, %v", moved, err)
	}
	if err := ts.client.SetStandby(ctx, "n3", true); err != nil {
		t.Fatal(err)
	}
	svc := cur.Services[0] // all nodes: n1's address on the service port
	name := svc.Name
	got, err := ts.client.SetServer(ctx, name, "10.0.0.1", true)
	if err != nil || got != netip.AddrPortFrom(n1, svc.Port).String()+" of "+svc.Key().String() {
		t.Errorf("server disable: %q, %v", got, err)
	}
	if len(agent.Removed) != 1 || !agent.Removed[0].Force || len(agent.Moved) != 1 || len(agent.Standbys) != 1 || !agent.Standbys[0].Standby || len(agent.Disables) != 1 || !agent.Disables[0].Disabled {
		t.Errorf("recorded: removed %v moved %v standbys %v disables %v", agent.Removed, agent.Moved, agent.Standbys, agent.Disables)
	}

	for _, tc := range []struct{ path, body, want string }{
		{"/v1/node/remove", `{"node":"bad name!"}`, "node name"},
		{"/v1/node/standby", `{"node":""}`, "node name"},
		{"/v1/dc/move", `{"node":"n2","force":true}`, "force is for node removal"},
		{"/v1/server", `{"service":"nope","server":"10.0.0.1"}`, `no service "nope"`},
		{"/v1/server", `{"service":"` + name + `","server":"10.9.9.9"}`, "is not a real server of"},
		{"/v1/node/remove", `{"node":"n3","extra":1}`, "unknown field"},
	} {
		code, er := ts.do(t, http.MethodPost, tc.path, "application/json", []byte(tc.body))
		if code != http.StatusBadRequest || !strings.Contains(er.Error, tc.want) {
			t.Errorf("%s %s: %d %q, want 400 with %q", tc.path, tc.body, code, er.Error, tc.want)
		}
	}
	if len(agent.Removed) != 1 || len(agent.Standbys) != 1 || len(agent.Disables) != 1 || len(agent.Moved) != 1 {
		t.Error("a bad request reached the agent")
	}
	agent.mu.Lock()
	agent.AdminErr = fmt.Errorf("%w: n1 is the DC: move the DC first", cluster.ErrRefused)
	agent.mu.Unlock()
	err = ts.client.RemoveNode(ctx, "n1", false)
	apiError(t, err, http.StatusConflict)
}
