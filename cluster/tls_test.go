package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

const testValidity = 24 * time.Hour

// newTestCA creates a CA in a fresh directory and issues a certificate for
// each node.
func newTestCA(t *testing.T, nodes ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if err := InitCA(dir, testValidity); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	for _, n := range nodes {
		if err := IssueNodeCert(dir, n, []net.IP{net.IPv4(127, 0, 0, 1)}, testValidity); err != nil {
			t.Fatalf("IssueNodeCert(%s): %v", n, err)
		}
	}
	return dir
}

func mustLoadTLS(t *testing.T, dir, node string) *tls.Config {
	t.Helper()
	cfg, err := LoadTLS(dir, node)
	if err != nil {
		t.Fatalf("LoadTLS(%s): %v", node, err)
	}
	return cfg
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func copyFile(t *testing.T, from, to string, perm fs.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(to)
	writeFileMode(t, to, string(data), perm)
}

func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestCAAndNodeCertRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if err := InitCA(dir, testValidity); err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("172.95.69.30"), net.ParseIP("::1")}
	if err := IssueNodeCert(dir, "n1", ips, time.Hour); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]fs.FileMode{
		".": 0o700, "ca.pem": 0o644, "ca-key.pem": 0o600, "n1.pem": 0o644, "n1-key.pem": 0o600,
	} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %04o, want %04o", name, got, want)
		}
	}

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v basic=%v maxPathLen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	cert := readCert(t, filepath.Join(dir, "n1.pem"))
	if cert.Subject.CommonName != "n1" {
		t.Errorf("CN = %q, want n1", cert.Subject.CommonName)
	}
	if !slices.Equal(cert.DNSNames, []string{"n1", TLSServerName}) {
		t.Errorf("DNS names = %q, want [n1 %s]", cert.DNSNames, TLSServerName)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(ips[0]) || !cert.IPAddresses[1].Equal(ips[1]) {
		t.Errorf("IP addresses = %v, want %v", cert.IPAddresses, ips)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Error("node certificate is a CA")
	}
	for _, c := range []*x509.Certificate{ca, cert} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: public key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		t.Errorf("node certificate not signed by the CA: %v", err)
	}
	if d := cert.NotAfter.Sub(time.Now()); d > time.Hour || d < 50*time.Minute {
		t.Errorf("node certificate expires in %s, want about 1h", d)
	}

	cfg := mustLoadTLS(t, dir, "n1")
	if len(cfg.Certificates) != 1 || cfg.Certificates[0].Leaf == nil || cfg.Certificates[0].Leaf.Subject.CommonName != "n1" {
		t.Errorf("Certificates do not hold n1's certificate")
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v, want RequireAndVerifyClientCert", cfg.ClientAuth)
	}
	if cfg.ServerName != TLSServerName {
		t.Errorf("ServerName = %q, want %q", cfg.ServerName, TLSServerName)
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %#x, want TLS 1.3", cfg.MinVersion)
	}
	if cfg.RootCAs == nil || !cfg.RootCAs.Equal(cfg.ClientCAs) {
		t.Error("RootCAs and ClientCAs should be the same CA pool")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: TLSServerName}); err != nil {
		t.Errorf("node certificate does not verify against the config's roots: %v", err)
	}
}

func TestNodeCertValidityCappedByCA(t *testing.T) {
	dir := newTestCA(t)
	if err := IssueNodeCert(dir, "n1", nil, 10*testValidity); err != nil {
		t.Fatal(err)
	}
	ca, cert := readCert(t, filepath.Join(dir, "ca.pem")), readCert(t, filepath.Join(dir, "n1.pem"))
	if !cert.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("node certificate expires %s, want the CA's %s", cert.NotAfter, ca.NotAfter)
	}
}

func TestInitCARefusesOverwrite(t *testing.T) {
	dir := newTestCA(t)
	before, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	wantErrContains(t, InitCA(dir, testValidity), "already exists", dir)
	after, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("refused InitCA changed ca.pem")
	}

	// Half a CA (just the key) is refused too, and left alone.
	dir2 := t.TempDir()
	writeFileMode(t, filepath.Join(dir2, "ca-key.pem"), "x", 0o600)
	wantErrContains(t, InitCA(dir2, testValidity), "ca-key.pem")
	if _, err := os.Stat(filepath.Join(dir2, "ca.pem")); !os.IsNotExist(err) {
		t.Errorf("refused InitCA wrote ca.pem (stat: %v)", err)
	}
}

func TestInitCARejectsBadValidity(t *testing.T) {
	for _, v := range []time.Duration{0, -time.Hour} {
		dir := filepath.Join(t.TempDir(), "tls")
		wantErrContains(t, InitCA(dir, v), "validity")
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("InitCA(%s) created the directory", v)
		}
	}
}

func TestIssueNodeCertRefusesOverwrite(t *testing.T) {
	dir := newTestCA(t, "n1")
	before, err := os.ReadFile(filepath.Join(dir, "n1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	wantErrContains(t, IssueNodeCert(dir, "n1", nil, testValidity), "already exists", "n1")
	after, err := os.ReadFile(filepath.Join(dir, "n1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("refused IssueNodeCert changed n1.pem")
	}
}

func TestIssueNodeCertNames(t *testing.T) {
	dir := newTestCA(t)
	tests := []struct {
		name string
		ok   bool
	}{
		{"n1", true},
		{"M30", true},
		{"node_2.example-a", true},
		{"a", true},
		{strings.Repeat("x", 63), true},
		{TLSServerName, true},
		{"", false},
		{strings.Repeat("x", 64), false},
		{".hidden", false},
		{"-flag", false},
		{"../etc", false},
		{"a/b", false},
		{"n 1", false},
		{"n1\n", false},
		{"nœud", false},
	}
	for _, tt := range tests {
		err := IssueNodeCert(dir, tt.name, nil, testValidity)
		if tt.ok != (err == nil) {
			t.Errorf("IssueNodeCert(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	cert := readCert(t, filepath.Join(dir, TLSServerName+".pem"))
	if !slices.Equal(cert.DNSNames, []string{TLSServerName}) {
		t.Errorf("DNS names of a node named %s = %q, want it once", TLSServerName, cert.DNSNames)
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("a bad node name wrote outside the TLS directory: %v", entries)
	}
}

func TestIssueNodeCertRejectsBadInput(t *testing.T) {
	dir := newTestCA(t)
	wantErrContains(t, IssueNodeCert(dir, "n1", nil, 0), "validity")
	wantErrContains(t, IssueNodeCert(dir, "n1", []net.IP{{1, 2, 3}}, testValidity), "invalid IP")
	wantErrContains(t, IssueNodeCert(t.TempDir(), "n1", nil, testValidity), "no cluster CA", "raftlb tls init")

	// A CA directory copied without its key cannot issue.
	noKey := t.TempDir()
	copyFile(t, filepath.Join(dir, "ca.pem"), filepath.Join(noKey, "ca.pem"), 0o644)
	wantErrContains(t, IssueNodeCert(noKey, "n1", nil, testValidity), "no CA private key")

	// A CA key that does not match ca.pem is refused.
	other := newTestCA(t)
	copyFile(t, filepath.Join(other, "ca-key.pem"), filepath.Join(noKey, "ca-key.pem"), 0o600)
	wantErrContains(t, IssueNodeCert(noKey, "n1", nil, testValidity), "does not belong")

	// A CA key readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrContains(t, IssueNodeCert(dir, "n1", nil, testValidity), "chmod 600")
	if _, err := os.Stat(filepath.Join(dir, "n1.pem")); !os.IsNotExist(err) {
		t.Errorf("a failed IssueNodeCert left n1.pem behind (stat: %v)", err)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	now := time.Now()
	dir := newTestCA(t, "n1", "n2")
	other := newTestCA(t, "n1")

	t.Run("no certificate", func(t *testing.T) {
		_, err := LoadTLS(dir, "n9")
		want := "no certificate for node n9 in " + dir + " (create one with: raftlb tls cert --name n9)"
		if err == nil || err.Error() != want {
			t.Fatalf("LoadTLS = %v, want %q", err, want)
		}
	})
	t.Run("no CA", func(t *testing.T) {
		_, err := LoadTLS(t.TempDir(), "n1")
		wantErrContains(t, err, "no cluster CA", "raftlb tls init")
	})
	t.Run("bad node name", func(t *testing.T) {
		_, err := LoadTLS(dir, "../n1")
		wantErrContains(t, err, "node name")
	})
	t.Run("expired", func(t *testing.T) {
		later := now.Add(2 * time.Hour)
		d := newTestCA(t)
		if err := issueNodeCertAt(d, d, "n1", nil, time.Hour, now); err != nil {
			t.Fatal(err)
		}
		_, err := loadTLSAt(d, "n1", later)
		notAfter := now.Add(time.Hour).UTC().Format(time.RFC3339)
		wantErrContains(t, err, "n1.pem expired at "+notAfter, "raftlb tls cert --name n1")
		if _, err := loadTLSAt(d, "n1", now.Add(time.Hour-time.Second)); err != nil {
			t.Errorf("a second before expiry: %v", err)
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		d := newTestCA(t)
		if err := issueNodeCertAt(d, d, "n1", nil, time.Hour, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		_, err := loadTLSAt(d, "n1", now.Add(-clockSkew))
		wantErrContains(t, err, "not valid until", "clock")
	})
	t.Run("CA expired", func(t *testing.T) {
		_, err := loadTLSAt(dir, "n1", now.Add(2*testValidity))
		wantErrContains(t, err, "ca.pem expired at")
	})
	// Directories put together from the two CAs' files: which file of
	// which directory lands under which name, with what mode.
	type file struct {
		from, name, as string
		mode           os.FileMode
	}
	for _, tc := range []struct {
		name  string
		files []file
		want  []string
	}{
		{"signed by another CA", []file{{dir, "ca.pem", "ca.pem", 0o644}, {other, "n1.pem", "n1.pem", 0o644}, {other, "n1-key.pem", "n1-key.pem", 0o600}},
			[]string{"certificate n1.pem is not signed by ca.pem"}},
		{"certificate of another node", []file{{dir, "ca.pem", "ca.pem", 0o644}, {dir, "n2.pem", "n1.pem", 0o644}, {dir, "n2-key.pem", "n1-key.pem", 0o600}},
			[]string{`certificate n1.pem is for node "n2", not n1`}},
		{"key of another node", []file{{dir, "ca.pem", "ca.pem", 0o644}, {dir, "n1.pem", "n1.pem", 0o644}, {dir, "n2-key.pem", "n1-key.pem", 0o600}},
			[]string{"n1.pem and n1-key.pem", "do not form a key pair"}},
		{"missing key", []file{{dir, "ca.pem", "ca.pem", 0o644}, {dir, "n1.pem", "n1.pem", 0o644}},
			[]string{"no private key n1-key.pem", "raftlb tls cert --name n1"}},
		{"key readable by others", []file{{dir, "ca.pem", "ca.pem", 0o644}, {dir, "n1.pem", "n1.pem", 0o644}, {dir, "n1-key.pem", "n1-key.pem", 0o640}},
			[]string{"n1-key.pem", "chmod 600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			for _, f := range tc.files {
				copyFile(t, filepath.Join(f.from, f.name), filepath.Join(d, f.as), f.mode)
			}
			_, err := LoadTLS(d, "n1")
			wantErrContains(t, err, tc.want...)
		})
	}
}

// exchange runs one connection between a server and a client with the given
// configs over a real loopback listener: after the handshake the client
// sends "ping" and the server answers "pong". It returns each side's first
// error and, on success, the CN each side saw on its peer's certificate.
func exchange(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, serverSaw, clientSaw string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type result struct {
		err  error
		peer string
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil {
			done <- result{err: err}
			return
		}
		if string(buf) != "ping" {
			done <- result{err: io.ErrUnexpectedEOF}
			return
		}
		if _, err := tc.Write([]byte("pong")); err != nil {
			done <- result{err: err}
			return
		}
		done <- result{peer: tc.ConnectionState().PeerCertificates[0].Subject.CommonName}
	}()

	c, err := testkit.Dial(t, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	clientErr = func() error {
		if err := tc.Handshake(); err != nil {
			return err
		}
		clientSaw = tc.ConnectionState().PeerCertificates[0].Subject.CommonName
		if _, err := tc.Write([]byte("ping")); err != nil {
			return err
		}
		// In TLS 1.3 the server checks the client's certificate after the
		// client's handshake returns, so a rejection shows up here.
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil {
			return err
		}
		if string(buf) != "pong" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}()
	tc.Close()
	r := <-done
	return r.err, clientErr, r.peer, clientSaw
}

func TestMutualTLSSameCA(t *testing.T) {
	dir := newTestCA(t, "n1", "n2")
	serverErr, clientErr, serverSaw, clientSaw := exchange(t, mustLoadTLS(t, dir, "n1"), mustLoadTLS(t, dir, "n2"))
	if serverErr != nil || clientErr != nil {
		t.Fatalf("server error %v, client error %v", serverErr, clientErr)
	}
	if serverSaw != "n2" || clientSaw != "n1" {
		t.Errorf("server saw %q, client saw %q; want n2 and n1", serverSaw, clientSaw)
	}
}

func TestMutualTLSOtherCA(t *testing.T) {
	dir := newTestCA(t, "n1")
	foreign := newTestCA(t, "n3")
	serverErr, clientErr, _, _ := exchange(t, mustLoadTLS(t, dir, "n1"), mustLoadTLS(t, foreign, "n3"))
	// The client checks the server first and gives up; the server hears it.
	wantErrContains(t, clientErr, "certificate", "authority")
	wantErrContains(t, serverErr, "certificate")
}

func TestMutualTLSClientFromOtherCA(t *testing.T) {
	// A client that trusts our CA but holds a certificate from another one
	// gets past its own check and must be stopped by the server's.
	dir := newTestCA(t, "n1")
	foreign := newTestCA(t, "n3")
	client := mustLoadTLS(t, foreign, "n3")
	client.RootCAs = mustLoadTLS(t, dir, "n1").RootCAs
	serverErr, clientErr, _, _ := exchange(t, mustLoadTLS(t, dir, "n1"), client)
	wantErrContains(t, serverErr, "certificate", "authority")
	wantErrContains(t, clientErr, "certificate")
}

func TestMutualTLSClientWithoutCertificate(t *testing.T) {
	dir := newTestCA(t, "n1")
	server := mustLoadTLS(t, dir, "n1")
	client := &tls.Config{RootCAs: server.RootCAs, ServerName: TLSServerName, MinVersion: tls.VersionTLS13}
	serverErr, clientErr, _, _ := exchange(t, server, client)
	wantErrContains(t, serverErr, "certificate")
	wantErrContains(t, clientErr, "certificate")
}

// TestCertWarning: within 30 days of this node's certificate or of the
// CA running out, the agent says so (log, status), with what to do.
func TestCertWarning(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, 400*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := IssueNodeCert(dir, "n1", []net.IP{net.IPv4(127, 0, 0, 1)}, 100*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	conf, err := LoadTLS(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if w := CertWarning(conf, now); w != "" {
		t.Errorf("100 days left: %q", w)
	}
	w := CertWarning(conf, now.Add(80*24*time.Hour))
	if !strings.Contains(w, "this node's certificate expires in 19 day(s)") || !strings.Contains(w, "raftlb tls cert --name n1") || strings.Contains(w, "CA") {
		t.Errorf("20 days left on the certificate: %q", w)
	}
	w = CertWarning(conf, now.Add(390*24*time.Hour))
	if !strings.Contains(w, "the cluster CA expires in") {
		t.Errorf("10 days left on the CA: %q", w)
	}
}
