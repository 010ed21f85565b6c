//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// raftlbBin is the raftlb binary built by TestMain for this test run. It is
// the package's only global: building once and sharing the result is what
// keeps the tests fast, and it never changes after TestMain sets it.
var raftlbBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the binary, runs the tests and removes the binary again;
// it is separate from TestMain so the deferred removal runs before os.Exit.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "raftlb-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildRaftlb(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	raftlbBin = bin
	return m.Run()
}

// buildRaftlb builds ./cmd/raftlb into dir. go test runs a test binary in
// its package directory, so the module root is the parent directory; the
// go command is on PATH because go test puts GOROOT/bin there.
func buildRaftlb(dir string) (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module root %s has no go.mod (run the tests with go test from the repository): %w", root, err)
	}
	bin := filepath.Join(dir, "raftlb")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/raftlb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/raftlb in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}
