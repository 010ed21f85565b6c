package cluster

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// TLSServerName is the name every node certificate carries and every node
// dials with. Nodes are found by address, so a per-node name would buy
// nothing: trust comes from the cluster CA, and the node's name is checked
// against its certificate's CN when it is loaded.
const TLSServerName = "raftlb.cluster"

// File names in a TLS directory. Node files are NODE.pem and NODE-key.pem.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// clockSkew backdates NotBefore so a node whose clock runs a little behind
// the one that issued a certificate still accepts it.
const clockSkew = 5 * time.Minute

func nodeCertFile(node string) string { return node + ".pem" }
func nodeKeyFile(node string) string  { return node + "-key.pem" }

// InitCA creates the cluster CA in dir (created with mode 0700 if missing):
// ca.pem and ca-key.pem (0600), an ECDSA P-256 key valid for validity. It
// refuses to replace an existing CA, since every node certificate issued by
// it would stop being trusted.
func InitCA(dir string, validity time.Duration) error {
	return initCAAt(dir, validity, time.Now())
}

func initCAAt(dir string, validity time.Duration, now time.Time) error {
	if validity <= 0 {
		return fmt.Errorf("CA validity %s must be positive", validity)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("a CA already exists in %s (%s); refusing to replace it, as every node certificate it signed would stop being trusted", dir, filepath.Base(p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check for an existing CA: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "raftlb cluster CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs node certificates directly, never another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	return writeKeyPair(certPath, keyPath, der, key)
}

// IssueNodeCert issues NODE.pem and NODE-key.pem (0600) in dir, signed by
// the CA there. The certificate has CN=node, the DNS names node and
// TLSServerName plus ips, and may be used both as a server and as a client
// (Raft dials and accepts with the same identity). Its validity is cut to
// the CA's, as it could not be verified past that. Existing files are not
// replaced.
func IssueNodeCert(dir, node string, ips []net.IP, validity time.Duration) error {
	return issueNodeCertAt(dir, dir, node, ips, validity, time.Now())
}

// IssueNodeDir issues node's certificate with the CA in caDir into outDir
// (created 0700), with a copy of ca.pem: the node's whole TLS directory,
// and nothing of the CA's private key. outDir must be another directory
// than caDir, and must not hold a CA key.
func IssueNodeDir(caDir, outDir, node string, ips []net.IP, validity time.Duration) error {
	if err := spec.ValidateNodeName(node); err != nil {
		return err
	}
	if _, err := readCACerts(caDir, time.Now()); err != nil {
		return err
	}
	if same, err := sameDir(caDir, outDir); err != nil {
		return err
	} else if same {
		return fmt.Errorf("--out %s is the CA's directory: a node's TLS directory must not hold %s; name a directory of its own", outDir, caKeyFile)
	}
	if _, err := os.Lstat(filepath.Join(outDir, caKeyFile)); err == nil {
		return fmt.Errorf("%s holds a CA private key (%s): a node's TLS directory must not; name another directory", outDir, caKeyFile)
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, caCertFile))
	if err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", outDir, err)
	}
	outCA := filepath.Join(outDir, caCertFile)
	if have, err := os.ReadFile(outCA); err == nil {
		if !bytes.Equal(have, caPEM) {
			return fmt.Errorf("%s holds another CA's certificate than %s; name another directory", outCA, filepath.Join(caDir, caCertFile))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", outCA, err)
	}
	if err := issueNodeCertAt(caDir, outDir, node, ips, validity, time.Now()); err != nil {
		return err
	}
	if _, err := os.Lstat(outCA); errors.Is(err, fs.ErrNotExist) {
		if err := writeNewFile(outCA, caPEM, 0o644, "CA certificate"); err != nil {
			return err
		}
	}
	return nil
}

// sameDir reports whether a and b are one directory (b may not exist yet).
func sameDir(a, b string) (bool, error) {
	ai, err := os.Stat(a)
	if err != nil {
		return false, fmt.Errorf("CA directory: %w", err)
	}
	bi, err := os.Stat(b)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return os.SameFile(ai, bi), nil
}

func issueNodeCertAt(caDir, dir, node string, ips []net.IP, validity time.Duration, now time.Time) error {
	if err := spec.ValidateNodeName(node); err != nil {
		return err
	}
	if validity <= 0 {
		return fmt.Errorf("certificate validity %s must be positive", validity)
	}
	for _, ip := range ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return fmt.Errorf("invalid IP address %v for the certificate of node %s", ip, node)
		}
	}
	ca, caKey, err := loadCA(caDir, now)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, nodeCertFile(node)), filepath.Join(dir, nodeKeyFile(node))
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to replace the certificate of node %s (remove %s and %s first to reissue it)", p, node, nodeCertFile(node), nodeKeyFile(node))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check for an existing certificate: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key for node %s: %w", node, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	dns := []string{node}
	if node != TLSServerName {
		dns = append(dns, TLSServerName)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		DNSNames:     dns,
		IPAddresses:  ips,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign certificate for node %s: %w", node, err)
	}
	return writeKeyPair(certPath, keyPath, der, key)
}

// LoadTLS returns the mutual-TLS configuration of node from dir, used both
// to listen and to dial: the node's certificate, the cluster CA as the only
// root for servers and clients alike, client certificates required, TLS 1.3.
// It checks up front what would otherwise fail later as an opaque handshake
// error: the certificate matches its key, is for this node, is current and
// is signed by the CA.
func LoadTLS(dir, node string) (*tls.Config, error) {
	return loadTLSAt(dir, node, time.Now())
}

func loadTLSAt(dir, node string, now time.Time) (*tls.Config, error) {
	if err := spec.ValidateNodeName(node); err != nil {
		return nil, err
	}
	cas, err := readCACerts(dir, now)
	if err != nil {
		return nil, err
	}
	certName, keyName := nodeCertFile(node), nodeKeyFile(node)
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	reissue := fmt.Sprintf("raftlb tls cert --name %s", node)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no certificate for node %s in %s (create one with: %s)", node, dir, reissue)
	} else if err != nil {
		return nil, fmt.Errorf("read certificate of node %s: %w", node, err)
	}
	keyPEM, err := readPrivateFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no private key %s for node %s in %s (remove %s and create both with: %s)", keyName, node, dir, certName, reissue)
	} else if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s in %s do not form a key pair (recreate them with: %s): %w", certName, keyName, dir, reissue, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse %s: %w", certPath, err)
		}
	}
	if leaf.Subject.CommonName != node {
		return nil, fmt.Errorf("certificate %s is for node %q, not %s (create one with: %s)", certName, leaf.Subject.CommonName, node, reissue)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s expired at %s (issue a new one with: %s)", certName, leaf.NotAfter.UTC().Format(time.RFC3339), reissue)
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("certificate %s is not valid until %s; check this node's clock", certName, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		if errors.As(err, new(x509.UnknownAuthorityError)) {
			return nil, fmt.Errorf("certificate %s is not signed by %s in %s (issue one from this CA with: %s)", certName, caCertFile, dir, reissue)
		}
		return nil, fmt.Errorf("certificate %s does not verify against %s: %w", certName, caCertFile, err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return nil, fmt.Errorf("certificate %s cannot be used for both server and client authentication, which Raft's mutual TLS needs (reissue it with: %s)", certName, reissue)
		}
	}
	if err := leaf.VerifyHostname(TLSServerName); err != nil {
		return nil, fmt.Errorf("certificate %s does not name %s, which peers dial (reissue it with: %s)", certName, TLSServerName, reissue)
	}
	pair.Leaf = leaf
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   TLSServerName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// maxCAs bounds the CA certificates ca.pem may hold: the current one and
// those a CA rotation adds or retires.
const maxCAs = 4

// readCACerts reads and checks ca.pem in dir: one CA certificate, or
// several while the CA is rotated (trusted alike: add the new CA to every
// node's ca.pem and reload, reissue the node certificates from it and
// reload, then drop the old CA and reload).
func readCACerts(dir string, now time.Time) ([]*x509.Certificate, error) {
	p := filepath.Join(dir, caCertFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no cluster CA in %s (create one with: raftlb tls init, then copy %s to every node)", dir, caCertFile)
	} else if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w", err)
	}
	var cas []*x509.Certificate
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: certificate %d: no PEM CERTIFICATE block", p, len(cas)+1)
		}
		ca, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", p, len(cas)+1, err)
		}
		if !ca.IsCA {
			return nil, fmt.Errorf("%s is not a CA certificate", p)
		}
		if now.After(ca.NotAfter) {
			return nil, fmt.Errorf("cluster CA %s expired at %s (create a new CA and new node certificates)", p, ca.NotAfter.UTC().Format(time.RFC3339))
		}
		cas = append(cas, ca)
	}
	switch {
	case len(cas) == 0:
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", p)
	case len(cas) > maxCAs:
		return nil, fmt.Errorf("%s holds %d CA certificates, at most %d", p, len(cas), maxCAs)
	}
	return cas, nil
}

// loadCA reads the CA certificate whose private key is in dir, for
// signing.
func loadCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	cas, err := readCACerts(dir, now)
	if err != nil {
		return nil, nil, err
	}
	p := filepath.Join(dir, caKeyFile)
	data, err := readPrivateFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no CA private key %s in %s: certificates are issued on the machine where `raftlb tls init` ran", caKeyFile, dir)
	} else if err != nil {
		return nil, nil, err
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	for _, ca := range cas {
		if ok && pub.Equal(ca.PublicKey) {
			return ca, key, nil
		}
	}
	return nil, nil, fmt.Errorf("%s does not belong to %s in %s", caKeyFile, caCertFile, dir)
}

// readPrivateFile reads a private key file, refusing one that group or
// others may access.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(path, info.Mode()); err != nil {
		return nil, fmt.Errorf("private key %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q, want a private key", block.Type)
	}
}

// writeKeyPair writes the key (0600) and then the certificate (0644, it is
// public), both as new files; if the certificate cannot be written the key
// is removed so no half pair is left behind.
func writeKeyPair(certPath, keyPath string, certDER []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	if err := writeNewFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600, "private key"); err != nil {
		return err
	}
	if err := writeNewFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644, "certificate"); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	// Serials must be positive; the range is now [1, 2^128].
	return n.Add(n, big.NewInt(1)), nil
}

// ExpiryWarnWithin is how long before a certificate or the CA expires
// the agent starts to warn (log, status).
const ExpiryWarnWithin = 30 * 24 * time.Hour

// CertWarning says, for the TLS material LoadTLS built, when this node's
// certificate or the cluster CA expires within ExpiryWarnWithin of now,
// and how to renew; "" otherwise.
func CertWarning(conf *tls.Config, now time.Time) string {
	if conf == nil || len(conf.Certificates) == 0 || conf.Certificates[0].Leaf == nil {
		return ""
	}
	leaf := conf.Certificates[0].Leaf
	var parts []string
	if left := leaf.NotAfter.Sub(now); left < ExpiryWarnWithin {
		parts = append(parts, fmt.Sprintf("this node's certificate %s, at %s: issue a new one (raftlb tls cert --name %s) and reload the agent (systemctl reload raftlb)", expiresIn(left), leaf.NotAfter.UTC().Format(time.DateOnly), leaf.Subject.CommonName))
	}
	// The chain as it verified when the certificate was issued.
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: conf.RootCAs, CurrentTime: leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil && len(chains) > 0 {
		ca := chains[0][len(chains[0])-1]
		if left := ca.NotAfter.Sub(now); left < ExpiryWarnWithin {
			parts = append(parts, fmt.Sprintf("the cluster CA %s, at %s: create a new CA and certificates for every node", expiresIn(left), ca.NotAfter.UTC().Format(time.DateOnly)))
		}
	}
	return strings.Join(parts, "; ")
}

func expiresIn(left time.Duration) string {
	if left <= 0 {
		return "has expired"
	}
	return fmt.Sprintf("expires in %d day(s)", int(left.Hours()/24))
}
