package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	rspec "github.com/raftlb/raftlb/spec"
)

var (
	vip = netip.MustParseAddr("172.95.69.100")
	n1  = netip.MustParseAddr("127.0.0.1")
	n2  = netip.MustParseAddr("127.0.0.2")
)

// fakeNode is a cluster node seen from the status view.
type fakeNode struct {
	view     cluster.View
	fsm      *fsm.FSM
	dcChecks []healthEntry
	dcErr    error
	asked    int
	handlers map[string]cluster.Handler
	apply    func(index uint64, ct fsm.CommandType, payload any)
}

func (f *fakeNode) View() cluster.View          { return f.view }
func (f *fakeNode) FSM() *fsm.FSM               { return f.fsm }
func (f *fakeNode) RegisterError(string, error) {}
func (f *fakeNode) Handle(op string, h cluster.Handler) {
	if f.handlers == nil {
		f.handlers = map[string]cluster.Handler{}
	}
	f.handlers[op] = h
}

func (f *fakeNode) CallDC(_ context.Context, op string, _, resp any) error {
	f.asked++
	if f.dcErr != nil {
		return f.dcErr
	}
	b, _ := json.Marshal(f.dcChecks)
	return json.Unmarshal(b, resp)
}

func newFakeNode(t *testing.T, leader bool) *fakeNode {
	f := &fakeNode{fsm: fsm.New(), view: cluster.View{
		Node: "n1", DC: "n1", Term: 3, Quorum: true, IsLeader: leader,
		Nodes: []cluster.NodeView{{Name: "n1", Status: "online", Role: "DC"}, {Name: "n2", Status: "offline", Role: "member"}},
	}}
	f.apply = func(index uint64, ct fsm.CommandType, payload any) {
		b, err := fsm.EncodeCommand(ct, payload)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := f.fsm.Apply(&raft.Log{Index: index, Data: b}).(*fsm.Result); ok && r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	apply := f.apply
	apply(1, fsm.CmdRegisterNode, fsm.Node{Name: "n1", Address: n1, RaftAddr: netip.AddrPortFrom(n1, 7947), GossipAddr: netip.AddrPortFrom(n1, 7946)})
	apply(2, fsm.CmdRegisterNode, fsm.Node{Name: "n2", Address: n2, RaftAddr: netip.AddrPortFrom(n2, 7947), GossipAddr: netip.AddrPortFrom(n2, 7946)})
	apply(3, fsm.CmdSetSpec, fsm.SetSpec{Spec: rspec.Spec{
		VIPs: []rspec.VIP{{Address: vip, Interface: "eth0"}},
		Services: []rspec.Service{{
			Name: "squid", VIP: vip, Port: 3128, Protocol: "tcp", Scheduler: "rr", Forwarding: "route",
			RealServers: rspec.RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
			HealthCheck: &rspec.HealthCheck{Type: "tcp", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2, OnFail: "remove"},
		}},
		Policy: rspec.Policy{NoQuorum: "stop"},
	}})
	return f
}

func key(a netip.Addr) health.Key {
	return health.Key{Service: rspec.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}, Server: netip.AddrPortFrom(a, 3128)}
}

// TestAssemble: the cluster's view, the spec and the checks in one
// status; only online nodes are all-nodes real servers.
func TestAssemble(t *testing.T) {
	f := newFakeNode(t, true)
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st := Assemble(f.view, f.fsm.State(), Checks{key(n1): {Up: false, Checked: true, Since: since, LastError: "connect: connection refused"}}, nil)
	if st.DC != "n1" || st.Term != 3 || !st.Quorum || st.SpecVersion != 1 || len(st.Nodes) != 2 {
		t.Fatalf("status %+v", st)
	}
	if len(st.VIPs) != 1 || st.VIPs[0].HeldBy != "" || st.VIPs[0].Holder != nil || st.VIPs[0].Interface != "eth0" || st.VIPs[0].ThisNode != nil {
		t.Errorf("VIPs %+v", st.VIPs)
	}
	rs := st.Services[0].RealServers
	if len(rs) != 1 || rs[0].Node != "n1" || rs[0].Health != "down" || rs[0].Since == nil || !rs[0].Since.Equal(since) || rs[0].LastError == "" {
		t.Errorf("real servers %+v, want n1 only (n2 is offline), down since %v with its error", rs, since)
	}
	// Not probed yet counts as up; no checks known at all is unknown.
	if st := Assemble(f.view, f.fsm.State(), Checks{}, nil); st.Services[0].RealServers[0].Health != "up" {
		t.Errorf("not probed yet: %+v, want up", st.Services[0].RealServers[0])
	}
	if st := Assemble(f.view, f.fsm.State(), nil, nil); st.Services[0].RealServers[0].Health != "unknown" {
		t.Errorf("checks unknown: %+v, want unknown", st.Services[0].RealServers[0])
	}
}

// TestAssembleHoldersAndFencing: a VIP's holder is the log's, not the
// DC's name; a DC that waits for a takeover says what for; this node's
// kernel is shown as reported; fence devices come without their
// parameters, with their checks, and the history as committed.
func TestAssembleHoldersAndFencing(t *testing.T) {
	f := newFakeNode(t, true)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	spec := f.fsm.Spec()
	spec.Policy.Takeover = rspec.TakeoverFence
	spec.Fencing = rspec.Fencing{Devices: []rspec.FenceDevice{{
		Name: "ipmi", Agent: "fence_ipmilan", Hosts: map[string]string{"n2": "", "n1": ""}, Action: "off", Timeout: time.Minute,
		Params: map[string]rspec.FenceParam{"ip": {Value: "192.0.2.9"}, "password": {File: "/etc/raftlb/ipmi.pass"}},
	}}}
	f.apply(4, fsm.CmdSetSpec, fsm.SetSpec{Spec: spec})
	f.apply(5, fsm.CmdClaimVIPs, fsm.ClaimVIPs{Node: "n2", Term: 2, VIPs: []netip.Addr{vip}, At: at})
	f.apply(6, fsm.CmdFenceStart, fsm.FenceStart{Target: "n2", Action: "off", By: "n1", Term: 3, Reason: "it holds VIPs", At: at})
	f.apply(7, fsm.CmdDeviceCheck|fsm.IgnoreUnknownType, fsm.DeviceCheck{Device: "ipmi", Action: fsm.CheckMonitor, OK: true, At: at})
	kernel := func(a netip.Addr) Kernel { return Kernel{Interface: "eth0", OnLo: a == vip} }

	st := Assemble(f.view, f.fsm.State(), nil, kernel)
	v := st.VIPs[0]
	if v.HeldBy != "n2" || v.Holder == nil || v.Holder.Term != 2 || v.ThisNode == nil || v.ThisNode.OnInterface || !v.ThisNode.OnLo {
		t.Errorf("VIP %+v (holder %+v, kernel %+v): want held by n2 in term 2, on lo only here", v, v.Holder, v.ThisNode)
	}
	if v.Takeover == "" || !strings.Contains(v.Takeover, "fences n2") {
		t.Errorf("takeover %q: want the DC to say it fences n2", v.Takeover)
	}
	if len(st.Fencing.Devices) != 1 || st.Fencing.Devices[0].Check == nil || !st.Fencing.Devices[0].Check.OK || !slices.Equal(st.Fencing.Devices[0].Hosts, []string{"n1", "n2"}) {
		t.Errorf("devices %+v", st.Fencing.Devices)
	}
	if len(st.Fencing.History) != 1 || st.Fencing.History[0].ID != 6 || st.Fencing.History[0].Result != "" {
		t.Errorf("history %+v, want the pending intent #6", st.Fencing.History)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"192.0.2.9", "ipmi.pass", "params"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("status JSON shows a device parameter (%s): %s", leak, b)
		}
	}

	// Once fenced, nobody holds it and the DC waits for nothing.
	f.apply(8, fsm.CmdFenceDone, fsm.FenceDone{ID: 6, Result: fsm.FenceSuccess, Level: 1, Device: "ipmi", Attempts: 1, At: at})
	v = Assemble(f.view, f.fsm.State(), nil, nil).VIPs[0]
	if v.HeldBy != "" || !v.Holder.Released || v.Holder.Reason != fsm.ReleaseFenced || v.Takeover != "" || v.ThisNode != nil {
		t.Errorf("after the fence: %+v (holder %+v)", v, v.Holder)
	}
}

// TestSourceAsksTheDC: on the DC the checks are its own; elsewhere they
// are asked of the DC, and unknown when it cannot be asked.
func TestSourceAsksTheDC(t *testing.T) {
	dc := newFakeNode(t, true)
	local := func() map[health.Key]health.State {
		return map[health.Key]health.State{key(n1): {Up: true, Checked: true}}
	}
	src := NewSource(dc, local, nil)
	if got := src.Status().Services[0].RealServers[0].Health; got != "up" || dc.asked != 0 {
		t.Errorf("on the DC: health %q, asked the DC %d times; want its own checks", got, dc.asked)
	}
	// The DC serves its checks to peers.
	out, err := dc.handlers[HealthOp](context.Background(), "n2", nil)
	if entries, ok := out.([]healthEntry); err != nil || !ok || len(entries) != 1 {
		t.Errorf("serving health: %v, %v", out, err)
	}

	member := newFakeNode(t, false)
	member.dcChecks = []healthEntry{{Service: key(n1).Service, Server: key(n1).Server, State: health.State{Up: false, Checked: true}}}
	if got := NewSource(member, nil, nil).Status().Services[0].RealServers[0].Health; got != "down" || member.asked != 1 {
		t.Errorf("on a member: health %q after %d questions; want the DC's answer", got, member.asked)
	}
	if _, err := member.handlers[HealthOp](context.Background(), "n3", nil); !errors.Is(err, cluster.ErrNoDC) {
		t.Errorf("a member asked for the DC's checks: %v, want ErrNoDC", err)
	}
	member.dcErr = cluster.ErrNoDC
	if got := NewSource(member, nil, nil).Status().Services[0].RealServers[0].Health; got != "unknown" {
		t.Errorf("DC unreachable: health %q, want unknown", got)
	}
}

// TestNoChecksWithoutADataPlane: a DC without a data plane runs no health
// checks: it says so, it tells members asking so (they show unknown, not
// up), and both give the reason.
func TestNoChecksWithoutADataPlane(t *testing.T) {
	dc := newFakeNode(t, true)
	st := NewSource(dc, nil, nil).Status()
	if got := st.Services[0].RealServers[0].Health; got != "unknown" || !strings.Contains(st.HealthNote, "runs no health checks") {
		t.Errorf("on the DC: health %q, note %q", got, st.HealthNote)
	}
	if _, err := dc.handlers[HealthOp](context.Background(), "n2", nil); err == nil || !strings.Contains(err.Error(), "no data plane") {
		t.Errorf("serving health without checks: %v, want an error that says why", err)
	}
	member := newFakeNode(t, false)
	// The DC's answer, as the RPC channel hands it over: its code maps
	// back to errNoChecks (registered by NewSource).
	member.dcErr = fmt.Errorf("asked n1: %w", errNoChecks)
	st = NewSource(member, nil, nil).Status()
	if got := st.Services[0].RealServers[0].Health; got != "unknown" || st.HealthNote != errNoChecks.Error() {
		t.Errorf("on a member: health %q, note %q", got, st.HealthNote)
	}
}
