package director

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/raftlb/raftlb/cluster"
)

var _ Leader = (*fakeLeader)(nil)

// fakeLeader is Raft leadership as a test drives it: the test sends the
// events on leaders, sets what verifications, the barrier, transfers and
// ContactBound answer, and reads what the director asked of it.
type fakeLeader struct {
	leaders chan cluster.LeaderEvent

	mu          sync.Mutex
	leader      string
	verifyErr   error
	barrierErr  error
	transferErr error
	verified    int
	// onVerify runs inside each verification, under mu: the answers' way
	// back.
	onVerify func()
	// contact, contactOK: what ContactBound answers.
	contact   time.Time
	contactOK bool
	// lost is what LastLeaderLost answers.
	lost      cluster.LeaderLost
	transfers []string // TransferLeadership reasons ("to: reason" for TransferLeadershipTo)
	moves     []string // MoveDC targets
	hooks     []func(bool)
}

func newFakeLeader() *fakeLeader {
	return &fakeLeader{leaders: make(chan cluster.LeaderEvent, 1)}
}

func (l *fakeLeader) Leadership() (<-chan cluster.LeaderEvent, func()) { return l.leaders, func() {} }

func (l *fakeLeader) Barrier(time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.barrierErr
}

func (l *fakeLeader) VerifyLeader(uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.verified++
	if l.onVerify != nil {
		l.onVerify()
	}
	return l.verifyErr
}

// setVerifyErr sets what verifications answer from now on; it returns
// how many came before, so that a test counts those after.
func (l *fakeLeader) setVerifyErr(err error) (verified int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.verifyErr = err
	return l.verified
}

func (l *fakeLeader) setOnVerify(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onVerify = fn
}

func (l *fakeLeader) verifications() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.verified
}

func (l *fakeLeader) Leader() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader
}

func (l *fakeLeader) setLeader(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = name
}

func (l *fakeLeader) TransferLeadership(reason string) error {
	return l.TransferLeadershipTo("", reason)
}

func (l *fakeLeader) TransferLeadershipTo(to, reason string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if to != "" {
		reason = to + ": " + reason
	}
	l.transfers = append(l.transfers, reason)
	return l.transferErr
}

func (l *fakeLeader) setTransferErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.transferErr = err
}

func (l *fakeLeader) transferReasons() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.transfers)
}

// MoveDC records a graceful move; it fails with transferErr.
func (l *fakeLeader) MoveDC(_ context.Context, to string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.moves = append(l.moves, to)
	return "m40", l.transferErr
}

func (l *fakeLeader) movesAsked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.moves)
}

func (l *fakeLeader) OnHandOver(fn func(bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hooks = append(l.hooks, fn)
}

// setHandingOver does what the real node does around a leadership
// transfer: the hooks, with true before it and false after one that
// failed.
func (l *fakeLeader) setHandingOver(on bool) {
	l.mu.Lock()
	hooks := slices.Clone(l.hooks)
	l.mu.Unlock()
	for _, fn := range hooks {
		fn(on)
	}
}

// ContactBound answers what the test set (contact, contactOK).
func (l *fakeLeader) ContactBound(context.Context, string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.contact, l.contactOK
}

func (l *fakeLeader) LastLeaderLost() cluster.LeaderLost {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}
