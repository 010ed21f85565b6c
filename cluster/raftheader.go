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

// headerCheck is an inbound Raft connection whose requests are checked
// against the peer certificate's name, then re-encoded for Raft.
type headerCheck struct {
	net.Conn
	cn     string
	r      *bufio.Reader
	dec    *codec.Decoder
	enc    *codec.Encoder
	out    bytes.Buffer // the current request, re-encoded
	raw    int64        // snapshot bytes still to pass through
	refuse func(error)
	err    error
}

func newHeaderCheck(c net.Conn, r io.Reader, cn string, refuse func(error)) *headerCheck {
	h := &headerCheck{Conn: c, cn: cn, r: bufio.NewReader(r), refuse: refuse}
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
	if id := string(req.GetRPCHeader().ID); id != h.cn {
		err := fmt.Errorf("a raft request in the name of node %q over a connection whose certificate is node %s's", id, h.cn)
		h.refuse(err)
		_ = h.Conn.Close()
		return err
	}
	h.out.WriteByte(t)
	if err := h.enc.Encode(req); err != nil {
		return fmt.Errorf("re-encode raft request: %w", err)
	}
	if s, ok := req.(*raft.InstallSnapshotRequest); ok {
		h.raw = s.Size
	}
	return nil
}
