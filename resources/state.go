package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/raftlb/raftlb/spec"
)

// The state file (resources.json in the agent's data directory) lists
// what may run on this node: every resource started and not stopped
// since, and every one whose stop failed. A run that starts after a crash
// stops them before it says it let go, even when its replicated spec is
// not caught up yet.

type stateFile struct {
	Resources []spec.Resource `json:"resources"`
}

// parseState reads the state file's content.
func parseState(b []byte, path string) ([]spec.Resource, error) {
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("resource state file %s: %w", path, err)
	}
	for i, r := range f.Resources {
		_, _, ocf := r.OCF()
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("resource state file %s: entry %d has no name", path, i)
		case ocf == (len(r.Command) > 0):
			return nil, fmt.Errorf("resource state file %s: %s: want an OCF agent or a command", path, r.Name)
		case !ocf && !filepath.IsAbs(r.Command[0]):
			return nil, fmt.Errorf("resource state file %s: %s: command %q is not an absolute path", path, r.Name, r.Command[0])
		case r.StopTimeout < spec.MinResourceTimeout || r.StopTimeout > spec.MaxResourceTimeout:
			return nil, fmt.Errorf("resource state file %s: %s: stop timeout %s out of range", path, r.Name, r.StopTimeout)
		}
	}
	return f.Resources, nil
}

// load reads what the last run may have left running; a missing file is
// nothing.
func (g *Group) load() error {
	if g.file == "" {
		return nil
	}
	b, err := os.ReadFile(g.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resource state file: %w", err)
	}
	rs, err := parseState(b, g.file)
	if err != nil {
		return err
	}
	for _, r := range rs {
		g.unstopped[r.Name] = r
	}
	return nil
}

// saveLocked writes the state file; the caller holds g.mu.
func (g *Group) saveLocked() {
	if g.file == "" {
		return
	}
	all := slices.Clone(g.started)
	for _, r := range g.unstopped {
		if !slices.ContainsFunc(all, func(x spec.Resource) bool { return x.Name == r.Name }) {
			all = append(all, r)
		}
	}
	b, err := json.Marshal(stateFile{Resources: all})
	if err == nil {
		tmp := g.file + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, g.file)
		}
	}
	if err != nil {
		g.logger.Error("writing the resource state file failed: a crash now could leave a resource this node would not stop at its next start", "file", g.file, "err", err)
	}
}
