package director

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

var _ Log = (*fakeLog)(nil)

// fakeLog is the replicated log as a single voter would have it: the real
// FSM, each command applied at the next index as soon as it is committed.
type fakeLog struct {
	t   *testing.T
	fsm *fsm.FSM

	mu        sync.Mutex
	index     uint64
	commitErr error // what Commit answers instead of committing
}

// newFakeLog is a log in which m30, m40 and m50 are registered.
func newFakeLog(t *testing.T) *fakeLog {
	l := &fakeLog{t: t, fsm: fsm.New()}
	for name, a := range map[string]netip.Addr{"m30": m30, "m40": m40, "m50": m50} {
		l.apply(fsm.CmdRegisterNode, fsm.Node{
			Name: name, Address: a,
			RaftAddr: netip.AddrPortFrom(a, 7947), GossipAddr: netip.AddrPortFrom(a, 7946),
		})
	}
	return l
}

func (l *fakeLog) FSM() *fsm.FSM { return l.fsm }

// Commit commits like the DC's Raft, or fails as commitErr says.
func (l *fakeLog) Commit(t fsm.CommandType, payload any) (uint64, error) {
	l.mu.Lock()
	err := l.commitErr
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return l.commit(t, payload)
}

// apply commits what a test sets up, whatever commitErr says.
func (l *fakeLog) apply(t fsm.CommandType, payload any) {
	if _, err := l.commit(t, payload); err != nil {
		l.t.Fatal(err)
	}
}

func (l *fakeLog) setSpec(s spec.Spec) { l.apply(fsm.CmdSetSpec, fsm.SetSpec{Spec: s}) }

func (l *fakeLog) commit(t fsm.CommandType, payload any) (uint64, error) {
	b, err := fsm.EncodeCommand(t, payload)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.index++
	index := l.index
	l.mu.Unlock()
	if r, ok := l.fsm.Apply(&raft.Log{Index: index, Data: b}).(*fsm.Result); ok && r.Err != nil {
		return 0, r.Err
	}
	return index, nil
}

// commits is the index of the last command committed.
func (l *fakeLog) commits() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.index
}
