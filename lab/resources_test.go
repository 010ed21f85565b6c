//go:build lab

package lab_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// The resources scenario's places: where OCF agents keep their state
// (each node's own tmpfs, mounted by startAgent in the agent's mount
// namespace), the Filesystem resource's mount point, and the directory
// the nodes allow resource hooks from.
const (
	ocfState   = "/run/resource-agents"
	dataMount  = "/run/raftlb-lab-data"
	labHookDir = "/run/raftlb-lab-hooks"
)

// resourcesSpec is fenceSpec with two resources that move with the DC:
// Debian's ocf:heartbeat:Dummy and a tmpfs mounted by
// ocf:heartbeat:Filesystem; hook adds a third, a command that fails to
// start on a node whose fail-start-NODE file exists.
func resourcesSpec(agent string, hook bool) string {
	s := fenceSpec(agent, false) + `resources:
  - name: dummy
    agent: ocf:heartbeat:Dummy
    monitor_interval: 5s
  - name: data
    agent: ocf:heartbeat:Filesystem
    params: {device: raftlb-data, directory: ` + dataMount + `, fstype: tmpfs}
    monitor_interval: 5s
`
	if hook {
		s += "  - name: app\n    command: [" + filepath.Join(labHookDir, "app") + "]\n"
	}
	return s
}

// active reads, from node n's kernel (its agent's mount namespace), which
// of the resources run there: the tmpfs mounted, Dummy's state file
// present. A node whose agent is not running has none (its namespace,
// with its mounts, is gone, as with the power).
func (c *rcluster) active(n string) (mounted, dummy bool) {
	c.agentsMu.Lock()
	p := c.agents[n]
	c.agentsMu.Unlock()
	select {
	case <-p.Done():
		return false, false
	default:
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", p.Pid()))
	if err != nil {
		return false, false // it has just exited
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == dataMount && f[2] == "tmpfs" {
			mounted = true
		}
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d/root%s/Dummy-dummy.state", p.Pid(), ocfState))
	return mounted, err == nil
}

// resourceJudge samples every node's resources every 20 ms and counts the
// samples in which two nodes ran any of them.
type resourceJudge struct {
	mu     sync.Mutex
	two    int
	twoAt  []string
	where  map[string]bool // nodes seen running them since the last reset
	stop   chan struct{}
	done   chan struct{}
	sample int
}

func (c *rcluster) judgeResources() *resourceJudge {
	j := &resourceJudge{where: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(j.done)
		for {
			var on []string
			for _, n := range lab.Nodes() {
				if m, d := c.active(n); m || d {
					on = append(on, n)
				}
			}
			j.mu.Lock()
			j.sample++
			for _, n := range on {
				j.where[n] = true
			}
			if len(on) > 1 {
				j.two++
				j.twoAt = append(j.twoAt, time.Now().Format("15:04:05.000")+" "+strings.Join(on, "+"))
			}
			j.mu.Unlock()
			select {
			case <-j.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return j
}

func (j *resourceJudge) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.two
}

func (j *resourceJudge) end() (two int, at []string) {
	close(j.stop)
	<-j.done
	return j.two, j.twoAt
}

// waitResourcesOn waits until node n (and no other) runs both resources,
// judged by the kernel, and raftlb status on n says they are started.
func (c *rcluster) waitResourcesOn(n string, timeout time.Duration) time.Duration {
	c.t.Helper()
	t0 := time.Now()
	c.eventually("the resources on "+n+" only", timeout, func() (bool, error) {
		for _, o := range lab.Nodes() {
			m, d := c.active(o)
			if (o == n) != (m && d) || (o != n && (m || d)) {
				return false, nil
			}
		}
		return true, nil
	})
	took := time.Since(t0)
	// What the agent says agrees, once its last start is done.
	c.eventually(n+"'s status to show every resource started", timeout, func() (bool, error) {
		out, err := statusExit(c.l.Exec("", c.l.Bin("raftlb"), "status", "--api", "unix://"+c.sock(n), "--json"))
		if err != nil {
			return false, err
		}
		var st struct {
			Resources []struct{ Name, State string } `json:"resources"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err
		}
		for _, r := range st.Resources {
			if r.State != "started" {
				return false, nil
			}
		}
		return len(st.Resources) > 0, nil
	})
	return took
}

// TestRaftlbResources is the resources scenario of the observability
// issue: Debian's OCF Dummy and a tmpfs mounted by OCF Filesystem move
// with the DC on a graceful stop and on a cable pull (the cut-off DC
// fenced by the majority before anything starts elsewhere), are never
// running on two nodes at once (sampled every 20 ms from each node's
// kernel: its mount table and Dummy's state file), and a start that fails
// hands the DC role to another node, which starts them all.
func TestRaftlbResources(t *testing.T) {
	if err := os.MkdirAll(labHookDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(labHookDir) })
	// The operator's own hook: fails to start where told to, keeps its
	// state in the node's OCF state directory otherwise.
	hook := `#!/bin/sh
s=` + ocfState + `/app.running
case "$1" in
start) [ -e ` + labHookDir + `/fail-start-$RAFTLB_NODE ] && { echo "app: refusing to start on $RAFTLB_NODE" >&2; exit 1; }; touch $s ;;
stop) rm -f $s ;;
monitor) [ -e $s ] || exit 7 ;;
esac
`
	if err := os.WriteFile(filepath.Join(labHookDir, "app"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	extra := map[string][]string{}
	for _, n := range lab.Nodes() {
		extra[n] = []string{"--hook-dir", labHookDir}
	}
	c := newRaftlbClusterWith(t, extra)
	agent := filepath.Join(c.dir, "fence_lab")
	if err := os.Symlink(c.l.Bin("raftlb-lab"), agent); err != nil {
		t.Fatal(err)
	}
	j := c.judgeResources()
	c.apply(resourcesSpec(agent, false))
	dc := c.waitHealthy(lab.Nodes())
	c.waitResourcesOn(dc, 60*time.Second)
	t.Logf("resources started on the DC %s", dc)

	// 1. Graceful stop: the DC stops them before it records its release;
	// the successor starts them after its claim.
	t0 := time.Now()
	if err := c.agents[dc].Stop(60 * time.Second); err != nil {
		t.Fatalf("graceful stop of %s: %v", dc, err)
	}
	next, _ := c.waitVIPOnInterface(others(dc), 30*time.Second)
	moved := c.waitResourcesOn(next, 60*time.Second)
	figure("lab_resources_graceful_stop_moved_after", ms(time.Since(t0)), "ms")
	t.Logf("graceful stop of %s: resources running on %s %s after the stop began (%s after the VIP)", dc, next, time.Since(t0), moved)
	c.startAgent(dc)
	dc = c.waitHealthy(lab.Nodes())
	c.waitResourcesOn(dc, 60*time.Second)

	// 2. Cable pull: the majority fences the cut-off DC (its processes
	// die, its namespace and mounts with them), then claims, then starts.
	t0 = time.Now()
	undo := c.isolate(dc)
	rest := others(dc)
	next, _ = c.waitVIPOnInterface(rest, 60*time.Second)
	c.waitResourcesOn(next, 60*time.Second)
	figure("lab_resources_cable_pull_moved_after", ms(time.Since(t0)), "ms")
	if ev, ok := fenced(c.fenceHistory(next), dc); !ok || ev.Result != "success" {
		t.Errorf("the resources moved from %s to %s without a successful fence of %s: %+v", dc, next, dc, ev)
	}
	t.Logf("cable pull of %s: fenced, resources running on %s after %s", dc, next, time.Since(t0))
	undo()
	c.l.RunStdin("", "action=on\nplug="+dc+"\n", agent)
	c.startServe(dc)
	c.startAgent(dc)
	dc = c.waitHealthy(lab.Nodes())
	c.waitResourcesOn(dc, 60*time.Second)

	// 3. A start that fails on the DC: the spec gains the hook, which
	// refuses to start there; the DC stops what it started and hands the
	// role on; the next DC starts all three.
	if err := os.WriteFile(filepath.Join(labHookDir, "fail-start-"+dc), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failing := dc
	t0 = time.Now()
	c.apply(resourcesSpec(agent, true))
	c.eventually("the DC role to leave "+failing, 60*time.Second, func() (bool, error) {
		d := c.agreedDC(others(failing))
		return d != "" && d != failing, nil
	})
	next = c.agreedDC(others(failing))
	c.waitResourcesOn(next, 60*time.Second)
	c.eventually("the hook running on "+next, 30*time.Second, func() (bool, error) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/root%s/app.running", c.agents[next].Pid(), ocfState))
		return err == nil, nil
	})
	figure("lab_resources_failed_start_moved_after", ms(time.Since(t0)), "ms")
	if b, err := os.ReadFile(c.agents[failing].Log); err != nil || !strings.Contains(string(b), "a resource failed to start here") {
		t.Errorf("%s's log does not say the start failed and the role moved (%v)", failing, err)
	}
	t.Logf("failing start on %s: the DC role moved to %s, which runs all three, after %s", failing, next, time.Since(t0))

	two, at := j.end()
	figure("lab_resources_two_nodes_samples", float64(two), "count")
	if two != 0 {
		t.Errorf("resources ran on two nodes at once in %d samples: %v", two, at)
	}

	// The judge can fail: the data tmpfs mounted by hand in a member's
	// namespace, beside the DC's, is counted.
	j = c.judgeResources()
	member := others(next)[0]
	pid := strconv.Itoa(c.agents[member].Pid())
	// -r -w: the agent's root (the lab runs chrooted into the host's
	// tree; entering a mount namespace alone would land at the VM's).
	c.l.Run("", "nsenter", "-t", pid, "-m", "-r", "-w", "sh", "-c", "mkdir -p "+dataMount+" && mount -t tmpfs judge-test "+dataMount)
	if m, _ := c.active(member); !m {
		b, _ := os.ReadFile("/proc/" + pid + "/mounts")
		t.Errorf("the hand-made tmpfs is not in %s's mount table:\n%s", member, b)
	}
	c.eventually("the judge to see two nodes", 10*time.Second, func() (bool, error) { return j.count() > 0, nil })
	c.l.Run("", "nsenter", "-t", pid, "-m", "-r", "-w", "umount", dataMount)
	if two, at := j.end(); two == 0 || !strings.Contains(strings.Join(at, " "), member) {
		t.Errorf("the judge missed a tmpfs mounted by hand on %s: %d samples %v", member, two, at)
	}
}
