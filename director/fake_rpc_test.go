package director

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/raftlb/raftlb/cluster"
)

var _ RPC = (*fakeRPC)(nil)

// fakeRPC is the channel between agents with one agent on it: every call,
// to the DC or to any node, reaches this node's own handler, through JSON
// as on the wire. The director's tests have one kernel.
type fakeRPC struct {
	from string // the caller's name the handlers see

	mu       sync.Mutex
	handlers map[string]cluster.Handler
}

func newFakeRPC(from string) *fakeRPC {
	return &fakeRPC{from: from, handlers: map[string]cluster.Handler{}}
}

func (r *fakeRPC) Handle(op string, h cluster.Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[op] = h
}

// RegisterError: errors cross no channel in the fake.
func (r *fakeRPC) RegisterError(string, error) {}

func (r *fakeRPC) CallNode(ctx context.Context, _ string, op string, req, resp any) error {
	return r.CallDC(ctx, op, req, resp)
}

func (r *fakeRPC) CallDC(ctx context.Context, op string, req, resp any) error {
	r.mu.Lock()
	h := r.handlers[op]
	r.mu.Unlock()
	if h == nil {
		return fmt.Errorf("unknown operation %q", op)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := h(ctx, r.from, body)
	if err != nil {
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, resp)
}
