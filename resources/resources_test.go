package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

const dummy = "/usr/lib/ocf/resource.d/heartbeat/Dummy"

func needOCF(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(dummy); err != nil {
		t.Fatalf("Debian's resource-agents is needed (scripts/test-prereqs.sh installs it): %v", err)
	}
}

func res(name string, mod ...func(*spec.Resource)) spec.Resource {
	r := spec.Resource{Name: name, StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, MonitorTimeout: 10 * time.Second}
	for _, m := range mod {
		m(&r)
	}
	return r
}

// TestOCFDummy runs Debian's ocf:heartbeat:Dummy unchanged: monitor says
// not running (7), start creates its state file, monitor says running,
// stop removes it, and a second stop still succeeds.
func TestOCFDummy(t *testing.T) {
	needOCF(t)
	state := filepath.Join(t.TempDir(), "dummy.state")
	r := res("d", func(r *spec.Resource) { r.Agent = "ocf:heartbeat:Dummy"; r.Params = map[string]string{"state": state} })
	x := NewRunner(Config{Node: "n1"})
	ctx := context.Background()
	if m := x.Run(ctx, r, Monitor); m.Err == nil || m.Code != OCFNotRunning {
		t.Fatalf("monitor before start: %+v", m)
	}
	if s := x.Run(ctx, r, Start); s.Err != nil {
		t.Fatalf("start: %+v", s)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the agent's state file after start: %v", err)
	}
	if m := x.Run(ctx, r, Monitor); m.Err != nil {
		t.Fatalf("monitor after start: %+v", m)
	}
	for i := range 2 {
		if s := x.Run(ctx, r, Stop); s.Err != nil {
			t.Fatalf("stop %d: %+v", i+1, s)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file after stop: %v", err)
	}
}

// hookDir is a root-owned directory holding a hook script that logs each
// call ("NAME ACTION") to log and keeps NAME's state in the directory;
// a file fail-NAME-ACTION makes that action exit 1, hang-NAME-ACTION makes
// it hang (with a child in its process group).
func hookDir(t *testing.T) (dir, hook, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "calls")
	hook = filepath.Join(dir, "hook")
	script := `#!/bin/sh
d=` + dir + `
echo "$1 $2 $RAFTLB_NODE $RAFTLB_RESOURCE" >> $d/calls
[ -e $d/fail-$1-$2 ] && { echo "told to fail" >&2; exit 1; }
if [ -e $d/hang-$1-$2 ]; then sleep 600 & echo $! > $d/child; wait; fi
case $2 in
start) touch $d/run-$1 ;;
stop) rm -f $d/run-$1 ;;
monitor) [ -e $d/run-$1 ] || exit 7 ;;
esac
`
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, hook, log
}

func calls(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return strings.Join(out, ", ")
}

func cmd(hook string) func(*spec.Resource) {
	return func(r *spec.Resource) { r.Command = []string{hook, r.Name} }
}

// TestGroupStartsInOrderAndStopsInReverse, and a start that fails stops
// the failed resource and every one before it, in reverse.
func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	dir, hook, log := hookDir(t)
	x := NewRunner(Config{Node: "n1", HookDirs: []string{dir}})
	var notices []string
	g := newGroup(t, x, GroupConfig{Notice: func(name, state string, _ error) { notices = append(notices, name+"="+state) }})
	rs := []spec.Resource{res("a", cmd(hook)), res("b", cmd(hook)), res("c", cmd(hook))}
	ok := func() error { return nil }
	if err := g.Start(context.Background(), rs, ok); err != nil {
		t.Fatal(err)
	}
	if !g.Matches(rs) || g.Clean() {
		t.Fatalf("started %v, clean %v", g.Started(), g.Clean())
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(t, log), "a start, b start, c start, c stop, b stop, a stop"; got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "a start n1 a") {
		t.Errorf("the hook's environment: %s", b)
	}
	if len(g.Started()) != 0 || !g.Clean() {
		t.Errorf("still started: %v (clean %v)", g.Started(), g.Clean())
	}

	os.Remove(log)
	if err := os.WriteFile(filepath.Join(dir, "fail-b-start"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := g.Start(context.Background(), rs, ok)
	if err == nil || !strings.Contains(err.Error(), "resource b") || !strings.Contains(err.Error(), "told to fail") {
		t.Fatalf("a failing start: %v", err)
	}
	if got, want := calls(t, log), "a start, b start, b stop, a stop"; got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	if !g.Clean() || len(g.Started()) != 0 {
		t.Errorf("after the failed start: clean %v, started %v", g.Clean(), g.Started())
	}
	st := g.Status(rs)
	if st[1].State != StateStopped || st[1].Failures != 1 || !strings.Contains(st[1].LastError, "told to fail") {
		t.Errorf("b's status %+v", st[1])
	}
	if !strings.Contains(strings.Join(notices, " "), "b=failed") {
		t.Errorf("notices %v", notices)
	}
}

// TestGroupStopFailureIsRemembered: a stop that fails leaves the node
// not Clean, the others are stopped all the same, and StopAll tries it
// again.
func TestGroupStopFailureIsRemembered(t *testing.T) {
	dir, hook, log := hookDir(t)
	g := newGroup(t, NewRunner(Config{HookDirs: []string{dir}}), GroupConfig{})
	rs := []spec.Resource{res("a", cmd(hook)), res("b", cmd(hook))}
	if err := g.Start(context.Background(), rs, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	fail := filepath.Join(dir, "fail-b-stop")
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(); err == nil {
		t.Fatal("a failing stop reported no error")
	}
	if g.Clean() {
		t.Fatal("a node whose stop failed is clean")
	}
	if got := g.Status(rs)[1].State; got != StateStopFailed {
		t.Errorf("b is %s, want %s", got, StateStopFailed)
	}
	os.Remove(fail)
	if err := g.StopAll(nil); err != nil || !g.Clean() {
		t.Fatalf("StopAll after the fault: %v, clean %v", err, g.Clean())
	}
	if got, want := calls(t, log), "a start, b start, b stop, a stop, b stop"; got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// TestMonitorFindsAStoppedResource: monitor runs once its interval has
// passed and reports a resource that stopped behind raftlb's back.
func TestMonitorFindsAStoppedResource(t *testing.T) {
	dir, hook, _ := hookDir(t)
	g := newGroup(t, NewRunner(Config{HookDirs: []string{dir}}), GroupConfig{})
	r := res("a", cmd(hook), func(r *spec.Resource) { r.MonitorInterval = time.Millisecond })
	if err := g.Start(context.Background(), []spec.Resource{r}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The interval passes; the monitor runs when it is due.
	testkit.WaitFor(t, "a due monitor", func() bool {
		if _, err := g.MonitorDue(context.Background()); err != nil {
			t.Fatalf("monitor of a running resource: %v", err)
		}
		return !g.Status([]spec.Resource{r})[0].Monitored.IsZero()
	})
	os.Remove(filepath.Join(dir, "run-a"))
	var failed spec.Resource
	var err error
	testkit.WaitFor(t, "a due monitor to find it stopped", func() bool {
		failed, err = g.MonitorDue(context.Background())
		return err != nil
	})
	if err == nil || failed.Name != "a" || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("monitor of a stopped resource: %v %v", failed.Name, err)
	}
}

// TestActionTimeoutKillsTheGroup: a start that hangs is killed at its
// timeout with its child, and is a failure.
func TestActionTimeoutKillsTheGroup(t *testing.T) {
	dir, hook, _ := hookDir(t)
	if err := os.WriteFile(filepath.Join(dir, "hang-a-start"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := res("a", cmd(hook), func(r *spec.Resource) { r.StartTimeout = time.Second })
	got := NewRunner(Config{HookDirs: []string{dir}}).Run(context.Background(), r, Start)
	if !got.TimedOut || got.Err == nil || !strings.Contains(got.Err.Error(), "no answer within 1s") {
		t.Fatalf("a hanging start: %+v", got)
	}
	testkit.WaitGone(t, filepath.Join(dir, "child"), "the hook's child")
}

// TestProgramsOnlyFromAllowedPlaces: a command outside the hook
// directories, a missing OCF agent, and any command when no hook
// directory is allowed, are refused before anything runs.
func TestProgramsOnlyFromAllowedPlaces(t *testing.T) {
	needOCF(t)
	dir, hook, log := hookDir(t)
	other := t.TempDir()
	// An OCF root whose provider directory anyone may write.
	loose := t.TempDir()
	prov := filepath.Join(loose, "resource.d", "heartbeat")
	if err := os.MkdirAll(prov, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prov, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dummy, filepath.Join(prov, "Dummy")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		x    *Runner
		r    spec.Resource
		want string
	}{
		{"no hook dir", NewRunner(Config{}), res("a", cmd(hook)), "allows no resource hooks"},
		{"another dir", NewRunner(Config{HookDirs: []string{other}}), res("a", cmd(hook)), "not in a directory this node allows"},
		{"missing agent", NewRunner(Config{}), res("a", func(r *spec.Resource) { r.Agent = "ocf:heartbeat:NoSuchAgent" }), "no such file"},
		{"OCF root others may write", NewRunner(Config{OCFRoot: loose}), res("a", func(r *spec.Resource) { r.Agent = "ocf:heartbeat:Dummy" }), "writable by group or others"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.x.Check(tt.r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check: %v, want %q", err, tt.want)
			}
			if got := tt.x.Run(context.Background(), tt.r, Start); got.Err == nil {
				t.Fatal("ran a refused program")
			}
		})
	}
	if got := calls(t, log); got != "" {
		t.Errorf("a refused hook ran: %s", got)
	}
	if err := NewRunner(Config{HookDirs: []string{dir}}).Check(res("a", cmd(hook))); err != nil {
		t.Errorf("the allowed hook: %v", err)
	}
	if err := NewRunner(Config{}).Check(res("a", func(r *spec.Resource) { r.Agent = "ocf:heartbeat:Dummy" })); err != nil {
		t.Errorf("Debian's Dummy: %v", err)
	}
}

func newGroup(t *testing.T, x *Runner, cfg GroupConfig) *Group {
	t.Helper()
	g, err := NewGroup(x, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestStateFileSurvivesARestart: what a run started and did not stop is
// in the state file; the next run is not Clean until it stopped it, even
// with no spec to tell it (StopAll(nil)).
func TestStateFileSurvivesARestart(t *testing.T) {
	dir, hook, log := hookDir(t)
	x := NewRunner(Config{HookDirs: []string{dir}})
	state := filepath.Join(dir, "resources.json")
	g := newGroup(t, x, GroupConfig{StateFile: state})
	if !g.Clean() {
		t.Fatal("a group without a state file is not clean")
	}
	if err := g.Start(context.Background(), []spec.Resource{res("a", cmd(hook)), res("b", cmd(hook))}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The agent dies here; the next run reads the file.
	g2 := newGroup(t, x, GroupConfig{StateFile: state})
	if g2.Clean() {
		t.Fatal("a restarted node with resources left running is clean")
	}
	if err := g2.StopAll(nil); err != nil || !g2.Clean() {
		t.Fatalf("StopAll: %v, clean %v", err, g2.Clean())
	}
	if got := calls(t, log); !strings.HasPrefix(got, "a start, b start, ") || strings.Count(got, "stop") != 2 {
		t.Errorf("calls %q", got)
	}
	if g3 := newGroup(t, x, GroupConfig{StateFile: state}); !g3.Clean() {
		t.Error("after the stops the state file still lists resources")
	}
	if err := os.WriteFile(state, []byte(`{"resources":[{"name":"x","command":["rel/ative"],"stop_timeout":1000000000}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewGroup(x, GroupConfig{StateFile: state}); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("a bad state file: %v", err)
	}
}

// FuzzStateFile: the state file's reader refuses what it cannot use and
// keeps what it reads.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(`{"resources":[{"name":"d","agent":"ocf:heartbeat:Dummy","start_timeout":20000000000,"stop_timeout":20000000000,"monitor_timeout":20000000000,"monitor_interval":0}]}`))
	f.Add([]byte(`{"resources":[{"name":"a","command":["/etc/raftlb/hooks/a","x"],"stop_timeout":1000000000}]}`))
	f.Add([]byte(`{"resources":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := parseState(b, "resources.json")
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Name == "" || r.StopTimeout < spec.MinResourceTimeout {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}
