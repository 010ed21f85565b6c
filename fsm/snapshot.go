package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/spec"
)

// snapshotFormat is the version of the snapshot encoding. A release that
// changes the encoding bumps it, so an old node refuses a snapshot it would
// misread instead of restoring half of it.
const snapshotFormat = 1

// snapshotFile is a snapshot on disk: a JSON object with the format first.
type snapshotFile struct {
	Format int             `json:"format"`
	State  json.RawMessage `json:"state"`
}

// fsmSnapshot is a point-in-time deep copy, so Persist may run while Apply
// goes on.
type fsmSnapshot struct {
	state State
}

// Snapshot captures the current state for Raft to persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.State()}, nil
}

// Persist writes the snapshot to sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.state); err != nil {
		return errors.Join(fmt.Errorf("persist fsm snapshot: %w", err), sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist fsm snapshot: %w", err)
	}
	return nil
}

// Release is a no-op: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, st State) error {
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(snapshotFile{Format: snapshotFormat, State: body})
}

// Restore replaces the state with the snapshot in rc. It builds and checks
// the new state completely before swapping it in, so a corrupt or invalid
// snapshot returns an error and leaves the current state as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore fsm snapshot: %w", err)
	}
	f.mu.Lock()
	f.state = st
	f.mu.Unlock()
	f.restores.Add(1)
	f.notify()
	return nil
}

func readSnapshot(r io.Reader) (State, error) {
	var file snapshotFile
	if err := decodeStrict(json.NewDecoder(r), &file); err != nil {
		return State{}, err
	}
	if file.Format != snapshotFormat {
		return State{}, fmt.Errorf("unsupported snapshot format %d (this release reads %d)", file.Format, snapshotFormat)
	}
	var st State
	if err := decodeStrict(json.NewDecoder(bytes.NewReader(file.State)), &st); err != nil {
		return State{}, fmt.Errorf("state: %w", err)
	}
	st.Spec = st.Spec.Normalized()
	if st.Nodes == nil {
		st.Nodes = make(map[string]Node)
	}
	// The state was valid when it was applied; if it is not now, the
	// snapshot is damaged (or written by a release with other rules), and
	// restoring it would hand the director a spec nobody checked.
	if err := st.Spec.Validate(); err != nil {
		return State{}, fmt.Errorf("invalid spec: %w", err)
	}
	for name, n := range st.Nodes {
		if n.Name != name {
			return State{}, fmt.Errorf("node registry: entry %q holds node %q", name, n.Name)
		}
		if err := n.Validate(); err != nil {
			return State{}, fmt.Errorf("node registry: %w", err)
		}
		n.JoinedAt = canonicalTime(n.JoinedAt)
		st.Nodes[name] = n
	}
	if st.Holders == nil {
		st.Holders = make(map[netip.Addr]Holder)
	}
	for vip, h := range st.Holders {
		if !vip.IsValid() || fsmHolderInvalid(h) {
			return State{}, fmt.Errorf("VIP holders: invalid record for %s: %+v", vip, h)
		}
		h.Since, h.ReleasedAt = canonicalTime(h.Since), canonicalTime(h.ReleasedAt)
		st.Holders[vip] = h
	}
	for i, e := range st.FenceHistory {
		e.At, e.Completed = canonicalTime(e.At), canonicalTime(e.Completed)
		st.FenceHistory[i] = e
	}
	if len(st.FenceHistory) > MaxFenceHistory {
		return State{}, fmt.Errorf("fence history: %d events, at most %d", len(st.FenceHistory), MaxFenceHistory)
	}
	for name, c := range st.DeviceChecks {
		if c.Device != name || (c.Action != CheckValidate && c.Action != CheckMonitor) {
			return State{}, fmt.Errorf("fence device checks: invalid record for %q: %+v", name, c)
		}
		c.At = canonicalTime(c.At)
		st.DeviceChecks[name] = c
	}
	seen := map[string]bool{}
	for i, r := range st.Revoked {
		if ps := r.validate(); len(ps) > 0 || seen[r.Node] {
			return State{}, fmt.Errorf("revoked certificates: invalid record for %q", r.Node)
		}
		seen[r.Node] = true
		st.Revoked[i] = r.canonical()
	}
	return st, nil
}

func fsmHolderInvalid(h Holder) bool {
	return spec.ValidateNodeName(h.Node) != nil || h.Term == 0 || (h.Released && !validReleaseReason(h.Reason))
}

// decodeStrict decodes exactly one JSON value with only known fields.
func decodeStrict(dec *json.Decoder, v any) error {
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
