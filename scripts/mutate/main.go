// Command mutate breaks the code on purpose and reports which breakages
// the tests fail to notice.
//
// Each mutation in mutations.yaml (at the repository's top) names a file, a
// piece of its text and what to put in its place, the invariant it breaks,
// and the packages whose tests must notice. mutate copies the working tree
// to a scratch directory once, then for each mutation writes the changed
// file, runs `go test` on those packages, and puts the file back. A
// mutation is
//
//	killed      a test failed by its assertion;
//	timeout     only a test timing out noticed (a weak kill: a test should
//	            fail by what it checks, not by waiting forever);
//	SURVIVED    every test passed: nothing guards what the mutation broke;
//	stale       its text is no longer in the file (update the list);
//	broken      the mutated code does not build (fix the mutation).
//
// Usage (from the repository's top; `make mutate` runs it):
//
//	go run ./scripts/mutate [-list FILE] [-run REGEXP] [-v]
//
// It exits 1 when any mutation survived, was killed only by a timeout, is
// stale or broken.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// mutation is one entry of the list.
type mutation struct {
	Name   string `yaml:"name"`
	Guards string `yaml:"guards"`
	File   string `yaml:"file"`
	Find   string `yaml:"find"`
	// Replace takes the place of Find; every occurrence when All is set,
	// otherwise Find must occur exactly once.
	Replace  string   `yaml:"replace"`
	All      bool     `yaml:"all"`
	Packages []string `yaml:"packages"`
	// Run limits the tests run (go test -run); empty runs them all.
	Run string `yaml:"run"`
	// Tags are build tags for go test (e.g. "lab" is never useful here:
	// the lab's tests need the VM).
	Tags string `yaml:"tags"`
}

type outcome string

const (
	killed   outcome = "killed"
	timedOut outcome = "timeout"
	survived outcome = "SURVIVED"
	stale    outcome = "stale"
	broken   outcome = "broken"
)

// testTimeout is go test's own -timeout per mutation: a test that hangs
// under a mutation panics with its name and counts as a weak kill.
const testTimeout = 90 * time.Second

func main() {
	list := flag.String("list", "mutations.yaml", "the list of mutations")
	only := flag.String("run", "", "run only the mutations whose name matches this regular expression")
	verbose := flag.Bool("v", false, "print the test output of every mutation, not only of the surprising ones")
	flag.Parse()
	if err := run(*list, *only, *verbose, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func run(listFile, only string, verbose bool, out io.Writer) error {
	ms, err := load(listFile)
	if err != nil {
		return err
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		ms = slices.DeleteFunc(ms, func(m mutation) bool { return !re.MatchString(m.Name) })
	}
	if len(ms) == 0 {
		return errors.New("no mutation to run")
	}
	scratch, err := os.MkdirTemp("", "raftlb-mutate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	if err := copyTree(".", scratch); err != nil {
		return fmt.Errorf("copy the working tree: %w", err)
	}
	counts := map[outcome]int{}
	var bad []string
	for i, m := range ms {
		res, detail, log := try(scratch, m)
		counts[res]++
		fmt.Fprintf(out, "%2d/%d %-9s %-38s %s  %s\n", i+1, len(ms), res, m.Name, m.Guards, detail)
		if res != killed {
			bad = append(bad, m.Name)
		}
		if verbose || (res != killed && res != stale) {
			fmt.Fprintln(out, indent(tailLines(log, 30)))
		}
	}
	fmt.Fprintf(out, "\n%d mutations: %d killed, %d survived, %d killed only by a timeout, %d stale, %d broken\n",
		len(ms), counts[killed], counts[survived], counts[timedOut], counts[stale], counts[broken])
	if len(bad) > 0 {
		return fmt.Errorf("not killed by an assertion: %s", strings.Join(bad, ", "))
	}
	return nil
}

func load(file string) ([]mutation, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var ms []mutation
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&ms); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	seen := map[string]bool{}
	for i, m := range ms {
		switch {
		case m.Name == "" || m.File == "" || m.Find == "" || len(m.Packages) == 0 || m.Guards == "":
			return nil, fmt.Errorf("%s: entry %d (%q) needs name, guards, file, find and packages", file, i+1, m.Name)
		case m.Find == m.Replace:
			return nil, fmt.Errorf("%s: %s: find and replace are the same", file, m.Name)
		case seen[m.Name]:
			return nil, fmt.Errorf("%s: %s is listed twice", file, m.Name)
		}
		seen[m.Name] = true
	}
	return ms, nil
}

// try applies one mutation in the scratch tree, runs its packages' tests
// and restores the file.
func try(scratch string, m mutation) (outcome, string, string) {
	path := filepath.Join(scratch, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		return stale, err.Error(), ""
	}
	n := bytes.Count(orig, []byte(m.Find))
	switch {
	case n == 0:
		return stale, "its text is not in " + m.File, ""
	case n > 1 && !m.All:
		return stale, fmt.Sprintf("its text occurs %d times in %s (set all: true, or make it unique)", n, m.File), ""
	}
	mutated := bytes.ReplaceAll(orig, []byte(m.Find), []byte(m.Replace))
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		return broken, err.Error(), ""
	}
	defer os.WriteFile(path, orig, 0o644)

	args := []string{"test", "-count=1", "-timeout", testTimeout.String()}
	if m.Tags != "" {
		args = append(args, "-tags", m.Tags)
	}
	if m.Run != "" {
		args = append(args, "-run", m.Run)
	}
	args = append(args, m.Packages...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = scratch
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	output, err := cmd.CombinedOutput()
	log := string(output)
	took := time.Since(start).Round(100 * time.Millisecond)
	switch {
	case err == nil:
		return survived, "every test passed (" + took.String() + ")", log
	case strings.Contains(log, "[build failed]") || strings.Contains(log, "[setup failed]"):
		return broken, "the mutated code does not build", log
	case strings.Contains(log, "panic: test timed out") || onlyWaited(log):
		return timedOut, "only a timeout noticed: " + failed(log), log
	default:
		return killed, "by " + failed(log) + " (" + took.String() + ")", log
	}
}

// waitFailure is how the suite's wait helpers report a condition that never
// came true.
var waitFailure = regexp.MustCompile(`(?i)timed out waiting|waiting for .*:|did not .* within`)

// testMessage is a failure message of testing: "    file_test.go:12: ...".
var testMessage = regexp.MustCompile(`(?m)^\s+\S+_test\.go:\d+: (.*)$`)

// onlyWaited reports whether every failure message is a wait that ran out:
// the mutation was noticed only because something never happened, not by
// a check of what did.
func onlyWaited(log string) bool {
	msgs := testMessage.FindAllStringSubmatch(log, -1)
	if len(msgs) == 0 {
		return false
	}
	for _, m := range msgs {
		if !waitFailure.MatchString(m[1]) {
			return false
		}
	}
	return true
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// failed names the tests that failed, top-level ones only.
func failed(log string) string {
	var names []string
	for _, m := range failLine.FindAllStringSubmatch(log, -1) {
		name := m[1]
		if strings.Contains(name, "/") || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return "a failing package"
	}
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

// copyTree copies the files git knows of (tracked, or untracked and not
// ignored), so a mutation run sees the working tree as it is, edits
// included, without the lab's cache.
func copyTree(src, dst string) error {
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f == "" {
			continue
		}
		info, err := os.Lstat(filepath.Join(src, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func indent(s string) string {
	return "      | " + strings.ReplaceAll(s, "\n", "\n      | ")
}
