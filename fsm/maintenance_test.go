package fsm

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

func TestStandbyAndDisabledDrainBackends(t *testing.T) {
	a := &applier{f: New()}
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m40", "10.0.0.40")))
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	svc := a.f.State().Spec.Services[0]
	all := func(string) bool { return true }
	weights := func() map[string]string {
		out := map[string]string{}
		st := a.f.State()
		for _, b := range st.Backends(svc, all) {
			out[b.Node] = b.Drained
			if (b.Drained == "") != (b.Weight == svc.RealServers.NodeWeight) {
				t.Errorf("%s: weight %d, drained %q", b.Node, b.Weight, b.Drained)
			}
		}
		return out
	}
	now := time.Now()
	if res := a.result(t, mustEncode(t, CmdNodeStandby, NodeStandby{Node: "m30", Standby: true, By: "m40", At: now})); !res.Changed {
		t.Fatal("standby changed nothing")
	}
	if w := weights(); w["m30"] != "node m30 in standby" || w["m40"] != "" {
		t.Errorf("after standby of m30: %v", w)
	}
	if res := a.result(t, mustEncode(t, CmdNodeStandby, NodeStandby{Node: "m30", Standby: true, At: now})); res.Changed {
		t.Error("a second standby changed the state")
	}
	ref := ServerRef{Service: svc.Key(), Server: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.40"), 3128)}
	a.result(t, mustEncode(t, CmdServerDisable, ServerDisable{ServerRef: ref, Disabled: true, At: now}))
	if w := weights(); w["m40"] != "disabled" {
		t.Errorf("after disabling m40's server: %v", w)
	}
	a.result(t, mustEncode(t, CmdNodeStandby, NodeStandby{Node: "m30", At: now}))
	a.result(t, mustEncode(t, CmdServerDisable, ServerDisable{ServerRef: ref, At: now}))
	if w := weights(); w["m30"] != "" || w["m40"] != "" {
		t.Errorf("after unstandby and enable: %v", w)
	}
	if st := a.f.State(); len(st.Standby) != 0 || len(st.Disabled) != 0 || st.Schema != 3 {
		t.Errorf("state %v %v, schema %d", st.Standby, st.Disabled, st.Schema)
	}

	for _, tc := range []struct {
		cmd  []byte
		want string
	}{
		{mustEncode(t, CmdNodeStandby, NodeStandby{Node: "m99", Standby: true, At: now}), "m99 is not a node of this cluster"},
		{mustEncode(t, CmdServerDisable, ServerDisable{ServerRef: ServerRef{Service: svc.Key(), Server: netip.MustParseAddrPort("10.0.0.99:3128")}, Disabled: true, At: now}), "10.0.0.99:3128 is not a real server of"},
		{mustEncode(t, CmdServerDisable, ServerDisable{ServerRef: ServerRef{Service: spec.ServiceKey{VIP: svc.VIP, Port: 9, Protocol: "tcp"}, Server: ref.Server}, Disabled: true, At: now}), "no service"},
	} {
		before := a.f.State()
		res := a.result(t, tc.cmd)
		if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) || res.Changed {
			t.Errorf("%v: changed %v, want refused: %q", res.Err, res.Changed, tc.want)
		}
		if after := a.f.State(); len(after.Standby) != len(before.Standby) || len(after.Disabled) != len(before.Disabled) {
			t.Error("a refused command changed the state")
		}
	}
}
