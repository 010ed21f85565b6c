package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitVerifies: deploy/raftlb.service passes systemd-analyze verify,
// with its programs where this test finds them.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze here")
	}
	unit, err := os.ReadFile("../../deploy/raftlb.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable() // any executable stands in for the agent
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/raftlb", self)
	if _, err := os.Stat("/sbin/modprobe"); err != nil {
		text = strings.ReplaceAll(text, "/sbin/modprobe", "/bin/true")
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	// The resources drop-in (deploy/raftlb-resources.conf) is read as a
	// second [Service] section, as systemd merges a drop-in.
	dropIn, err := os.ReadFile("../../deploy/raftlb-resources.conf")
	if err != nil {
		t.Fatal(err)
	}
	for name, unit := range map[string]string{"raftlb.service": text, "with-resources/raftlb.service": text + "\n" + string(dropIn)} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}
