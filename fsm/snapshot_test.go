package fsm

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	failWrite         bool
}

func (s *memSink) ID() string { return "test" }
func (s *memSink) Close() error {
	s.closed = true
	return nil
}
func (s *memSink) Cancel() error {
	s.cancelled = true
	return nil
}
func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}

// populated returns an FSM with a spec at version 3 (with fencing), two
// nodes, a VIP holder and a fencing history.
func populated(t testing.TB) *FSM {
	t.Helper()
	a := applier{f: New()}
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: squidSpec()}))
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: webSpec()}))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m30", "10.0.0.30")))
	a.result(t, mustEncode(t, CmdRegisterNode, testNode("m40", "2001:db8::40")))
	a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: fencedSpec()}))
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a.result(t, mustEncode(t, CmdClaimVIPs, ClaimVIPs{Node: "m30", Term: 3, VIPs: []netip.Addr{vipA}, At: at}))
	a.result(t, mustEncode(t, CmdFenceStart, FenceStart{Target: "m30", Action: spec.FenceReboot, By: "m40", Term: 4, Reason: "takeover", At: at}))
	a.result(t, mustEncode(t, CmdFenceDone, FenceDone{ID: a.index, Result: FenceSuccess, Level: 1, Device: "ipmi", Attempts: 1, At: at}))
	if st := a.f.State(); len(st.Holders) != 1 || len(st.FenceHistory) != 1 || st.Spec.Version != 3 {
		t.Fatalf("populated: %+v", st)
	}
	return a.f
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Errorf("sink closed=%t cancelled=%t, want closed", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	for name, src := range map[string]*FSM{"fresh": New(), "populated": populated(t)} {
		t.Run(name, func(t *testing.T) {
			data := snapshotBytes(t, src)
			dst := New()
			ch, cancel := dst.Subscribe()
			defer cancel()
			if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if got, want := dst.State(), src.State(); !reflect.DeepEqual(got, want) {
				t.Errorf("restored state\n got %+v\nwant %+v", got, want)
			}
			select {
			case <-ch:
			default:
				t.Error("Restore did not signal watchers")
			}
		})
	}
}

// TestSnapshotIsPointInTime: Apply may run while Raft persists a snapshot.
func TestSnapshotIsPointInTime(t *testing.T) {
	a := applier{f: populated(t)}
	want := a.f.State()
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	a.result(t, mustEncode(t, CmdDeregisterNode, DeregisterNode{Name: "m30"}))
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(restored.State(), want) {
		t.Error("snapshot saw a change applied after it was taken")
	}
}

func TestPersistFailureCancelsSink(t *testing.T) {
	snap, err := populated(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := memSink{failWrite: true}
	if err := snap.Persist(&sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("sink cancelled=%t closed=%t, want cancelled", sink.cancelled, sink.closed)
	}
}

func TestRestoreRejectsCorruptSnapshot(t *testing.T) {
	good := string(snapshotBytes(t, populated(t)))
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "EOF"},
		{"garbage", "\x00\x01garbage", "invalid character"},
		{"truncated", good[:len(good)/2], "unexpected EOF"},
		{"trailing data", good + "{}", "trailing"},
		{"newer format", strings.Replace(good, `"format":1`, `"format":2`, 1), "unsupported snapshot format 2"},
		{"no format", `{"state":{}}`, "unsupported snapshot format 0"},
		{"unknown field", strings.Replace(good, `"nodes":{`, `"leases":{},"nodes":{`, 1), "unknown field"},
		{"null state", `{"format":1,"state":null}`, "invalid spec"},
		{"invalid spec", strings.Replace(good, `"scheduler":"rr"`, `"scheduler":"fastest"`, 1), "fastest"},
		{"invalid holder", strings.Replace(good, `"holders":{"172.95.69.100":{"node":"m30"`, `"holders":{"172.95.69.100":{"node":"-m30"`, 1), "VIP holders"},
		{"node under another name", strings.Replace(good, `"m30":{"name":"m30"`, `"m30":{"name":"m31"`, 1), `"m30" holds node "m31"`},
		{"invalid node", strings.Replace(good, `"raft_addr":"10.0.0.30:7000"`, `"raft_addr":"10.0.0.30:0"`, 1), "node.raft_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.data == good {
				t.Fatal("test input did not change the snapshot")
			}
			f := populated(t)
			before := f.State()
			ch, cancel := f.Subscribe()
			defer cancel()
			err := f.Restore(io.NopCloser(strings.NewReader(tt.data)))
			if err == nil {
				t.Fatal("Restore succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if !reflect.DeepEqual(f.State(), before) {
				t.Error("a failed Restore changed the state")
			}
			select {
			case <-ch:
				t.Error("a failed Restore signalled watchers")
			default:
			}
		})
	}
}
