package cluster

import (
	"context"
	"time"

	"github.com/raftlb/raftlb/internal/retry"
)

// forwardRetry is the pause between asks of the DC while none is elected.
const forwardRetry = 100 * time.Millisecond

// askDC sends a request to the current DC, retrying while an election is
// in progress.
func (n *Node) askDC(ctx context.Context, req rpcRequest) error {
	_, err := n.forward(ctx, req)
	return err
}

// forward sends req to the current DC and returns its answer, asking
// again while none is elected or the one asked is no longer DC. An error
// the DC answers ends it, with its identity (rpcerror.go); a spec's
// problems or conflict come back in the response (wireToResult).
func (n *Node) forward(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	var resp rpcResponse
	err := retry.Do(ctx, retry.Policy{Interval: forwardRetry}, func(context.Context, int) error {
		addr, id := n.raft.LeaderWithID()
		if addr == "" {
			return ErrNoDC
		}
		r, err := n.call(ctx, string(addr), string(id), req)
		switch {
		case err != nil:
			return err
		case r.NotDC:
			return ErrNoDC
		case (r.Error != "" || r.Code != "") && len(r.Problems) == 0 && !r.Conflict:
			resp = r
			return retry.Stop(n.remoteErr(r))
		}
		resp = r
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return rpcResponse{}, ErrNoDC
	}
	return resp, err
}
