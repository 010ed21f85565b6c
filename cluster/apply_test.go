package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// lostFuture is the future of an entry Raft committed and then dropped at
// shutdown: it never answers.
type lostFuture struct{ raft.ApplyFuture }

func (lostFuture) Error() error { select {} }

// TestAwaitEndsWhenTheNodeStops: a commit whose future Raft never answers
// (hashicorp/raft drops those of entries not yet applied when it shuts
// down) does not hold its caller past the node's stop; an answered one
// returns its error.
func TestAwaitEndsWhenTheNodeStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{ctx: ctx, cancel: cancel}
	done := make(chan error, 1)
	go func() { done <- n.await(lostFuture{}) }()
	// A moment in which await must not return: it waits on a future that
	// never answers and a node that has not stopped, and neither does
	// anything that could mark "still waiting".
	select {
	case err := <-done:
		t.Fatalf("await returned %v before the node stopped", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errNodeStopped) {
			t.Errorf("await: %v, want errNodeStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("await still waits after the node stopped")
	}
	n2 := &Node{ctx: context.Background()}
	if err := n2.await(errFuture{raft.ErrLeadershipLost}); !errors.Is(err, raft.ErrLeadershipLost) {
		t.Errorf("await of an answered future: %v", err)
	}
}

type errFuture struct{ err error }

func (f errFuture) Error() error        { return f.err }
func (errFuture) Index() uint64         { return 0 }
func (errFuture) Response() interface{} { return nil }
