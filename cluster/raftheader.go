package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// hashicorp/raft's NetworkTransport frames each request as one type byte
// and a msgpack body (an InstallSnapshot is followed by the snapshot's
// bytes), and trusts the header's ID: a follower takes an append's sender
// for its leader, a voter a vote request's for the candidate. headerCheck
// reads every request on an inbound Raft connection before Raft does and
// refuses one whose header names another node than the certificate.
//
// The type values are the transport's own (net_transport.go).
const (
	raftAppendEntries uint8 = iota
	raftRequestVote
	raftInstallSnapshot
	raftTimeoutNow
	raftRequestPreVote
)

// headerCheck is an inbound Raft connection whose every request is
// checked (check: the header against the peer's certificate, and the
// peer again, so a revocation or removal ends a connection opened
// before), then re-encoded for Raft.
type headerCheck struct {
	net.Conn
	r     *bufio.Reader
	dec   *codec.Decoder
	enc   *codec.Encoder
	out   bytes.Buffer // the current request, re-encoded
	raw   int64        // snapshot bytes still to pass through
	check func(raft.RPCHeader) error
	err   error
}

func newHeaderCheck(c net.Conn, r io.Reader, check func(raft.RPCHeader) error) *headerCheck {
	h := &headerCheck{Conn: c, r: bufio.NewReader(r), check: check}
	h.dec = codec.NewDecoder(h.r, &codec.MsgpackHandle{})
	// The encoding Raft's senders use (NetworkTransport's default).
	h.enc = codec.NewEncoder(&h.out, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	return h
}

func (h *headerCheck) Read(p []byte) (int, error) {
	if h.out.Len() == 0 && h.raw == 0 {
		if h.err == nil {
			h.err = h.next()
		}
		if h.err != nil {
			return 0, h.err
		}
	}
	if h.out.Len() > 0 {
		return h.out.Read(p)
	}
	if int64(len(p)) > h.raw {
		p = p[:h.raw]
	}
	n, err := h.r.Read(p)
	h.raw -= int64(n)
	return n, err
}

// next reads, checks and re-encodes one request.
func (h *headerCheck) next() error {
	t, err := h.r.ReadByte()
	if err != nil {
		return err
	}
	var req raft.WithRPCHeader
	switch t {
	case raftAppendEntries:
		req = &raft.AppendEntriesRequest{}
	case raftRequestVote:
		req = &raft.RequestVoteRequest{}
	case raftInstallSnapshot:
		req = &raft.InstallSnapshotRequest{}
	case raftTimeoutNow:
		req = &raft.TimeoutNowRequest{}
	case raftRequestPreVote:
		req = &raft.RequestPreVoteRequest{}
	default:
		return fmt.Errorf("unknown raft request type %d", t)
	}
	if err := h.dec.Decode(req); err != nil {
		return err
	}
	if err := h.check(req.GetRPCHeader()); err != nil {
		_ = h.Conn.Close()
		return err
	}
	if s, ok := req.(*raft.InstallSnapshotRequest); ok {
		if s.Size < 0 {
			_ = h.Conn.Close()
			return fmt.Errorf("a raft snapshot of %d bytes", s.Size)
		}
		h.raw = s.Size
	}
	h.out.WriteByte(t)
	if err := h.enc.Encode(req); err != nil {
		return fmt.Errorf("re-encode raft request: %w", err)
	}
	return nil
}
