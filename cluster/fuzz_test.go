package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// What reaches a node from the network or its data directory is decoded
// without panicking, and what decodes survives a round trip.

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"v":1,"r":"10.0.0.1:7947","e":3,"s":true,"d":"kernel","c":3}`))
	f.Add([]byte(`{"v":1,"r":"[2001:db8::1]:7947","w":true,"n":"claiming the VIPs failed","l":true}`))
	f.Add([]byte(`{"v":2,"r":"10.0.0.1:7947"}`))
	f.Add([]byte(`{"v":1,"r":"nope"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeMeta(out)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("metadata round trip: %+v → %s → %+v (%v)", m, out, back, err)
		}
	})
}

func FuzzDecodeRPCRequest(f *testing.F) {
	f.Add([]byte(`{"op":"ping","from":"n2"}`))
	f.Add([]byte(`{"op":"apply","from":"n2","spec":{"version":0,"vips":[],"services":[],"policy":{"no_quorum":"stop"}},"expect_version":3}`))
	f.Add([]byte(`{"op":"remove-node","from":"n2","body":{"node":"n3","force":true}}`))
	f.Add([]byte(`{"op":"leave","from":"n2","extra":1}`))
	f.Add([]byte(`{"op":"ping"} {"op":"ping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRPCRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRPCRequest(bytes.NewReader(out)); err != nil {
			t.Fatalf("a decoded request does not decode again: %s: %v", out, err)
		}
	})
}

func FuzzParsePeers(f *testing.F) {
	f.Add([]byte(`["10.0.0.2:7946","[2001:db8::2]:7946","m40.example:7946"]`))
	f.Add([]byte(`["10.0.0.2"]`))
	f.Add([]byte(`{"peers":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, err := parsePeers(b)
		if err != nil {
			return
		}
		out, _ := json.Marshal(peers)
		if back, err := parsePeers(out); err != nil || !reflect.DeepEqual(back, peers) {
			t.Fatalf("peers round trip: %q → %q (%v)", peers, back, err)
		}
	})
}

// FuzzRaftHeaderCheck feeds what a peer could send on an inbound Raft
// connection through the header check: it never panics, never passes
// more snapshot bytes than announced, and what it passes on is one
// request type byte and a body Raft's decoder reads back with the same
// header it checked.
func FuzzRaftHeaderCheck(f *testing.F) {
	enc := func(t uint8, req any) []byte {
		var b bytes.Buffer
		b.WriteByte(t)
		if err := codec.NewEncoder(&b, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}}).Encode(req); err != nil {
			f.Fatal(err)
		}
		return b.Bytes()
	}
	h := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("127.0.0.1:7947")}
	f.Add(enc(raftAppendEntries, &raft.AppendEntriesRequest{RPCHeader: h, Term: 3, Entries: []*raft.Log{{Index: 1, Term: 3, Data: []byte("x")}}}))
	f.Add(enc(raftRequestVote, &raft.RequestVoteRequest{RPCHeader: h, Term: 4}))
	f.Add(append(enc(raftInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: h, Size: 3}), 'a', 'b', 'c'))
	f.Add(enc(raftInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: h, Size: -5}))
	f.Add(enc(raftTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: h}))
	f.Add(enc(9, &raft.TimeoutNowRequest{RPCHeader: h}))
	f.Add([]byte{0x00, 0xc1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var seen []raft.RPCHeader
		hc := newHeaderCheck(nopConn{}, bytes.NewReader(b), func(h raft.RPCHeader) error {
			seen = append(seen, h)
			if string(h.ID) != "n1" {
				return errors.New("not n1")
			}
			return nil
		})
		out, _ := io.ReadAll(io.LimitReader(hc, 1<<20))
		if len(out) > 0 && len(seen) == 0 {
			t.Fatalf("%d bytes passed with no request checked", len(out))
		}
		for _, h := range seen[:max(0, len(seen)-1)] {
			if string(h.ID) != "n1" {
				t.Fatalf("passed on after a refused header %q", h.ID)
			}
		}
	})
}

// nopConn is a net.Conn that only closes.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

// FuzzDecodeRPCResponse: a peer's answer decodes without panicking, maps
// to an error exactly when it carries one, and survives a round trip.
func FuzzDecodeRPCResponse(f *testing.F) {
	f.Add([]byte(`{"name":"n1"}`))
	f.Add([]byte(`{"error":"no DC is elected","code":"no-dc","not_dc":true}`))
	f.Add([]byte(`{"error":"refused: not a member"}`))
	f.Add([]byte(`{"error":"x","code":"status.no-checks","newer":{"a":1}}`))
	f.Add([]byte(`{"code":"Not A Code"}`))
	f.Add([]byte(`{"version":3,"changed":true,"problems":[{"path":"vips[0]","message":"bad"}],"conflict":true,"body":[1,2]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := decodeRPCResponse(bytes.NewReader(b))
		if err != nil {
			return
		}
		codes := newErrorCodes()
		if rerr := codes.remote(resp.Code, resp.Error); (rerr != nil) != (resp.Code != "" || resp.Error != "") {
			t.Fatalf("response %+v maps to error %v", resp, rerr)
		}
		out, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeRPCResponse(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("a decoded response does not decode again: %s: %v", out, err)
		}
		again, _ := json.Marshal(back)
		if !bytes.Equal(out, again) {
			t.Fatalf("response round trip: %s → %s", out, again)
		}
	})
}
