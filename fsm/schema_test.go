package fsm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestCommandSchema(t *testing.T) {
	witness := testNode("tie", "10.0.0.13")
	witness.Witness = true
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"a spec without fencing", Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: squidSpec()}}, 1},
		{"a spec with fencing", Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: fencedSpec()}}, 2},
		{"a node", Command{Type: CmdRegisterNode, Node: new(testNode("m30", "10.0.0.30"))}, 1},
		{"a witness", Command{Type: CmdRegisterNode, Node: &witness}, 2},
		{"a claim", Command{Type: CmdClaimVIPs, ClaimVIPs: &ClaimVIPs{}}, 1},
		{"a fencing", Command{Type: CmdFenceStart, FenceStart: &FenceStart{}}, 2},
		{"a device check", Command{Type: CmdDeviceCheck, DeviceCheck: &DeviceCheck{}}, 2},
	} {
		if got := tc.cmd.Schema(); got != tc.want {
			t.Errorf("%s: schema %d, want %d", tc.name, got, tc.want)
		}
	}
	if NodeSchema(0) != 1 || NodeSchema(2) != 2 {
		t.Error("a node that advertises nothing reads schema 1")
	}
}

// TestOlderReleaseSkipsOnlyWhatItMay: an FSM playing schema 1 skips an
// entry of schema 2 marked safe to skip (logged, counted), and stops on
// one that is not, saying what to upgrade.
func TestOlderReleaseSkipsOnlyWhatItMay(t *testing.T) {
	var logs bytes.Buffer
	a := &applier{f: NewWith(Options{Schema: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})}
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	check := DeviceCheck{Device: "ipmi", Action: CheckMonitor, OK: true, At: time.Now()}
	if res := a.apply(mustEncode(t, CmdDeviceCheck|IgnoreUnknownType, check)); res != nil {
		t.Errorf("a skipped entry returned %v", res)
	}
	unknown := []byte{envelopeVersion, byte(0x7f | IgnoreUnknownType), '{', '}'}
	if res := a.apply(unknown); res != nil {
		t.Errorf("an unknown type marked safe to skip returned %v", res)
	}
	if a.f.Skipped() != 2 || strings.Count(logs.String(), "skipped a log entry") != 2 {
		t.Errorf("skipped %d, logs:\n%s\nwant both skips counted and logged", a.f.Skipped(), logs.String())
	}

	witness := testNode("tie", "10.0.0.13")
	witness.Witness = true
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "needs schema 2, this release reads 1: upgrade raftlb on this node") {
			t.Errorf("applying a witness on schema 1: %v, want a stop that says to upgrade", r)
		}
	}()
	a.apply(mustEncode(t, CmdRegisterNode, witness))
}

// TestTheLogsSchema: State.Schema is the highest schema a change needed,
// not counting entries older nodes skip; it survives a snapshot.
func TestTheLogsSchema(t *testing.T) {
	a := &applier{f: New()}
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m40", "10.0.0.40")))
	if got := a.f.State().Schema; got != 1 {
		t.Fatalf("schema %d after registrations, want 1", got)
	}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: fencedSpec()}))
	a.result(t, mustEncode(t, CmdDeviceCheck|IgnoreUnknownType, DeviceCheck{Device: "ipmi", Action: CheckMonitor, OK: true, At: time.Now()}))
	if got := a.f.State().Schema; got != 2 {
		t.Fatalf("schema %d after a fencing spec, want 2", got)
	}
	b := New()
	if err := b.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.f)))); err != nil {
		t.Fatal(err)
	}
	if got := b.State().Schema; got != 2 {
		t.Errorf("schema %d after a restore, want 2", got)
	}

	c := &applier{f: New()}
	c.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	c.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	if got := c.f.State().Schema; got != 1 {
		t.Errorf("schema %d without fencing, want 1", got)
	}
}
