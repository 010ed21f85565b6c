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
	"github.com/raftlb/raftlb/spec"
)

// The RPC channel shares the Raft port and its mutual TLS. It carries the
// few requests a follower must send to the DC: a forwarded apply, a graceful
// leave, and a ping that proves a peer's certificate works before the DC
// admits it to Raft; other packages register operations of their own
// (Handle). One JSON request, one JSON response per connection.

const (
	opPing  = "ping"
	opApply = "apply"
	opLeave = "leave"
)

// Handler serves one operation another package registered on the RPC
// channel. from is the caller's node name, checked against its
// certificate; body is the request's payload. What it returns is sent
// back as JSON; an error is sent as the response's error.
type Handler func(ctx context.Context, from string, body json.RawMessage) (any, error)

// Handle registers h for op, which must not be one of the channel's own.
// The agent registers its handlers right after Start; a peer asking for op
// before that is told the operation is unknown.
func (n *Node) Handle(op string, h Handler) {
	n.handlersMu.Lock()
	defer n.handlersMu.Unlock()
	switch op {
	case opPing, opApply, opLeave, opRemoveNode, opMoveDC, opStandby, opServer, opLastContact:
		panic(fmt.Sprintf("cluster: RPC operation %q is the channel's own", op))
	}
	n.handlers[op] = h
}

func (n *Node) handler(op string) Handler {
	n.handlersMu.Lock()
	defer n.handlersMu.Unlock()
	return n.handlers[op]
}

// CallDC sends a registered operation to the current DC and decodes its
// answer into resp. It fails at once when no DC is known.
func (n *Node) CallDC(ctx context.Context, op string, req, resp any) error {
	addr, id := n.raft.LeaderWithID()
	if addr == "" {
		return ErrNoDC
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s request: %w", op, err)
	}
	r, err := n.call(ctx, string(addr), string(id), rpcRequest{Op: op, Body: body})
	if err != nil {
		return err
	}
	if r.NotDC {
		return ErrNoDC
	}
	if err := n.remoteErr(r); err != nil {
		return err
	}
	if err := json.Unmarshal(r.Body, resp); err != nil {
		return fmt.Errorf("%s response from the DC: %w", op, err)
	}
	return nil
}

// maxRPCSize bounds a request so a peer cannot make us buffer without limit.
const maxRPCSize = 8 << 20

type rpcRequest struct {
	Op            string          `json:"op"`
	From          string          `json:"from"`
	Spec          *spec.Spec      `json:"spec,omitempty"`
	ExpectVersion uint64          `json:"expect_version,omitempty"`
	Body          json.RawMessage `json:"body,omitempty"` // a registered operation's payload
}

// rpcResponse grows by fields older peers ignore: its decoder accepts
// fields it does not know, as an older release's accepts this one's.
type rpcResponse struct {
	Name    string `json:"name,omitempty"`
	Version uint64 `json:"version,omitempty"`
	Changed bool   `json:"changed,omitempty"`
	Error   string `json:"error,omitempty"`
	// Code names the sentinel error Error wraps (rpcerror.go); absent
	// from older peers' answers.
	Code     string          `json:"code,omitempty"`
	NotDC    bool            `json:"not_dc,omitempty"`
	Problems []spec.Problem  `json:"problems,omitempty"`
	Conflict bool            `json:"conflict,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"` // a registered operation's answer
}

// decodeRPCRequest reads one request: a JSON object of known fields, at
// most maxRPCSize bytes.
func decodeRPCRequest(r io.Reader) (rpcRequest, error) {
	var req rpcRequest
	dec := json.NewDecoder(io.LimitReader(r, maxRPCSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return rpcRequest{}, err
	}
	return req, nil
}

// decodeRPCResponse reads one response: a JSON object, at most maxRPCSize
// bytes, whose code, if any, is well formed. Fields it does not know are
// a newer peer's and are ignored.
func decodeRPCResponse(r io.Reader) (rpcResponse, error) {
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(r, maxRPCSize)).Decode(&resp); err != nil {
		return rpcResponse{}, err
	}
	if resp.Code != "" && !validCode(resp.Code) {
		return rpcResponse{}, fmt.Errorf("malformed error code %q", resp.Code)
	}
	return resp, nil
}

// handleRPC serves one RPC connection; it is the muxLayer's rpc callback.
func (n *Node) handleRPC(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(n.rpcTimeout()))
	req, err := decodeRPCRequest(c)
	if err != nil {
		n.logger.Warn("bad RPC request", "remote", c.RemoteAddr().String(), "err", err)
		_ = json.NewEncoder(c).Encode(rpcResponse{Error: "bad request: " + err.Error()})
		return
	}
	// With TLS the certificate names the caller; a peer may only speak for
	// itself.
	if cn := peerName(c); cn != "" && cn != req.From {
		n.logger.Warn("refused an RPC sent in another node's name", "certificate", cn, "claims", req.From, "op", req.Op, "remote", c.RemoteAddr().String())
		_ = json.NewEncoder(c).Encode(rpcResponse{Error: fmt.Sprintf("certificate is for %q, request claims %q", cn, req.From)})
		return
	}
	// Anyone the CA vouches for may ping (a joining node proves its
	// certificate so); everything else is for members.
	if req.Op != opPing {
		remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if err := n.requireMember(req.From, remote.Addr().Unmap(), req.Op == opLeave); err != nil {
			n.logger.Warn("refused an RPC from a node that is not a member", "from", req.From, "op", req.Op, "err", err)
			_ = json.NewEncoder(c).Encode(n.errorResponse(fmt.Errorf("%w: %w", ErrRefused, err)))
			return
		}
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
		res, err := n.applySpecLocal(ctx, *req.Spec, req.ExpectVersion)
		if lostLeadership(err) {
			return rpcResponse{NotDC: true, Error: err.Error()}
		}
		return n.resultToWire(res, err)
	case opRemoveNode, opMoveDC, opStandby, opServer:
		if !n.IsLeader() {
			return rpcResponse{NotDC: true, Error: "not the DC"}
		}
		var ar adminRequest
		if err := json.Unmarshal(req.Body, &ar); err != nil {
			return rpcResponse{Error: "bad request: " + err.Error()}
		}
		ar.By = req.From // the certificate's name, not what the body says
		name, err := n.serveAdmin(ctx, req.Op, ar)
		if err != nil {
			return n.errorResponse(err)
		}
		return rpcResponse{Name: name}
	case opLeave:
		if !n.IsLeader() {
			return rpcResponse{NotDC: true, Error: "not the DC"}
		}
		n.gossip.markLeft(req.From)
		if err := n.removeServer(ctx, req.From); err != nil {
			n.gossip.unmarkLeft(req.From) // it stays a member
			if lostLeadership(err) {
				return rpcResponse{NotDC: true, Error: err.Error()}
			}
			return n.errorResponse(err)
		}
		return rpcResponse{}
	}
	h := n.handler(req.Op)
	if h == nil {
		return rpcResponse{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
	out, err := h(ctx, req.From, req.Body)
	if err != nil {
		return n.errorResponse(err)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return rpcResponse{Error: fmt.Sprintf("%s: encoding the answer: %v", req.Op, err)}
	}
	return rpcResponse{Body: body}
}

func (n *Node) resultToWire(res ApplyResult, err error) rpcResponse {
	if err != nil {
		resp := n.errorResponse(err)
		var ve *spec.ValidationError
		if errors.As(err, &ve) {
			resp.Problems = ve.Problems
		}
		var ce *fsm.ConflictError
		resp.Conflict = errors.As(err, &ce)
		return resp
	}
	return rpcResponse{Version: res.Version, Changed: res.Changed}
}

func (n *Node) wireToResult(resp rpcResponse) (ApplyResult, error) {
	switch {
	case len(resp.Problems) > 0:
		return ApplyResult{}, &spec.ValidationError{Problems: resp.Problems}
	case resp.Conflict:
		return ApplyResult{}, fmt.Errorf("%w: %s", ErrConflict, resp.Error)
	case resp.Error != "" || resp.Code != "":
		return ApplyResult{}, n.remoteErr(resp)
	}
	return ApplyResult{Version: resp.Version, Changed: resp.Changed}, nil
}

// call sends one RPC to a peer's Raft address; the peer must present the
// certificate of node expect ("": of the node configured at addr).
func (n *Node) call(ctx context.Context, addr, expect string, req rpcRequest) (rpcResponse, error) {
	req.From = n.cfg.Name
	timeout := n.rpcTimeout()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	c := n.mux.takeSpare(addr, expect)
	if c == nil {
		var err error
		if c, err = n.mux.dial(addr, expect, timeout); err != nil {
			return rpcResponse{}, err
		}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{rpcMagic}); err != nil {
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	resp, err := decodeRPCResponse(c)
	if err != nil {
		// With TLS 1.3 a rejected client certificate shows up here, on the
		// first read, as "remote error: tls: ...".
		return rpcResponse{}, fmt.Errorf("RPC to %s: %w", addr, err)
	}
	return resp, nil
}

// Ping proves that addr speaks raftlb RPC and, with TLS, that both sides'
// certificates come from the same CA and the one at addr is node name's.
func (n *Node) Ping(ctx context.Context, name, addr string) (string, error) {
	resp, err := n.call(ctx, addr, name, rpcRequest{Op: opPing})
	if err != nil {
		return "", err
	}
	if err := n.remoteErr(resp); err != nil {
		return "", err
	}
	return resp.Name, nil
}

func (n *Node) rpcTimeout() time.Duration { return 5 * time.Second }

// lostLeadership reports an error that means "ask the new DC": the
// request did not commit here and may be retried there.
func lostLeadership(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}
