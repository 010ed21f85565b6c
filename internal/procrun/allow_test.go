package procrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAllow: a program runs only from an allowed directory, under the
// allowed name, when it and its directory are safe from other users.
func TestAllow(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "fence_x")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := Allow{What: "fence agents", Flag: "--fence-agent-dir", Dirs: []string{dir}, Prefix: "fence_"}
	if err := a.Check(prog); err != nil {
		t.Fatalf("an allowed program: %v", err)
	}
	elsewhere := t.TempDir()
	outside := filepath.Join(elsewhere, "fence_y")
	if err := os.WriteFile(outside, []byte("#!/bin/sh\n"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outside, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "fence_link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"fence_x", "not a clean absolute path"},
		{dir + "/../" + filepath.Base(dir) + "/fence_x", "not a clean absolute path"},
		{filepath.Join(dir, "sh"), "must be named fence_*"},
		{outside, "is not in a directory this node allows for fence agents (--fence-agent-dir " + dir + ")"},
		{link, "is writable by group or others (mode 0777)"}, // the link's target
		{filepath.Join(dir, "fence_missing"), "no such file"},
	} {
		if err := a.Check(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%s): %v, want %q", tc.path, err, tc.want)
		}
	}
	if err := (Allow{What: "exec checks", Flag: "--exec-dir"}).Check(prog); err == nil || !strings.Contains(err.Error(), "this node allows no exec checks (the agent's --exec-dir DIR") {
		t.Errorf("no directories: %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(prog); err == nil || !strings.Contains(err.Error(), "is writable by group or others (mode 0777)") {
		t.Errorf("a directory anyone may write: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(prog, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := a.Check(prog); err == nil || !strings.Contains(err.Error(), "is owned by uid 65534, neither root nor the agent's user") {
			t.Errorf("a program nobody owns: %v", err)
		}
	}
	if err := CheckDirs("--exec-dir", []string{"relative"}); err == nil || !strings.Contains(err.Error(), "clean absolute path") {
		t.Errorf("CheckDirs(relative): %v", err)
	}
	if err := CheckDirs("--exec-dir", []string{prog}); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("CheckDirs(file): %v", err)
	}
}
