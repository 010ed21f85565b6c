package fsm

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

var vipA = netip.MustParseAddr("172.95.69.100")

func holderOf(a *applier, vip netip.Addr) (Holder, bool) {
	h, ok := a.f.State().Holders[vip]
	return h, ok
}

// TestHolderRecords: a claim records the holder and its term; a release
// counts only for that holder (and term); a later term's claim stands over
// an older one; a VIP that leaves the spec leaves the record.
func TestHolderRecords(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	claim := func(node string, term uint64) *Result {
		return a.result(t, mustEncode(t, CmdClaimVIPs, ClaimVIPs{Node: node, Term: term, VIPs: []netip.Addr{vipA}, At: at}))
	}
	release := func(node string, term uint64, reason string) *Result {
		return a.result(t, mustEncode(t, CmdReleaseVIPs, ReleaseVIPs{Node: node, Term: term, VIPs: []netip.Addr{vipA}, Reason: reason, At: at.Add(time.Second)}))
	}
	if r := claim("m30", 3); !r.Changed {
		t.Fatal("first claim changed nothing")
	}
	if h, _ := holderOf(&a, vipA); h.Node != "m30" || h.Term != 3 || h.Released || !h.Since.Equal(at) {
		t.Fatalf("holder %+v", h)
	}
	if r := release("m40", 3, ReleaseHandOver); r.Changed {
		t.Error("another node's release counted")
	}
	if r := release("m30", 2, ReleaseHandOver); r.Changed {
		t.Error("a release for an older term counted")
	}
	if r := claim("m40", 2); r.Changed {
		t.Error("an older term's claim replaced a later one")
	}
	if r := release("m30", 0, ReleaseRestart); !r.Changed {
		t.Error("a release without a term (a restarted agent's) did not count")
	}
	if h, _ := holderOf(&a, vipA); !h.Released || h.Reason != ReleaseRestart {
		t.Fatalf("after the release: %+v", h)
	}
	if r := release("m30", 3, ReleaseStopped); r.Changed {
		t.Error("a second release changed the record")
	}
	claim("m40", 4)
	if h, _ := holderOf(&a, vipA); h.Node != "m40" || h.Released {
		t.Fatalf("after m40's claim: %+v", h)
	}
	empty := squidSpec()
	empty.VIPs, empty.Services = nil, nil
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: empty}))
	if _, ok := holderOf(&a, vipA); ok {
		t.Error("a VIP gone from the spec kept its holder record")
	}
}

func TestHolderCommandsRefuseBadInput(t *testing.T) {
	a := applier{f: New()}
	for _, c := range []ClaimVIPs{
		{Node: "", Term: 1, VIPs: []netip.Addr{vipA}},
		{Node: "m30", Term: 0, VIPs: []netip.Addr{vipA}},
		{Node: "m30", Term: 1},
		{Node: "m30", Term: 1, VIPs: []netip.Addr{vipA, vipA}},
	} {
		var ve *spec.ValidationError
		if r := a.result(t, mustEncode(t, CmdClaimVIPs, c)); !errors.As(r.Err, &ve) || r.Changed {
			t.Errorf("claim %+v: %+v, want a validation error and no change", c, r)
		}
	}
	if r := a.result(t, mustEncode(t, CmdReleaseVIPs, ReleaseVIPs{Node: "m30", VIPs: []netip.Addr{vipA}, Reason: "bored"})); r.Err == nil {
		t.Error("a release with an unknown reason was accepted")
	}
}

// TestFenceHistory: intent, then result; a success (or an operator's
// confirmation) counts as the target letting go of what it held.
func TestFenceHistory(t *testing.T) {
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a.result(t, mustEncode(t, CmdClaimVIPs, ClaimVIPs{Node: "m30", Term: 3, VIPs: []netip.Addr{vipA}, At: at}))
	a.result(t, mustEncode(t, CmdFenceStart, FenceStart{Target: "m30", Action: spec.FenceReboot, By: "m40", Term: 4, Reason: "takeover of 172.95.69.100", At: at}))
	id := a.index
	st := a.f.State()
	if len(st.FenceHistory) != 1 || st.FenceHistory[0].ID != id || st.FenceHistory[0].Result != "" {
		t.Fatalf("after the intent: %+v", st.FenceHistory)
	}
	if h, _ := holderOf(&a, vipA); h.Released {
		t.Fatal("an intent released the holder")
	}
	a.result(t, mustEncode(t, CmdFenceDone, FenceDone{ID: id, Result: FenceFailed, Level: 1, Device: "ipmi", Attempts: 3, ExitCode: 1, Output: "Failed: Unable to connect", At: at.Add(time.Minute)}))
	if h, _ := holderOf(&a, vipA); h.Released {
		t.Fatal("a failed fence released the holder")
	}
	a.result(t, mustEncode(t, CmdFenceStart, FenceStart{Target: "m30", Action: spec.FenceReboot, By: "m40", Term: 4, Reason: "takeover, retried", At: at}))
	a.result(t, mustEncode(t, CmdFenceDone, FenceDone{ID: a.index, Result: FenceSuccess, Level: 2, Device: "pdu", Attempts: 1, At: at.Add(2 * time.Minute)}))
	if h, _ := holderOf(&a, vipA); !h.Released || h.Reason != ReleaseFenced {
		t.Fatalf("after a fence: %+v", h)
	}
	a.result(t, mustEncode(t, CmdClaimVIPs, ClaimVIPs{Node: "m50", Term: 5, VIPs: []netip.Addr{vipA}, At: at}))
	a.result(t, mustEncode(t, CmdFenceConfirm, FenceConfirm{Target: "m50", By: "m40", At: at.Add(3 * time.Minute)}))
	st = a.f.State()
	if h := st.Holders[vipA]; !h.Released || h.Reason != ReleaseConfirmed {
		t.Fatalf("after a confirmation: %+v", h)
	}
	if n := len(st.FenceHistory); n != 3 || st.FenceHistory[2].Result != FenceConfirmed {
		t.Fatalf("history %+v", st.FenceHistory)
	}
	if r := a.result(t, mustEncode(t, CmdFenceDone, FenceDone{ID: id, Result: "maybe", At: at})); r.Err == nil {
		t.Error("an unknown fence result was accepted")
	}
	if r := a.result(t, mustEncode(t, CmdFenceDone, FenceDone{ID: id, Result: FenceFailed, Output: strings.Repeat("x", spec.MaxFenceOutput+1), At: at})); r.Err == nil {
		t.Error("an unbounded output was accepted")
	}
}

// TestDeviceChecks: a device's check is recorded while the device is in
// the spec, refused when malformed, and forgotten with the device.
func TestDeviceChecks(t *testing.T) {
	a := applier{f: New()}
	for _, n := range []string{"m30", "m40"} {
		a.result(t, mustEncode(t, CmdRegisterNode, testNode(n, map[string]string{"m30": "10.0.0.30", "m40": "10.0.0.40"}[n])))
	}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: fencedSpec()}))
	dev := fencedSpec().Fencing.Devices[0].Name
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if r := a.result(t, mustEncode(t, CmdDeviceCheck|IgnoreUnknownType, DeviceCheck{Device: dev, Action: CheckValidate, Error: "bad login", At: at})); !r.Changed {
		t.Fatalf("check: %+v", r)
	}
	if c := a.f.State().DeviceChecks[dev]; c.OK || c.Error != "bad login" || !c.At.Equal(at) {
		t.Errorf("recorded %+v", c)
	}
	for _, bad := range []DeviceCheck{
		{Device: dev, Action: "reboot", At: at},
		{Device: "../x", Action: CheckMonitor, At: at},
		{Device: dev, Action: CheckMonitor, OK: true, Error: "both", At: at},
		{Device: dev, Action: CheckMonitor, Error: strings.Repeat("e", MaxCheckError+1), At: at},
	} {
		if r := a.result(t, mustEncode(t, CmdDeviceCheck, bad)); r.Err == nil || r.Changed {
			t.Errorf("check %+v accepted", bad)
		}
	}
	if r := a.result(t, mustEncode(t, CmdDeviceCheck, DeviceCheck{Device: "unknown-device", Action: CheckMonitor, OK: true, At: at})); r.Err != nil || r.Changed {
		t.Errorf("a check of a device not in the spec: %+v, want no change", r)
	}
	s := fencedSpec()
	s.Policy, s.Fencing = spec.Policy{NoQuorum: "stop", Takeover: spec.TakeoverLease}, spec.Fencing{}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: s}))
	if _, ok := a.f.State().DeviceChecks[dev]; ok {
		t.Error("a device gone from the spec kept its check")
	}
}

// TestFencingSpec: a fenced spec is valid only against a registry that
// has its nodes, and bad fencing input is refused with its path.
func TestFencingSpec(t *testing.T) {
	a := applier{f: New()}
	if r := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: fencedSpec()})); r.Err == nil || !strings.Contains(r.Err.Error(), "not a node of the cluster") {
		t.Fatalf("a fencing section naming unknown nodes: %+v", r)
	}
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m40", "10.0.0.40")))
	if r := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: fencedSpec()})); r.Err != nil || !r.Changed {
		t.Fatalf("a valid fenced spec: %+v", r)
	}
	if got := a.f.Spec().Fencing.LevelsFor("m30"); len(got) != 2 || got[0][0].Name != "ipmi" || got[1][0].Name != "pdu" {
		t.Errorf("m30's levels %+v", got)
	}
	if got := a.f.Spec().Fencing.LevelsFor("m40"); len(got) != 1 || got[0][0].Plug("m40") != "2" {
		t.Errorf("m40's levels (no topology: each device a level) %+v", got)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*spec.Spec)
		path   string
	}{
		{"no agent", func(s *spec.Spec) { s.Fencing.Devices[0].Agent = "" }, "fencing.devices[0].agent"},
		{"relative path", func(s *spec.Spec) { s.Fencing.Devices[0].Agent = "bin/fence_x" }, "fencing.devices[0].agent"},
		{"unknown action", func(s *spec.Spec) { s.Fencing.Devices[0].Action = "poweroff" }, "fencing.devices[0].action"},
		{"timeout out of range", func(s *spec.Spec) { s.Fencing.Devices[0].Timeout = time.Hour }, "fencing.devices[0].timeout"},
		{"no hosts", func(s *spec.Spec) { s.Fencing.Devices[1].Hosts = nil }, "fencing.devices[1].hosts"},
		{"a level naming no device", func(s *spec.Spec) { s.Fencing.Levels["m30"] = [][]string{{"nope"}} }, "fencing.levels.m30[0]"},
		{"a level with a device that does not fence the node", func(s *spec.Spec) { s.Fencing.Levels["m40"] = [][]string{{"pdu"}} }, "fencing.levels.m40[0]"},
		{"a secret in the spec", func(s *spec.Spec) { s.Fencing.Devices[0].Params["password"] = spec.FenceParam{Value: "hunter2"} }, "fencing.devices[0].params.password"},
		{"an option raftlb sets", func(s *spec.Spec) { s.Fencing.Devices[0].Params["plug"] = spec.FenceParam{Value: "1"} }, "fencing.devices[0].params.plug"},
		{"duplicate device", func(s *spec.Spec) { s.Fencing.Devices[1].Name = "ipmi" }, "fencing.devices[1].name"},
		{"delay backwards", func(s *spec.Spec) { s.Fencing.Devices[0].DelayMin = time.Minute }, "fencing.devices[0].delay"},
		{"freeze without fence", func(s *spec.Spec) { s.Policy.Takeover = spec.TakeoverLease }, "policy.no_quorum"},
		{"fence without devices", func(s *spec.Spec) { s.Policy.NoQuorum = spec.NoQuorumStop; s.Fencing = spec.Fencing{} }, "policy.takeover"},
		{"ignore", func(s *spec.Spec) { s.Policy.NoQuorum = spec.NoQuorumIgnore }, "policy.no_quorum"},
		{"fencing: true", func(s *spec.Spec) { s.Policy.Fencing = true }, "policy.fencing"},
		{"unknown takeover", func(s *spec.Spec) { s.Policy.Takeover = "yolo" }, "policy.takeover"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fencedSpec()
			tc.mutate(&s)
			before := a.f.State()
			r := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: s}))
			var ve *spec.ValidationError
			if !errors.As(r.Err, &ve) || r.Changed {
				t.Fatalf("%+v, want a validation error and no change", r)
			}
			found := false
			for _, p := range ve.Problems {
				found = found || p.Path == tc.path
			}
			if !found {
				t.Errorf("problems %v, want one at %s", ve.Problems, tc.path)
			}
			if after := a.f.State(); after.Spec.Version != before.Spec.Version {
				t.Errorf("a refused spec changed the version")
			}
		})
	}
}
