package fsm

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/spec"
)

// The fuzz targets run their seeds (f.Add and testdata/fuzz/FuzzXxx) as
// ordinary tests under `go test ./fsm`; `go test -fuzz FuzzXxx` explores.

// commandSeeds are valid commands of every type, for the command fuzzers.
func commandSeeds(f *testing.F) [][]byte {
	return [][]byte{
		mustEncode(f, CmdSetSpec, SetSpec{Spec: squidSpec()}),
		mustEncode(f, CmdSetSpec, SetSpec{Spec: webSpec(), ExpectVersion: 1}),
		mustEncode(f, CmdRegisterNode, testNode("m30", "10.0.0.30")),
		mustEncode(f, CmdRegisterNode|IgnoreUnknownType, testNode("m40", "2001:db8::40")),
		mustEncode(f, CmdDeregisterNode, DeregisterNode{Name: "m30"}),
		mustEncode(f, CmdSetSpec, SetSpec{Spec: fencedSpec()}),
		mustEncode(f, CmdClaimVIPs, ClaimVIPs{Node: "m30", Term: 3, VIPs: []netip.Addr{netip.MustParseAddr("172.95.69.100")}, At: time.Unix(1e9, 0).UTC()}),
		mustEncode(f, CmdReleaseVIPs, ReleaseVIPs{Node: "m30", Term: 3, VIPs: []netip.Addr{netip.MustParseAddr("172.95.69.100")}, Reason: ReleaseHandOver, At: time.Unix(1e9, 0).UTC()}),
		mustEncode(f, CmdFenceStart, FenceStart{Target: "m30", Action: spec.FenceReboot, By: "m40", Term: 4, Reason: "takeover", At: time.Unix(1e9, 0).UTC()}),
		mustEncode(f, CmdFenceDone, FenceDone{ID: 9, Result: FenceSuccess, Level: 1, Device: "ipmi", Attempts: 1, At: time.Unix(1e9, 0).UTC()}),
		mustEncode(f, CmdFenceConfirm, FenceConfirm{Target: "m30", By: "m40", At: time.Unix(1e9, 0).UTC()}),
		mustEncode(f, CmdDeviceCheck|IgnoreUnknownType, DeviceCheck{Device: "ipmi", Action: CheckMonitor, Error: "Unable to connect", At: time.Unix(1e9, 0).UTC()}),
		{1, 0x40 | byte(IgnoreUnknownType), '{', '}'},
		{1, byte(CmdDeregisterNode), '{', '}'},
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, seed := range commandSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, '{', '}'})
	f.Add([]byte{1, 3, '{', '"', 'n', 'a', 'm', 'e', '"', ':', '1', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			return
		}
		payload := map[CommandType]any{
			CmdSetSpec: cmd.SetSpec, CmdRegisterNode: cmd.Node, CmdDeregisterNode: cmd.Deregister,
			CmdClaimVIPs: cmd.ClaimVIPs, CmdReleaseVIPs: cmd.ReleaseVIPs,
			CmdFenceStart: cmd.FenceStart, CmdFenceDone: cmd.FenceDone, CmdFenceConfirm: cmd.FenceConfirm,
			CmdDeviceCheck: cmd.DeviceCheck, CmdNodeStandby: cmd.Standby, CmdServerDisable: cmd.Disable,
		}[cmd.Type]
		typ := cmd.Type
		if cmd.IgnoreUnknown {
			typ |= IgnoreUnknownType
		}
		b, err := EncodeCommand(typ, payload)
		if err != nil {
			t.Fatalf("EncodeCommand(%+v): %v", cmd, err)
		}
		again, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("DecodeCommand(EncodeCommand(%+v)): %v\n%q", cmd, err, b)
		}
		if !reflect.DeepEqual(again, cmd) {
			t.Fatalf("round trip changed the command\n got %+v\nwant %+v", again, cmd)
		}
	})
}

// FuzzApply: whatever decodes must apply without panicking, leave a valid
// state, and survive a snapshot round trip.
func FuzzApply(f *testing.F) {
	for _, seed := range commandSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := DecodeCommand(data); err != nil {
			var unknown *UnknownCommandError
			if !errors.As(err, &unknown) || !unknown.IgnoreUnknown {
				return // Apply panics on these by design; tested elsewhere
			}
		}
		a := applier{f: New()}
		a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
		a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
		before := a.f.State()

		out := a.f.Apply(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: data})
		after := a.f.State()
		if res, ok := out.(*Result); ok && (res.Err != nil || !res.Changed) {
			if !reflect.DeepEqual(after, before) {
				t.Fatalf("Apply returned %+v but changed the state", res)
			}
		}
		if err := after.Spec.Validate(); err != nil {
			t.Fatalf("state after Apply does not validate: %v", err)
		}

		snap, err := a.f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatalf("Persist: %v", err)
		}
		restored := New()
		if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
			t.Fatalf("Restore of a snapshot of an applied state: %v", err)
		}
		if !reflect.DeepEqual(restored.State(), after) {
			t.Fatalf("snapshot round trip changed the state\n got %+v\nwant %+v", restored.State(), after)
		}
	})
}

// FuzzReadSnapshot: a snapshot from a peer (InstallSnapshot) or the disk
// is read without panicking; what is read is a valid state that writes
// back to the same state.
func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapshotBytes(f, New()))
	f.Add(snapshotBytes(f, populated(f)))
	f.Add([]byte(`{"format":2,"state":{}}`))
	f.Add([]byte(`{"format":1,"state":{"spec":{"version":1},"nodes":{},"extra":1}}`))
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := writeSnapshot(&buf, st); err != nil {
			t.Fatal(err)
		}
		back, err := readSnapshot(&buf)
		if err != nil || !reflect.DeepEqual(back, st) {
			t.Fatalf("snapshot round trip: %v\n got %+v\nwant %+v", err, back, st)
		}
	})
}
