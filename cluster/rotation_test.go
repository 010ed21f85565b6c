package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestRotateGossipKeyWithoutRestart: a new gossip key rolled out in the
// three steps of LoadKeyRing on a running cluster. Before, a node with
// only the new key cannot join; after, it can and the others learn of it
// over gossip under the new key, while a node with only the old key is
// refused. The DC never changes.
func TestRotateGossipKeyWithoutRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	term := dc.raft.CurrentTerm()
	oldKey := c.key
	newKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg4 := c.config(4, 3)
	cfg4.GossipKey = newKey
	n4 := c.start(cfg4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n4.Join(ctx, []string{dc.GossipAddr()}); !errors.Is(err, ErrGossipKey) {
		t.Fatalf("a node with only the new key joined before the rotation: %v", err)
	}

	for _, step := range [][][]byte{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, nd := range []string{"n1", "n2", "n3"} {
			if err := c.node(nd).ReloadGossipKeys(step); err != nil {
				t.Fatalf("%s: %v", nd, err)
			}
		}
	}
	if _, err := n4.Join(ctx, []string{dc.GossipAddr()}); err != nil {
		t.Fatalf("a node with the new key, after the rotation: %v", err)
	}
	c.waitFor("every node seeing n4 alive over gossip", 10*time.Second, func() bool {
		for _, name := range []string{"n1", "n2", "n3"} {
			if !slices.ContainsFunc(c.node(name).members(), func(m member) bool { return m.Name == "n4" && m.State == memberlist.StateAlive }) {
				return false
			}
		}
		return true
	})
	cfg5 := c.config(5, 3)
	n5 := c.start(cfg5) // with the old key
	if _, err := n5.Join(ctx, []string{dc.GossipAddr()}); !errors.Is(err, ErrGossipKey) {
		t.Errorf("a node with only the retired key: %v, want ErrGossipKey", err)
	}
	if !dc.IsLeader() || dc.raft.CurrentTerm() != term {
		t.Errorf("the DC changed during the rotation (term %d, then %d)", term, dc.raft.CurrentTerm())
	}
}

// TestRotateCertificateWithoutRestart: a follower gets a new certificate
// and reloads it; its new connections, in and out, present it; the
// cluster keeps working and the DC never changes.
func TestRotateCertificateWithoutRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	term := dc.raft.CurrentTerm()
	f := c.followers(dc)[0]
	oldSerial := certSerial(f.currentTLS().Certificates[0].Leaf)
	for _, name := range []string{nodeCertFile(f.Name()), nodeKeyFile(f.Name())} {
		if err := os.Remove(filepath.Join(c.tlsDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := IssueNodeCert(c.tlsDir, f.Name(), []net.IP{f.cfg.BindAddr.AsSlice()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	conf, err := LoadTLS(c.tlsDir, f.Name())
	if err != nil {
		t.Fatal(err)
	}
	newSerial := certSerial(conf.Certificates[0].Leaf)
	if err := f.ReloadTLS(conf); err != nil {
		t.Fatal(err)
	}
	other, err := LoadTLS(c.tlsDir, dc.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ReloadTLS(other); err == nil {
		t.Error("a follower reloaded the DC's certificate")
	}

	// Out: an apply the follower forwards to the DC.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.ApplySpec(ctx, sampleSpec(8080), 0); err != nil {
		t.Fatalf("apply through the follower after the reload: %v", err)
	}
	if got := dc.serials.of(f.Name()); !slices.Contains(got, newSerial) {
		t.Errorf("the DC saw %s use serials %v, want the new %s among them", f.Name(), got, newSerial)
	}
	// In: the DC dials the follower.
	conn, err := dc.mux.dial(f.RaftAddr(), f.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := certSerial(conn.(*tls.Conn).ConnectionState().PeerCertificates[0]); got != newSerial || got == oldSerial {
		t.Errorf("%s presents serial %s after the reload, want %s (old %s)", f.Name(), got, newSerial, oldSerial)
	}
	c.waitFor("the spec on every node", 10*time.Second, func() bool {
		for _, nd := range c.live() {
			if nd.FSM().Spec().Version != 1 {
				return false
			}
		}
		return true
	})
	if !dc.IsLeader() || dc.raft.CurrentTerm() != term {
		t.Errorf("the DC changed during the rotation (term %d, then %d)", term, dc.raft.CurrentTerm())
	}
}

// TestRotateTheCAWithoutRestart: a new CA rolled out by reloads: a node
// with a certificate of the new CA is refused while the others trust only
// the old one; once every node's ca.pem holds both and is reloaded, it
// works, with the same DC throughout.
func TestRotateTheCAWithoutRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dc := c.waitDC()
	term := dc.raft.CurrentTerm()
	f := c.followers(dc)[0]
	newCA := t.TempDir()
	if err := InitCA(newCA, time.Hour); err != nil {
		t.Fatal(err)
	}
	oldPEM, err := os.ReadFile(filepath.Join(c.tlsDir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	newPEM, err := os.ReadFile(filepath.Join(newCA, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, oldPEM...), newPEM...)

	// f's directory: a certificate of the new CA, both CAs trusted.
	if err := IssueNodeCert(newCA, f.Name(), []net.IP{f.cfg.BindAddr.AsSlice()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	fDir := t.TempDir()
	for _, name := range []string{nodeCertFile(f.Name()), nodeKeyFile(f.Name())} {
		data, err := os.ReadFile(filepath.Join(newCA, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(fDir, caCertFile), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := LoadTLS(fDir, f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ReloadTLS(conf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := f.Ping(ctx, dc.Name(), dc.RaftAddr()); err == nil {
		t.Fatal("the DC, trusting only the old CA, accepted a certificate of the new one")
	}

	// Every other node trusts both.
	if err := os.WriteFile(filepath.Join(c.tlsDir, caCertFile), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.live() {
		if nd == f {
			continue
		}
		conf, err := LoadTLS(c.tlsDir, nd.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.ReloadTLS(conf); err != nil {
			t.Fatal(err)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := f.ApplySpec(ctx2, sampleSpec(8080), 0); err != nil {
		t.Fatalf("apply through the node of the new CA: %v", err)
	}
	if !dc.IsLeader() || dc.raft.CurrentTerm() != term {
		t.Errorf("the DC changed during the rotation (term %d, then %d)", term, dc.raft.CurrentTerm())
	}
}
