//go:build linux

package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	raftcluster "github.com/raftlb/raftlb/cluster"
)

// TestRotationBySIGHUP: the operator's rotation of a running three-node
// cluster, through the CLI and SIGHUP only: a new gossip key rolled out in
// three reloads (added, made primary, the old one dropped), and a node's
// certificate reissued and reloaded. The DC and its term never change;
// afterwards a node with only the old key cannot join, and an apply
// through the rotated node works.
func TestRotationBySIGHUP(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockRotation, 3)
	before := c.mustStatus(c.agents[0])
	// An agent records the keys and the certificate it reloaded, after
	// logging them, and shows them in its status: the test waits on that,
	// then reads the line.
	hupAll := func(step string, keys ...string) {
		t.Helper()
		want := make([]string, len(keys))
		for i, k := range keys {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			want[i] = raftcluster.KeyFingerprint(raw)
		}
		for _, a := range c.agents {
			n := strings.Count(readLog(t, a), "gossip keys reloaded")
			c.signal(a, syscall.SIGHUP)
			c.waitFor(a.name+" reloading its keys ("+step+")", changeTimeout, func() error {
				st, err := c.status(a)
				if err != nil {
					return err
				}
				if got := st.Credentials.GossipAccepts; !slices.Equal(got, want) || st.Credentials.GossipEncryptsWith != want[0] {
					return fmt.Errorf("keys %v encrypting with %s, want %v", got, st.Credentials.GossipEncryptsWith, want)
				}
				return nil
			})
			if got := strings.Count(readLog(t, a), "gossip keys reloaded"); got != n+1 {
				t.Errorf("%s logged %d key reloads for %s, want 1", a.name, got-n, step)
			}
		}
	}
	oldKey := strings.TrimSpace(string(mustRead(t, c.keyFile)))
	newKeyFile := filepath.Join(c.dir, "new.key")
	c.mustRaftlb("keygen", "-o", newKeyFile)
	newKey := strings.TrimSpace(string(mustRead(t, newKeyFile)))
	for _, step := range []struct {
		name string
		keys []string
	}{
		{"new key added", []string{oldKey, newKey}},
		{"new key first", []string{newKey, oldKey}},
		{"old key dropped", []string{newKey}},
	} {
		// Every agent reads the same key file here, as each node's copy
		// would be changed in the same step.
		if err := os.WriteFile(c.keyFile, []byte(strings.Join(step.keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		hupAll(step.name, step.keys...)
	}

	// A certificate reissued for n2 in place, then reloaded.
	n2 := c.agents[1]
	oldSerial := serialIn(t, filepath.Join(n2.tlsDir, "n2.pem"))
	for _, f := range []string{"n2.pem", "n2-key.pem"} {
		if err := os.Remove(filepath.Join(n2.tlsDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	c.mustRaftlb("tls", "cert", "--dir", c.tlsDir, "--name", "n2", "--ip", n2.ip, "--out", n2.tlsDir)
	newSerial := serialIn(t, filepath.Join(n2.tlsDir, "n2.pem"))
	c.signal(n2, syscall.SIGHUP)
	c.waitFor("n2 reloading its certificate", changeTimeout, func() error {
		st, err := c.status(n2)
		if err != nil {
			return err
		}
		if got := st.Credentials.CertSerial; got != newSerial {
			return fmt.Errorf("n2 uses serial %s, want %s (old %s)", got, newSerial, oldSerial)
		}
		return nil
	})
	if log := readLog(t, n2); !strings.Contains(log, `msg="TLS certificate reloaded" component=cluster node=n2 serial=`+newSerial) {
		t.Errorf("n2 did not log the reload of serial %s", newSerial)
	}
	applyAndWait(c, n2, writeFile(t, c.dir, "squid.yaml", squidServices), c.agents)

	// A stranger with the retired key is refused.
	stranger := c.addAgent(4, filepath.Join(c.dir, "old.key"), c.tlsDir, 0)
	if err := os.WriteFile(stranger.keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(stranger)
	c.waitAPI(stranger)
	if r := c.join(stranger, c.agents[0]); r.code == 0 || !strings.Contains(r.stderr, "gossip key differs") {
		t.Errorf("join with the retired gossip key: %s", r)
	}

	for _, a := range c.agents[:3] {
		st := c.mustStatus(a)
		if st.DC != before.DC || st.Term != before.Term {
			t.Errorf("%s: DC %s in term %d after the rotation, was %s in term %d", a.name, st.DC, st.Term, before.DC, before.Term)
		}
	}
}

func readLog(t *testing.T, a *agent) string {
	t.Helper()
	return string(mustRead(t, a.logPath))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func serialIn(t *testing.T, path string) string {
	t.Helper()
	block, _ := pem.Decode(mustRead(t, path))
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.Text(16)
}

// TestSpecProgramsRefusedAtApply: the spec names programs, each node's own
// flags decide whether they may run there. An exec check from a directory
// only n1 allows, and a fence agent from a directory no node allows, are
// refused at apply, naming the nodes and the setting; nothing changes.
// Without them the spec applies.
func TestSpecProgramsRefusedAtApply(t *testing.T) {
	t.Parallel()
	checks := t.TempDir()
	if err := os.WriteFile(filepath.Join(checks, "check.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := startClusterExtra(t, blockPrograms, 3, "fake", map[string][]string{"n1": {"--exec-dir", checks, "--hook-dir", checks}})
	execCheck := squidServices + `    health_check:
      type: exec
      command: [` + filepath.Join(checks, "check.sh") + `]
      interval: 2s
      timeout: 1s
`
	r := c.apply(c.agents[1], writeFile(t, c.dir, "exec.yaml", execCheck))
	if r.code == 0 || !strings.Contains(r.stderr, "services[0].health_check.command[0]") ||
		!strings.Contains(r.stderr, "not allowed on n2, n3") || !strings.Contains(r.stderr, "this node allows no exec checks (the agent's --exec-dir DIR") {
		t.Errorf("an exec check only n1 allows: %s", r)
	}
	// A fork storm on every DC that inherits the spec: refused by the
	// interval floor.
	storm := squidServices + `    health_check:
      type: tcp
      interval: 1ms
      timeout: 1ms
`
	r = c.apply(c.agents[1], writeFile(t, c.dir, "storm.yaml", storm))
	if r.code == 0 || !strings.Contains(r.stderr, "1ms: want at least 100ms") {
		t.Errorf("a check every millisecond: %s", r)
	}
	fence := squidServices + `fencing:
  devices:
    - name: pdu
      agent: ` + filepath.Join(checks, "fence_pdu") + `
      hosts: [n1, n2, n3]
      action: "off"
      timeout: 20s
`
	r = c.apply(c.agents[0], writeFile(t, c.dir, "fence.yaml", fence))
	if r.code == 0 || !strings.Contains(r.stderr, "fencing.devices[0]") || !strings.Contains(r.stderr, "not allowed on n1, n2, n3") ||
		!strings.Contains(r.stderr, "is not in a directory this node allows for fence agents (--fence-agent-dir /usr/sbin)") {
		t.Errorf("a fence agent outside /usr/sbin: %s", r)
	}
	// Resources: an OCF agent no node has, and a command only n1's
	// --hook-dir allows.
	withResources := squidServices + `policy:
  takeover: fence
fencing:
  devices:
    - name: dummy
      agent: /usr/sbin/fence_dummy
      hosts: [n1, n2, n3]
resources:
  - name: nosuch
    agent: ocf:heartbeat:NoSuchAgent
  - name: app
    command: [` + filepath.Join(checks, "check.sh") + `]
`
	r = c.apply(c.agents[2], writeFile(t, c.dir, "resources.yaml", withResources))
	if r.code == 0 || !strings.Contains(r.stderr, "resources[0]") || !strings.Contains(r.stderr, "resource nosuch (ocf:heartbeat:NoSuchAgent)") ||
		!strings.Contains(r.stderr, "resources[1]: not allowed on n2, n3") || !strings.Contains(r.stderr, "allows no resource hooks (the agent's --hook-dir DIR") {
		t.Errorf("resources no node or only n1 allows: %s", r)
	}
	if err := c.sameSpecVersion(c.agents, 0); err != nil {
		t.Errorf("after refused applies: %v", err)
	}
	if r := c.apply(c.agents[0], writeFile(t, c.dir, "tcp.yaml", squidServices)); r.code != 0 {
		t.Errorf("the same spec without the programs: %s", r)
	}
}
