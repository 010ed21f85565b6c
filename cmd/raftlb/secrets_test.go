package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/cluster"
)

func TestKeygenToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.key")
	stdout, _ := wantExit(t, 0, []string{"keygen", "-o", path})
	if !strings.Contains(stdout, "--key-file "+path) {
		t.Errorf("stdout %q: want it to say how to use the file", stdout)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	key, err := cluster.LoadKeyFile(path)
	if err != nil {
		t.Fatalf("the agent cannot load the key keygen wrote: %v", err)
	}
	if len(key) != 32 {
		t.Errorf("key is %d bytes, want 32", len(key))
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// A second run must not replace the cluster's key.
	wantExit(t, 1, []string{"keygen", "-o", path}, "already exists", "refusing to overwrite")
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Error("a second keygen changed the existing key file")
	}
}

func TestKeygenToStdout(t *testing.T) {
	keys := map[string]bool{}
	for range 2 {
		stdout, stderr := wantExit(t, 0, []string{"keygen"})
		if stderr != "" {
			t.Errorf("stderr %q", stderr)
		}
		line := strings.TrimSuffix(stdout, "\n")
		if strings.ContainsAny(line, "\n ") {
			t.Fatalf("stdout %q: want one base64 key on one line", stdout)
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			t.Fatalf("stdout %q is not base64: %v", stdout, err)
		}
		if len(key) != 32 {
			t.Errorf("key is %d bytes, want 32", len(key))
		}
		keys[line] = true
	}
	if len(keys) != 2 {
		t.Error("two keygen runs printed the same key")
	}
	wantExit(t, 2, []string{"keygen", "extra"}, "keygen takes no arguments")
}

func TestTLSInitAndCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	stdout, _ := wantExit(t, 0, []string{"tls", "init", "--dir", dir})
	if !strings.Contains(stdout, "ca-key.pem") {
		t.Errorf("tls init stdout %q: want it to warn about ca-key.pem", stdout)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("tls init did not create %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("ca-key.pem has mode %04o, want it private", fi.Mode().Perm())
	}

	node := filepath.Join(t.TempDir(), "n1-tls")
	wantExit(t, 0, []string{"tls", "cert", "--dir", dir, "--name", "n1", "--out", node, "--ip", "127.0.0.1", "--ip", "::1"})
	// The node's directory: its pair and the CA's certificate, never the
	// CA's key; the CA's directory is unchanged.
	if got := dirNames(t, node); got != "ca.pem n1-key.pem n1.pem" {
		t.Errorf("the node's TLS directory holds %q", got)
	}
	if got := dirNames(t, dir); got != "ca-key.pem ca.pem" {
		t.Errorf("the CA's directory holds %q after tls cert", got)
	}
	if fi, err := os.Stat(node); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the node's TLS directory: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	data, err := os.ReadFile(filepath.Join(node, "n1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("n1.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "n1" {
		t.Errorf("certificate CN %q, want n1", cert.Subject.CommonName)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !cert.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("certificate IPs %v, want 127.0.0.1 and ::1", cert.IPAddresses)
	}
	// What the CLI wrote is what the agent loads.
	if _, err := cluster.LoadTLS(node, "n1"); err != nil {
		t.Errorf("the agent cannot load what tls wrote: %v", err)
	}
	// A second node's directory may be the same one: ca.pem is the same.
	wantExit(t, 0, []string{"tls", "cert", "--dir", dir, "--name", "n2", "--out", node, "--ip", "127.0.0.2"})
	wantExit(t, 2, []string{"tls", "cert", "--dir", dir, "--name", "n4", "--out", node}, "tls cert needs --ip, the node's --bind address")

	// Neither the CA nor a node certificate is replaced.
	wantExit(t, 1, []string{"tls", "init", "--dir", dir}, "a CA already exists")
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n1", "--out", node, "--ip", "127.0.0.1"}, "already exists")
	// The CA's key never lands where an agent reads.
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n3", "--out", dir, "--ip", "127.0.0.3"}, "is the CA's directory")
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n3", "--out", dir + "/.", "--ip", "127.0.0.3"}, "is the CA's directory")
	other := filepath.Join(t.TempDir(), "other")
	wantExit(t, 0, []string{"tls", "init", "--dir", other})
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n3", "--out", other, "--ip", "127.0.0.3"}, "holds a CA private key")
	if err := os.Remove(filepath.Join(other, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n3", "--out", other, "--ip", "127.0.0.3"}, "holds another CA's certificate")
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func TestTLSCertBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	wantExit(t, 0, []string{"tls", "init", "--dir", dir})

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--name", "../n1"}, "node name"},
		{[]string{"--name", "-n1"}, "must not start with"},
		{[]string{"--name", "n 1"}, "may only contain"},
		{[]string{"--name", strings.Repeat("n", 64)}, "1-63 characters"},
		{[]string{"--name", "n1", "--ip", "300.1.1.1"}, `--ip "300.1.1.1" is not an IP address`},
		{[]string{"--name", "n1", "--ip", "m30.example"}, `--ip "m30.example" is not an IP address`},
		{[]string{"--name", "n1", "--days", "0"}, "tls cert needs --dir CADIR --name NODE --out NODEDIR"},
		{[]string{"--name", "n1", "extra"}, "tls cert needs --dir CADIR --name NODE --out NODEDIR"},
		{[]string{}, "tls cert needs --dir CADIR --name NODE --out NODEDIR"},
	}
	for _, tc := range cases {
		wantExit(t, 2, append([]string{"tls", "cert", "--dir", dir, "--out", filepath.Join(t.TempDir(), "node")}, tc.args...), "raftlb: usage: ", tc.want)
	}
	wantExit(t, 2, []string{"tls", "cert", "--name", "n1", "--dir", dir}, "tls cert needs --dir CADIR --name NODE --out NODEDIR")

	// Only the CA is there: no refused command wrote anything.
	if got := dirNames(t, dir); got != "ca-key.pem ca.pem" {
		t.Errorf("the TLS directory holds %q after refused commands", got)
	}
}

func TestTLSCertWithoutCA(t *testing.T) {
	dir := t.TempDir()
	wantExit(t, 1, []string{"tls", "cert", "--dir", dir, "--name", "n1", "--out", filepath.Join(dir, "n1"), "--ip", "127.0.0.1"}, "no cluster CA in "+dir, "raftlb tls init")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("tls cert without a CA left %d files behind", len(entries))
	}
}

func TestTLSUsage(t *testing.T) {
	wantExit(t, 2, []string{"tls"}, "tls needs a subcommand: init or cert")
	wantExit(t, 2, []string{"tls", "bogus"}, `unknown tls subcommand "bogus"`)
	wantExit(t, 2, []string{"tls", "init"}, "tls init needs --dir DIR")
	wantExit(t, 2, []string{"tls", "init", "--dir", t.TempDir(), "--days", "0"}, "--days ≥ 1")
	wantExit(t, 2, []string{"tls", "init", "--frobnicate"}, "flag provided but not defined")
}

// TestAgentTLSDirRules: the agent refuses a --tls-dir that holds the CA's
// private key, and warns in its log of a certificate that expires within
// 30 days.
func TestAgentTLSDirRules(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	wantExit(t, 0, []string{"tls", "init", "--dir", ca})
	node := filepath.Join(t.TempDir(), "n1-tls")
	wantExit(t, 0, []string{"tls", "cert", "--dir", ca, "--name", "n1", "--out", node, "--ip", "127.0.0.1", "--days", "10"})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := loadAgentTLS(node, "n1", logger); err != nil {
		t.Fatalf("the agent cannot load what tls cert wrote: %v", err)
	}
	if !strings.Contains(logs.String(), "certificates expire soon") || !strings.Contains(logs.String(), "expires in") {
		t.Errorf("no warning of a certificate that expires in 10 days; the log:\n%s", logs.String())
	}

	key, err := os.ReadFile(filepath.Join(ca, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node, "ca-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAgentTLS(node, "n1", logger); err == nil || !strings.Contains(err.Error(), "holds ca-key.pem, the cluster CA's private key") {
		t.Errorf("a TLS directory holding the CA's key: %v, want it refused", err)
	}
}
