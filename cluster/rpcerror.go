package cluster

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Errors keep their identity across the RPC channel. The side that
// answers sends, beside the message, the code of the sentinel error the
// error wraps (rpcResponse.Code); the caller maps the code back through
// the same table, so errors.Is(err, ErrNoDC) holds on its side and the
// message is the one the peer wrote. The table is per node: the
// cluster's own sentinels, then those the packages above register at
// wiring (RegisterError), which cluster does not import.
//
// A code is a stable name: a release never gives it another meaning.
// A response without a code (an older peer's), or with a code this node
// does not know (a newer peer's), is a plain error with the message.

// The cluster's own codes.
const (
	codeNoDC     = "no-dc"
	codeRefused  = "refused"
	codeConflict = "conflict"
	codeShutdown = "shutdown"
	codeStopped  = "node-stopped"
	// Raft's, for an entry a handler committed on a node that stopped
	// being leader: the caller may ask the new DC.
	codeNotLeader          = "raft-not-leader"
	codeLeadershipLost     = "raft-leadership-lost"
	codeLeadershipTransfer = "raft-leadership-transfer"
)

// maxCodeLen bounds a code on the wire.
const maxCodeLen = 64

// errorCode is one row of the table.
type errorCode struct {
	code     string
	sentinel error
}

// errorCodes maps codes to sentinel errors and back, in order: an error
// that wraps several sentinels is sent with the code of the first row
// that matches.
type errorCodes struct {
	mu   sync.Mutex
	rows []errorCode
}

func newErrorCodes() *errorCodes {
	return &errorCodes{rows: []errorCode{
		{codeNoDC, ErrNoDC},
		{codeRefused, ErrRefused},
		{codeConflict, ErrConflict},
		{codeShutdown, ErrShutdown},
		{codeStopped, errNodeStopped},
		{codeNotLeader, raft.ErrNotLeader},
		{codeLeadershipLost, raft.ErrLeadershipLost},
		{codeLeadershipTransfer, raft.ErrLeadershipTransferInProgress},
	}}
}

// add registers a code. The same pair again changes nothing; a code or a
// sentinel given another partner, or a code that is not one, is a wiring
// mistake.
func (t *errorCodes) add(code string, sentinel error) {
	if !validCode(code) {
		panic(fmt.Sprintf("cluster: RPC error code %q: want 1 to %d of a-z, 0-9, '-' and '.'", code, maxCodeLen))
	}
	if sentinel == nil {
		panic(fmt.Sprintf("cluster: RPC error code %q without an error", code))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rows {
		if r.code == code && r.sentinel == sentinel {
			return
		}
		if r.code == code || r.sentinel == sentinel {
			panic(fmt.Sprintf("cluster: RPC error code %q or its error %q is registered already", code, sentinel))
		}
	}
	t.rows = append(t.rows, errorCode{code, sentinel})
}

// codeOf is the code of the first sentinel err wraps, or "".
func (t *errorCodes) codeOf(err error) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rows {
		if errors.Is(err, r.sentinel) {
			return r.code
		}
	}
	return ""
}

// remote is the caller's side: the error a peer sent (nil when it sent
// none), wrapping the sentinel of its code when this node knows it.
func (t *errorCodes) remote(code, msg string) error {
	if code == "" && msg == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rows {
		if r.code == code {
			if msg == "" {
				msg = r.sentinel.Error()
			}
			return &RemoteError{Code: code, Msg: msg, sentinel: r.sentinel}
		}
	}
	if msg == "" {
		msg = fmt.Sprintf("error %q", code)
	}
	return errors.New(msg)
}

// RemoteError is an error a peer answered with, whose code this node
// knows: errors.Is finds the sentinel, Error is the peer's message.
type RemoteError struct {
	Code     string
	Msg      string
	sentinel error
}

func (e *RemoteError) Error() string { return e.Msg }
func (e *RemoteError) Unwrap() error { return e.sentinel }

// validCode: 1 to maxCodeLen of a-z, 0-9, '-' and '.' (a package's codes
// carry its name: "status.no-checks").
func validCode(code string) bool {
	if code == "" || len(code) > maxCodeLen {
		return false
	}
	for _, c := range code {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// RegisterError gives sentinel, an error a handler of another package
// returns (Handle), a code on the RPC channel, so a caller's errors.Is
// finds it. Every node of the cluster registers the same codes, at
// wiring, before peers call; code is 1 to 64 of a-z, 0-9, '-' and '.',
// prefixed with the package's name ("status.no-checks"), and never
// changes meaning.
func (n *Node) RegisterError(code string, sentinel error) { n.errCodes.add(code, sentinel) }

// errorResponse is the answer that carries err: its message and code.
func (n *Node) errorResponse(err error) rpcResponse {
	return rpcResponse{Error: err.Error(), Code: n.errCodes.codeOf(err)}
}

// remoteErr is the error a response carries, nil when it carries none.
func (n *Node) remoteErr(r rpcResponse) error { return n.errCodes.remote(r.Code, r.Error) }
