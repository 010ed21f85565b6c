package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/fsm"
)

// These tests make real mutual-TLS connections with certificates of the
// test cluster's CA, as a member or a former member would.

// impostor is a transport at ip that presents the certificate of node
// certName (issued for ip unless it exists), and checks nothing itself.
func impostor(t *testing.T, c *testCluster, certName string, ip netip.Addr) *muxLayer {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.tlsDir, nodeCertFile(certName))); err != nil {
		if err := IssueNodeCert(c.tlsDir, certName, []net.IP{ip.AsSlice()}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := LoadTLS(c.tlsDir, certName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMuxLayer(netip.AddrPortFrom(ip, 0), conf, func(net.Conn) {}, nil, nil, nil, c.cfgs["n1"].Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// requestVote sends a vote request in the name of id at addr over a Raft
// connection and returns Raft's answer, or the error reading it.
func requestVote(t *testing.T, conn net.Conn, id, addr string, term uint64) (*raft.RequestVoteResponse, error) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(conn)
	_ = w.WriteByte(raftRequestVote)
	enc := codec.NewEncoder(w, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	req := raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(addr)}, Term: term}
	if err := enc.Encode(&req); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	dec := codec.NewDecoder(bufio.NewReader(conn), &codec.MsgpackHandle{})
	var rpcErr string
	if err := dec.Decode(&rpcErr); err != nil {
		return nil, err
	}
	if rpcErr != "" {
		return nil, errors.New(rpcErr)
	}
	var resp raft.RequestVoteResponse
	if err := dec.Decode(&resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// joinRefused joins n to dc's cluster and expects the join to fail with
// an error containing want: gossip is joined, Raft refuses.
func joinRefused(t *testing.T, n, dc *Node, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n.Join(ctx, []string{dc.GossipAddr()})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("join of %s: %v, want an error containing %q", n.Name(), err, want)
	}
}

// rpcAs sends one RPC request over conn and returns the answer.
func rpcAs(t *testing.T, conn net.Conn, req rpcRequest) rpcResponse {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{rpcMagic}); err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		t.Fatal(err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(conn, maxRPCSize)).Decode(&resp); err != nil {
		t.Fatalf("reading the answer to %s: %v", req.Op, err)
	}
	return resp
}

// TestRaftRefusesARequestInAnotherNodesName: member a's certificate, from
// a's own address, asking for a vote in the DC's name is refused before
// Raft reads it; the same request in a's own name is answered.
func TestRaftRefusesARequestInAnotherNodesName(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	a, b := c.followers(dc)[0], c.followers(dc)[1]
	term := b.raft.CurrentTerm()

	conn, err := a.mux.dial(b.RaftAddr(), b.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp, err := requestVote(t, conn, dc.Name(), dc.RaftAddr(), term); err == nil {
		t.Fatalf("a vote request in %s's name over %s's certificate was answered: %+v", dc.Name(), a.Name(), resp)
	}
	// The transport logs a refusal before it closes the connection, and
	// the request failed on the close.
	if c.logs.Count(`a raft request in the name of node \"`+dc.Name()+`\" over a connection whose certificate is node `+a.Name()) == 0 {
		t.Error("the refusal is not logged")
	}

	// In its own name, but at another node's address: refused too (Raft
	// would take that address for the candidate's).
	conn1, err := a.mux.dial(b.RaftAddr(), b.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn1.Close()
	if resp, err := requestVote(t, conn1, a.Name(), dc.RaftAddr(), term); err == nil {
		t.Fatalf("a vote request giving the DC's address was answered: %+v", resp)
	}
	if c.logs.Count("a raft request of node "+a.Name()+` giving its address as \"`+dc.RaftAddr()) == 0 {
		t.Error("the address refusal is not logged")
	}

	// The control: in its own name the same request gets Raft's answer.
	conn2, err := a.mux.dial(b.RaftAddr(), b.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	resp, err := requestVote(t, conn2, a.Name(), a.RaftAddr(), term)
	if err != nil {
		t.Fatalf("a vote request in %s's own name: %v", a.Name(), err)
	}
	if resp.Granted {
		t.Errorf("%s granted a vote for a term it already has a leader in", b.Name())
	}
	if c.waitDC() != dc {
		t.Error("the DC changed")
	}
}

// TestRaftRefusesANonMember: a certificate of the cluster CA whose node is
// not in the Raft configuration cannot open a Raft connection.
func TestRaftRefusesANonMember(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	m := impostor(t, c, "mallory", netip.MustParseAddr("127.0.0.9"))
	conn, err := m.dial(dc.RaftAddr(), dc.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err) // the TLS handshake itself succeeds: the CA signed it
	}
	defer conn.Close()
	if resp, err := requestVote(t, conn, "mallory", "127.0.0.9:1", dc.raft.CurrentTerm()+1); err == nil {
		t.Fatalf("a non-member's vote request was answered: %+v", resp)
	}
	// Logged before the transport closed the connection the request
	// failed on.
	if c.logs.Count("node mallory is not in the Raft configuration") == 0 {
		t.Error("the refusal is not logged")
	}
	if c.waitDC() != dc {
		t.Error("the DC changed")
	}
}

// TestRPCRefusesAnotherAddress: a member's certificate used from another
// address than the ones it names is refused, and the apply it carried
// changes nothing.
func TestRPCRefusesAnotherAddress(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	victim := c.followers(dc)[0]
	stolen := impostor(t, c, victim.Name(), netip.MustParseAddr("127.0.0.9")) // its certificate exists: for its own address
	conn, err := stolen.dial(dc.RaftAddr(), dc.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spec := sampleSpec(8080)
	resp := rpcAs(t, conn, rpcRequest{Op: opApply, From: victim.Name(), Spec: &spec})
	want := "the certificate of node " + victim.Name() + " is for " + victim.cfg.BindAddr.String() + ", not 127.0.0.9"
	if !strings.Contains(resp.Error, want) {
		t.Errorf("apply with %s's certificate from 127.0.0.9: %+v, want an error containing %q", victim.Name(), resp, want)
	}
	if v := dc.FSM().Spec().Version; v != 0 {
		t.Errorf("the spec is at version %d after a refused apply", v)
	}
}

// TestRPCRefusesANonMembersApply: a node the CA vouches for, but that is
// no member, may ping and nothing else.
func TestRPCRefusesANonMembersApply(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	m := impostor(t, c, "mallory", netip.MustParseAddr("127.0.0.9"))
	dial := func() net.Conn {
		conn, err := m.dial(dc.RaftAddr(), dc.Name(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	if resp := rpcAs(t, dial(), rpcRequest{Op: opPing, From: "mallory"}); resp.Error != "" || resp.Name != dc.Name() {
		t.Errorf("ping from a non-member: %+v, want the DC's name", resp)
	}
	spec := sampleSpec(8080)
	resp := rpcAs(t, dial(), rpcRequest{Op: opApply, From: "mallory", Spec: &spec})
	if !strings.Contains(resp.Error, `node "mallory" is not a member of the cluster`) {
		t.Errorf("apply from a non-member: %+v, want a refusal", resp)
	}
	if v := dc.FSM().Spec().Version; v != 0 {
		t.Errorf("the spec is at version %d after a refused apply", v)
	}
}

// TestDCAdmitsOnlyTheNodeItsCertificateNames: a node that says n4 in
// gossip and answers with mallory's certificate is not admitted.
func TestDCAdmitsOnlyTheNodeItsCertificateNames(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	ip := netip.MustParseAddr("127.0.0.4")
	if err := IssueNodeCert(c.tlsDir, "mallory", []net.IP{ip.AsSlice()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(4, 3)
	var err error
	if cfg.TLS, err = LoadTLS(c.tlsDir, "mallory"); err != nil {
		t.Fatal(err)
	}
	n4 := c.start(cfg)
	joinRefused(t, n4, dc, `certificate is for "mallory", request claims "n4"`)
	c.waitRefused(dc, "n4", "the certificate there is for node mallory")
	if c.logs.Count("dialed node n4 at 127.0.0.4:") == 0 || c.logs.Count("the certificate there is for node mallory") == 0 {
		t.Error("the DC refused n4 without logging why")
	}
	for range 3 {
		dc.ReconcileMembers(context.Background())
	}
	if _, in := raftServers(dc)["n4"]; in {
		t.Error("n4 was admitted on mallory's certificate")
	}
	if _, in := dc.FSM().State().Nodes["n4"]; in {
		t.Error("n4 was registered on mallory's certificate")
	}
}

// TestRemovedNodesCertificateIsRefused: leaving revokes the node's
// certificate in the replicated state: it can neither apply nor join
// again; a certificate issued after the removal joins.
func TestRemovedNodesCertificateIsRefused(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	cfg4 := c.config(4, 3)
	n4 := c.start(cfg4)
	c.join("n4", dc.Name())
	c.waitFor("n4 admitted", 10*time.Second, func() bool { _, in := raftServers(dc)["n4"]; return in })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n4.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.crash("n4")
	var rev fsm.Revocation
	c.waitFor("n4's certificate revoked on every node", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			st := nd.FSM().State()
			if len(st.Revoked) != 1 || st.Revoked[0].Node != "n4" {
				return false
			}
			rev = st.Revoked[0]
		}
		return true
	})
	serial := certSerial(cfg4.TLS.Certificates[0].Leaf)
	if len(rev.Serials) != 1 || rev.Serials[0] != serial {
		t.Errorf("revoked serials %v, want n4's %s", rev.Serials, serial)
	}

	// Apply: from n4's address with n4's certificate.
	m := impostor(t, c, "n4", cfg4.BindAddr)
	conn, err := m.dial(dc.RaftAddr(), dc.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spec := sampleSpec(8080)
	resp := rpcAs(t, conn, rpcRequest{Op: opApply, From: "n4", Spec: &spec})
	if !strings.Contains(resp.Error, "the certificate of node n4 (serial "+serial+") was revoked") {
		t.Errorf("apply with the removed node's certificate: %+v, want a revocation refusal", resp)
	}
	if v := dc.FSM().Spec().Version; v != 0 {
		t.Errorf("the spec is at version %d after a refused apply", v)
	}
	_ = m.Close()

	// Join: the same certificate, a fresh data directory, the same ports
	// (gossip would hold a new address against the old one for a while).
	c.mu.Lock()
	again := c.cfgs["n4"]
	c.mu.Unlock()
	again.DataDir = t.TempDir()
	joinRefused(t, c.start(again), dc, "refused: the certificate of node n4 (serial "+serial+") was revoked")
	c.waitRefused(dc, "n4", "was revoked when node n4 was removed")
	if c.logs.Count("not admitting node to Raft") == 0 || c.logs.Count("was revoked when node n4 was removed") == 0 {
		t.Error("the DC refused the revoked certificate without logging why")
	}
	for range 3 {
		dc.ReconcileMembers(context.Background())
	}
	if _, in := raftServers(dc)["n4"]; in {
		t.Fatal("n4 was admitted again on its revoked certificate")
	}
	c.crash("n4")

	// A certificate issued after the removal joins.
	for _, f := range []string{nodeCertFile("n4"), nodeKeyFile("n4")} {
		if err := os.Remove(filepath.Join(c.tlsDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := c.config(4, 3)
	fresh.RaftPort, fresh.GossipPort = again.RaftPort, again.GossipPort
	c.start(fresh)
	c.join("n4", dc.Name())
	c.waitFor("n4 admitted with a new certificate", 10*time.Second, func() bool { _, in := raftServers(dc)["n4"]; return in })
}

// TestRemovalNeedsEveryNodeToReadTheRevocation: while n3 runs a release
// that cannot read a revocation, removing another node is refused and
// changes nothing (it must not keep a usable certificate); removing n3
// itself is not held up by n3.
func TestRemovalNeedsEveryNodeToReadTheRevocation(t *testing.T) {
	c := newMixedCluster(t, 3, nil, map[string]int{"n3": 3})
	dc := c.waitDC()
	if dc.Name() == "n3" {
		if err := dc.raft.LeadershipTransfer().Error(); err != nil {
			t.Fatal(err)
		}
		dc = c.waitDC()
	}
	other := "n1"
	if dc.Name() == "n1" {
		other = "n2"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := dc.removeServer(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "removing "+other+" revokes its certificate: this change needs schema 4 (revoked certificates), which n3 cannot read") {
		t.Fatalf("removing %s beside an n3 of schema 3: %v", other, err)
	}
	if _, in := raftServers(dc)[other]; !in {
		t.Fatalf("%s was removed from Raft anyway", other)
	}
	if err := dc.removeServer(ctx, "n3"); err != nil {
		t.Fatalf("removing n3 itself: %v", err)
	}
	c.waitFor("n3 out and revoked", 10*time.Second, func() bool {
		_, in := raftServers(dc)["n3"]
		st := dc.FSM().State()
		return !in && len(st.Revoked) == 1 && st.Revoked[0].Node == "n3"
	})
}
