package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
)

// The RPC channel shares the Raft port and its mutual TLS. It carries the
// few requests a follower must send to the DC: a forwarded apply, a graceful
// leave, and a ping that proves a peer's certificate works before the DC
// admits it to Raft. One JSON request, one JSON response per connection.

const (
	opPing   = "ping"
	opApply  = "apply"
	opLeave  = "leave"
	opHealth = "health"
)

// healthEntry is one real server's health on the wire.
type healthEntry struct {
	Service fsm.ServiceKey `json:"service"`
	Server  netip.AddrPort `json:"server"`
	State   health.State   `json:"state"`
}

// maxRPCSize bounds a request so a peer cannot make us buffer without limit.
const maxRPCSize = 8 << 20

type rpcRequest struct {
	Op            string    `json:"op"`
	From          string    `json:"from"`
	Spec          *fsm.Spec `json:"spec,omitempty"`
	ExpectVersion uint64    `json:"expect_version,omitempty"`
}

type rpcResponse struct {
	Name     string        `json:"name,omitempty"`
	Version  uint64        `json:"version,omitempty"`
	Changed  bool          `json:"changed,omitempty"`
	Error    string        `json:"error,omitempty"`
	NotDC    bool          `json:"not_dc,omitempty"`
	Problems []fsm.Problem `json:"problems,omitempty"`
	Conflict bool          `json:"conflict,omitempty"`
	Health   []healthEntry `json:"health,omitempty"`
}

// handleRPC serves one RPC connection; it is the muxLayer's rpc callback.
func (n *Node) handleRPC(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(n.rpcTimeout()))
	var req rpcRequest
	dec := json.NewDecoder(io.LimitReader(c, maxRPCSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		n.logger.Warn("bad RPC request", "remote", c.RemoteAddr().String(), "err", err)
		_ = json.NewEncoder(c).Encode(rpcResponse{Error: "bad request: " + err.Error()})
		return
	}
	// With TLS the certificate names the caller; a peer may only speak for
	// itself.
	if cn := peerName(c); cn != "" && cn != req.From {
		_ = json.NewEncoder(c).Encode(rpcResponse{Error: fmt.Sprintf("certificate is for %q, request claims %q", cn, req.From)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.rpcTimeout())
	defer cancel()
	resp := n.serveRPC(ctx, req)
	_ = json.NewEncoder(c).Encode(resp)
}

func (n *Node) serveRPC(ctx context.Context, req rpcRequest) rpcResponse {
	switch req.Op {
	case opPing:
		return rpcResponse{Name: n.cfg.Name}
	case opApply:
		if req.Spec == nil {
			return rpcResponse{Error: "apply without a spec"}
		}
		if !n.IsLeader() {
			return rpcResponse{NotDC: true, Error: "not the DC"}
		}
		res, err := n.applySpecLocal(*req.Spec, req.ExpectVersion)
		if lostLeadership(err) {
			return rpcResponse{NotDC: true, Error: err.Error()}
		}
		return resultToWire(res, err)
	case opHealth:
		if !n.IsLeader() {
			return rpcResponse{NotDC: true, Error: "not the DC"}
		}
		var out []healthEntry
		for k, st := range n.localHealth() {
			out = append(out, healthEntry{Service: k.Service, Server: k.Server, State: st})
		}
		return rpcResponse{Health: out}
	case opLeave:
		if !n.IsLeader() {
			return rpcResponse{NotDC: true, Error: "not the DC"}
		}
		n.gossip.markLeft(req.From)
		if err := n.removeServer(ctx, req.From); err != nil {
			if lostLeadership(err) {
				return rpcResponse{NotDC: true, Error: err.Error()}
			}
			return rpcResponse{Error: err.Error()}
		}
		return rpcResponse{}
	default:
		return rpcResponse{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
}

func resultToWire(res ApplyResult, err error) rpcResponse {
	if err != nil {
		resp := rpcResponse{Error: err.Error()}
		var ve *fsm.ValidationError
		if errors.As(err, &ve) {
			resp.Problems = ve.Problems
		}
		var ce *fsm.ConflictError
		resp.Conflict = errors.As(err, &ce)
		return resp
	}
	return rpcResponse{Version: res.Version, Changed: res.Changed}
}

func wireToResult(resp rpcResponse) (ApplyResult, error) {
	switch {
	case len(resp.Problems) > 0:
		return ApplyResult{}, &fsm.ValidationError{Problems: resp.Problems}
	case resp.Conflict:
		return ApplyResult{}, fmt.Errorf("%w: %s", ErrConflict, resp.Error)
	case resp.Error != "":
		return ApplyResult{}, errors.New(resp.Error)
	}
	return ApplyResult{Version: resp.Version, Changed: resp.Changed}, nil
}

// call sends one RPC to a peer's Raft address.
func (n *Node) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	req.From = n.cfg.Name
	timeout := n.rpcTimeout()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	c, err := n.mux.dial(addr, timeout)
	if err != nil {
		return rpcResponse{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{rpcMagic}); err != nil {
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(c, maxRPCSize)).Decode(&resp); err != nil {
		// With TLS 1.3 a rejected client certificate shows up here, on the
		// first read, as "remote error: tls: ...".
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	return resp, nil
}

// Ping proves that addr speaks raftlb RPC and, with TLS, that both sides'
// certificates come from the same CA.
func (n *Node) Ping(ctx context.Context, addr string) (string, error) {
	resp, err := n.call(ctx, addr, rpcRequest{Op: opPing})
	if err != nil {
		return "", err
	}
	if resp.Error != "" {
		return "", errors.New(resp.Error)
	}
	return resp.Name, nil
}

func (n *Node) rpcTimeout() time.Duration { return 5 * time.Second }

// lostLeadership reports an error that means "ask the new DC": the
// request did not commit here and may be retried there.
func lostLeadership(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}
