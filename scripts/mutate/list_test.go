package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestNoMutationIsStale: every mutation's text is in its file (once,
// unless all is set) and names packages, so a change to a guarded path
// that moves the text fails make test instead of silently retiring the
// mutation; names are unique.
func TestNoMutationIsStale(t *testing.T) {
	root := filepath.Join("..", "..")
	ms, err := load(filepath.Join(root, "mutations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Name] {
			t.Errorf("mutation %s is listed twice", m.Name)
		}
		seen[m.Name] = true
		src, err := os.ReadFile(filepath.Join(root, m.File))
		if err != nil {
			t.Errorf("%s: %v", m.Name, err)
			continue
		}
		switch n := bytes.Count(src, []byte(m.Find)); {
		case n == 0:
			t.Errorf("%s is stale: its text is not in %s (update mutations.yaml)", m.Name, m.File)
		case n > 1 && !m.All:
			t.Errorf("%s: its text occurs %d times in %s", m.Name, n, m.File)
		}
		if len(m.Packages) == 0 || m.Guards == "" {
			t.Errorf("%s names no packages or no guarded promise", m.Name)
		}
	}
}
