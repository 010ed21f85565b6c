package cluster

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Rotation without a restart. Both reloads change what new connections
// use; neither touches Raft's leadership.

// Credentials is what this node says it uses, as its start or its last
// reload set it: the gossip keys by fingerprint (KeyFingerprint), the
// first encrypting, and the serial of its certificate. Empty when
// insecure. A reload records it after its log line. JSON keys are part
// of the CLI contract.
type Credentials struct {
	GossipEncryptsWith string   `json:"gossip_encrypts_with,omitempty"`
	GossipAccepts      []string `json:"gossip_accepts,omitempty"`
	CertSerial         string   `json:"cert_serial,omitempty"`
}

// credentials holds a Node's Credentials.
type credentials struct {
	mu sync.Mutex
	c  Credentials
}

func (c *credentials) get() Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.c
	out.GossipAccepts = append([]string(nil), c.c.GossipAccepts...)
	return out
}

func (c *credentials) setKeys(fps []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.GossipEncryptsWith, c.c.GossipAccepts = fps[0], fps
}

func (c *credentials) setCert(leaf *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.CertSerial = certSerial(leaf)
}

// Credentials reports the gossip keys and the certificate this node uses.
func (n *Node) Credentials() Credentials { return n.creds.get() }

func keyFingerprints(keys [][]byte) []string {
	fps := make([]string, len(keys))
	for i, k := range keys {
		fps[i] = KeyFingerprint(k)
	}
	return fps
}

// ReloadGossipKeys replaces the gossip keyring with keys: the first
// encrypts, every one decrypts (LoadKeyRing says how a rotation goes).
func (n *Node) ReloadGossipKeys(keys [][]byte) error {
	if n.keyring == nil {
		return errors.New("gossip is not encrypted (--insecure): there is no key to rotate")
	}
	if len(keys) == 0 || len(keys) > MaxGossipKeys {
		return fmt.Errorf("%d gossip keys: want 1 to %d", len(keys), MaxGossipKeys)
	}
	for _, k := range keys {
		if err := checkKeyLength(k); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := n.keyring.AddKey(k); err != nil {
			return fmt.Errorf("install gossip key %s: %w", KeyFingerprint(k), err)
		}
	}
	if err := n.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("use gossip key %s: %w", KeyFingerprint(keys[0]), err)
	}
	for _, old := range n.keyring.GetKeys() {
		if !containsKey(keys, old) {
			if err := n.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("retire gossip key %s: %w", KeyFingerprint(old), err)
			}
		}
	}
	fps := keyFingerprints(keys)
	n.logger.Info("gossip keys reloaded", "encrypts_with", fps[0], "accepts", fps)
	n.creds.setKeys(fps)
	return nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// KeyFingerprint names a gossip key in logs without revealing it: the
// first 8 bytes of its SHA-256, in hex.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// ReloadTLS makes every new connection, Raft and RPC, in both directions,
// use conf (from LoadTLS), and closes Raft's pooled connections so
// replication redials with it. conf must be this node's.
func (n *Node) ReloadTLS(conf *tls.Config) error {
	if n.mux.tls.Load() == nil {
		return errors.New("raft runs without TLS (--insecure): there is no certificate to reload")
	}
	if conf == nil || len(conf.Certificates) == 0 || conf.Certificates[0].Leaf == nil {
		return errors.New("no certificate to reload")
	}
	leaf := conf.Certificates[0].Leaf
	if leaf.Subject.CommonName != n.cfg.Name {
		return fmt.Errorf("the certificate is for node %q, not %s", leaf.Subject.CommonName, n.cfg.Name)
	}
	old := n.mux.tls.Load()
	n.mux.setTLS(conf)
	if cur := old.Certificates[0].Leaf; cur != nil && cur.Equal(leaf) && old.RootCAs.Equal(conf.RootCAs) {
		n.logger.Info("TLS certificate reloaded: unchanged", "serial", certSerial(leaf))
		n.creds.setCert(leaf)
		return nil
	}
	n.trans.CloseStreams()
	n.logger.Info("TLS certificate reloaded", "serial", certSerial(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	n.creds.setCert(leaf)
	return nil
}

// currentTLS is the TLS configuration in use; nil when insecure.
func (n *Node) currentTLS() *tls.Config {
	if n.mux == nil {
		return n.cfg.TLS
	}
	return n.mux.tls.Load()
}

// CertExpiry says when this node's certificate and the cluster CA that
// signed it expire; zero times when insecure.
func (n *Node) CertExpiry() (node, ca time.Time) {
	conf := n.currentTLS()
	if conf == nil || len(conf.Certificates) == 0 || conf.Certificates[0].Leaf == nil {
		return time.Time{}, time.Time{}
	}
	leaf := conf.Certificates[0].Leaf
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: conf.RootCAs, CurrentTime: leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil && len(chains) > 0 {
		ca = chains[0][len(chains[0])-1].NotAfter
	}
	return leaf.NotAfter, ca
}

// ServerTLS is a TLS configuration for another listener of this node (the
// HTTP one) that requires client certificates of the cluster CA, following
// the node's reloads; nil when insecure.
func (n *Node) ServerTLS() *tls.Config {
	if n.currentTLS() == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := n.currentTLS().Clone()
		c.NextProtos = []string{"h2", "http/1.1"}
		return c, nil
	}}
}
