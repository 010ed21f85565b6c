//go:build linux

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// squidServices is the design's squid proxy on a documentation address.
// The agents run with --dataplane none, so nothing is configured on the
// machine.
const squidServices = `
vips:
  - address: 192.0.2.100
    interface: lo
services:
  - name: squid
    vip: 192.0.2.100
    port: 3128
    scheduler: rr
    persistence: 20s
    real_servers: all-nodes
`

// squidServicesWLC differs from squidServices only in the scheduler: a
// second, distinct spec.
var squidServicesWLC = strings.Replace(squidServices, "scheduler: rr", "scheduler: wlc", 1)

// badValues has three entries the validator must name: an IP address that
// is not one, port 0 and an unknown scheduler.
const badValues = `
vips:
  - address: 192.0.2.100
  - address: 192.0.2.300
services:
  - name: squid
    vip: 192.0.2.100
    port: 0
    scheduler: roundrobin
`

func TestStatusAgreesOnEveryNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockStatus, 3)

	// startCluster waited for agreement; read every node once more and
	// check the whole view, not only what agreement needs.
	dc, err := c.agreed(c.agents, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.agents {
		st := c.mustStatus(a)
		if st.Node != a.name {
			t.Errorf("%s: status is from node %q", a.name, st.Node)
		}
		if st.DC != dc || !st.Quorum || st.Stale || st.Warning != "" {
			t.Errorf("%s: dc %q quorum %v stale %v warning %q, want dc %q with quorum and no warning", a.name, st.DC, st.Quorum, st.Stale, st.Warning, dc)
		}
		if len(st.Nodes) != 3 {
			t.Errorf("%s lists %d nodes, want 3: %+v", a.name, len(st.Nodes), st.Nodes)
		}
		for _, b := range c.agents {
			status, role, listed := st.node(b.name)
			wantRole := "member"
			if b.name == dc {
				wantRole = "DC"
			}
			if !listed || status != "online" || role != wantRole {
				t.Errorf("%s shows %s as listed=%v %q %q, want online %q", a.name, b.name, listed, status, role, wantRole)
			}
		}
		text := c.statusText(a)
		for _, want := range []string{"Current DC: " + dc + " ", "3 nodes configured"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: `raftlb status` does not contain %q:\n%s", a.name, want, text)
			}
		}
	}
}

func TestKilledDCIsReplaced(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockDCKilled, 3)
	old := c.byName(c.mustStatus(c.agents[0]).DC)

	c.kill(old)
	survivors := c.others(old)
	c.waitFor("the survivors to agree on a new DC and show "+old.name+" offline", changeTimeout, func() error {
		// The killed node stays configured: only `raftlb leave` removes a
		// node, so quorum arithmetic does not shrink under a partition.
		dc, err := c.agreed(survivors, 2, 3)
		if err != nil {
			return err
		}
		if dc == old.name {
			return fmt.Errorf("the survivors still name the killed %s as DC", dc)
		}
		for _, a := range survivors {
			st, err := c.status(a)
			if err != nil {
				return err
			}
			if status, _, listed := st.node(old.name); !listed || status != "offline" {
				return fmt.Errorf("%s shows the killed %s as listed=%v %q, want offline", a.name, old.name, listed, status)
			}
		}
		return nil
	})
}

func TestApplyValidatesAndReplicates(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockApply, 3)
	dir := t.TempDir()
	before := c.mustStatus(c.agents[0]).SpecVersion
	if err := c.sameSpecVersion(c.agents, before); err != nil {
		t.Fatalf("before any apply: %v", err)
	}

	for _, tc := range []struct {
		name string
		file string
		want []string // what stderr must name
	}{
		{"value errors", badValues, []string{"vips[1]", "192.0.2.300", "services[0]", ".port", `"roundrobin"`}},
		// An unknown field stops the YAML decoder before validation runs,
		// so today the CLI names only the unknown field, not the value
		// errors around it.
		{"unknown field among value errors", badValues + "    weight_bonus: 3\n", []string{`"weight_bonus"`}},
	} {
		file := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.file)
		r := c.apply(c.agents[0], file)
		if r.code == 0 || strings.Contains(r.stdout, "applied") {
			t.Errorf("%s: apply of an invalid file succeeded: %s", tc.name, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr does not name %s: %s", tc.name, w, r)
			}
		}
		// The DC is among the agents, and a committed change would be
		// applied on the DC before apply returned, so reading once is
		// enough to see that nothing changed.
		if err := c.sameSpecVersion(c.agents, before); err != nil {
			t.Errorf("%s: rejected apply changed the spec: %v", tc.name, err)
		}
	}

	// Apply through a node that is not the DC: any node accepts an apply.
	dc := c.mustStatus(c.agents[0]).DC
	via := c.others(c.byName(dc))[0]
	good := writeFile(t, dir, "squid.yaml", squidServices)
	want := before + 1
	r := c.apply(via, good)
	if r.code != 0 || !strings.HasPrefix(r.stdout, fmt.Sprintf("applied: spec version %d, ", want)) {
		t.Fatalf("valid apply via %s: want \"applied: spec version %d\": %s", via.name, want, r)
	}
	c.waitFor(fmt.Sprintf("spec version %d on every node", want), changeTimeout, func() error {
		return c.sameSpecVersion(c.agents, want)
	})

	r = c.apply(via, good)
	if r.code != 0 || strings.TrimSpace(r.stdout) != fmt.Sprintf("unchanged: spec version %d", want) {
		t.Fatalf("re-apply of the same file: want \"unchanged: spec version %d\": %s", want, r)
	}
	if err := c.sameSpecVersion(c.agents, want); err != nil {
		t.Errorf("after an unchanged apply: %v", err)
	}
}

func TestRestartedAgentRejoins(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockRestart, 3)
	dir := t.TempDir()
	applyAndWait(c, c.agents[0], writeFile(t, dir, "rr.yaml", squidServices), c.agents)

	// Restart the DC: the hardest case, since it comes back with an old
	// term, and a spec applied while it was down has to reach it.
	old := c.byName(c.mustStatus(c.agents[0]).DC)
	c.kill(old)
	survivors := c.others(old)
	c.waitFor("a new DC among the survivors", changeTimeout, func() error {
		_, err := c.agreed(survivors, 2, 3)
		return err
	})
	version := applyAndWait(c, survivors[0], writeFile(t, dir, "wlc.yaml", squidServicesWLC), survivors)

	c.start(old) // same flags and data directory, and no join
	c.waitFor(fmt.Sprintf("%s back online with spec version %d everywhere", old.name, version), changeTimeout, func() error {
		if _, err := c.agreed(c.agents, 3, 3); err != nil {
			return err
		}
		return c.sameSpecVersion(c.agents, version)
	})
}

func TestLeaveRemovesNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockLeave, 3)
	dc := c.byName(c.mustStatus(c.agents[0]).DC)
	leaver := c.others(dc)[0]

	if r := c.run("leave", "--api", leaver.api); r.code != 0 {
		t.Fatalf("leave %s: %s", leaver.name, r)
	}
	if code := c.waitExit(leaver); code != 0 {
		t.Errorf("%s exited %d after leaving, want 0", leaver.name, code)
	}
	rest := c.others(leaver)
	c.waitFor("the others to show 2 nodes configured without "+leaver.name, changeTimeout, func() error {
		if _, err := c.agreed(rest, 2, 2); err != nil {
			return err
		}
		for _, a := range rest {
			st, err := c.status(a)
			if err != nil {
				return err
			}
			// A node that left for good is gone, not offline.
			if status, role, listed := st.node(leaver.name); listed {
				return fmt.Errorf("%s still lists %s (%s, %s)", a.name, leaver.name, status, role)
			}
		}
		return nil
	})
}

func TestForeignNodeCannotJoin(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockForeign, 3)
	members := c.agents[:3]
	otherKey := filepath.Join(c.dir, "other-gossip.key")
	otherCA := filepath.Join(c.dir, "other-tls")
	c.mustRaftlb("keygen", "-o", otherKey)
	c.mustRaftlb("tls", "init", "--dir", otherCA)
	// Each stranger is wrong in one way only: n4 has the cluster's CA but
	// another gossip key, n5 the cluster's key but another CA. Both start
	// like a node added to a running cluster: no bootstrap.
	wrongKey := c.addAgent(4, otherKey, c.tlsDir, 0)
	wrongCA := c.addAgent(5, c.keyFile, otherCA, 0)
	for _, a := range []*agent{wrongKey, wrongCA} {
		c.start(a)
		c.waitAPI(a)
	}

	// Both fail at once with the real cause; the DC's membership
	// reconciler meanwhile sees n5 in gossip, and a wrong admission would
	// show in the check at the end.
	r := c.join(wrongCA, members[0])
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("join with a certificate from another CA: want a non-zero exit and stderr mentioning the certificate: %s", r)
	}
	// The words of the key-mismatch error itself, not the generic
	// "could not join" advice, which also mentions the key.
	r = c.join(wrongKey, members[0])
	if r.code == 0 || !strings.Contains(r.stderr, "the gossip key differs from the cluster's") {
		t.Errorf("join with another gossip key: want a non-zero exit and stderr saying the gossip key differs: %s", r)
	}

	for _, a := range members {
		st := c.mustStatus(a)
		if !st.Quorum || st.DC == "" || st.NodesConfigured != 3 {
			t.Errorf("%s: dc %q quorum %v, %d nodes configured; want a DC with quorum and 3 nodes", a.name, st.DC, st.Quorum, st.NodesConfigured)
		}
		for _, s := range []*agent{wrongKey, wrongCA} {
			// n5 shares the gossip key, so it may be listed as a node
			// seen in gossip, but never as a Raft member.
			if _, role, _ := st.node(s.name); role == "DC" || role == "member" || role == "non-voter" {
				t.Errorf("%s shows the stranger %s with role %q", a.name, s.name, role)
			}
		}
	}
}

func TestStatusWithoutQuorum(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockCutOff, 3)
	dc := c.byName(c.mustStatus(c.agents[0]).DC)
	lone := c.others(dc)[0]
	stopped := c.others(lone)

	// SIGSTOP freezes the two others, the DC among them, without closing
	// their sockets: to lone it looks like a partition, not a shutdown.
	for _, a := range stopped {
		c.signal(a, syscall.SIGSTOP)
	}
	c.waitFor(lone.name+" to report that it has no quorum", changeTimeout, func() error {
		st, err := c.status(lone)
		if err != nil {
			return err
		}
		if st.Quorum || st.DC != "" || st.Warning == "" || !st.Stale {
			return fmt.Errorf("%s: quorum %v dc %q stale %v warning %q; want no quorum, no DC, stale, a warning", lone.name, st.Quorum, st.DC, st.Stale, st.Warning)
		}
		return nil
	})
	for _, a := range stopped {
		c.signal(a, syscall.SIGCONT)
	}
	c.waitFor("the cluster to recover after SIGCONT", changeTimeout, func() error {
		_, err := c.agreed(c.agents, 3, 3)
		return err
	})
}

// applyAndWait applies file through a's agent, expects a new spec version,
// waits until every agent in view has it, and returns it.
func applyAndWait(c *cluster, a *agent, file string, view []*agent) uint64 {
	c.t.Helper()
	r := c.apply(a, file)
	var version uint64
	if _, err := fmt.Sscanf(r.stdout, "applied: spec version %d", &version); r.code != 0 || err != nil {
		c.t.Fatalf("apply %s via %s: want \"applied: spec version N\": %s", filepath.Base(file), a.name, r)
	}
	c.waitFor(fmt.Sprintf("spec version %d on %d nodes", version, len(view)), changeTimeout, func() error {
		return c.sameSpecVersion(view, version)
	})
	return version
}

// TestApplySafetyAndSpecShow: through the CLI only, on a node that is not
// the DC. An apply prints what it changed, and that node's status shows
// the new version the moment apply returns (read your writes); a dry run
// prints the same and changes nothing; a file without services and VIPs
// is refused unless asked for; spec show prints a file apply takes back
// unchanged.
func TestApplySafetyAndSpecShow(t *testing.T) {
	t.Parallel()
	c := startCluster(t, blockSpec, 3)
	dir := t.TempDir()
	dc := c.mustStatus(c.agents[0]).DC
	via := c.others(c.byName(dc))[0]

	r := c.apply(via, writeFile(t, dir, "rr.yaml", squidServices))
	var version uint64
	if _, err := fmt.Sscanf(r.stdout, "applied: spec version %d, 2 change(s):", &version); r.code != 0 || err != nil ||
		!strings.Contains(r.stdout, "\n  added service squid ") {
		t.Fatalf("apply: want the version and its two changes: %s\nstdout %q stderr %q", r, r.stdout, r.stderr)
	}
	if st := c.mustStatus(via); st.SpecVersion < version {
		t.Errorf("status on %s right after its apply shows spec version %d, want %d", via.name, st.SpecVersion, version)
	}

	wlc := writeFile(t, dir, "wlc.yaml", squidServicesWLC)
	r = c.run("apply", "--api", via.api, "--dry-run", "-f", wlc)
	if r.code != 0 || !strings.HasPrefix(r.stdout, fmt.Sprintf("dry run: nothing was changed; against spec version %d, applying would make 1 change(s):\n", version)) ||
		!strings.Contains(r.stdout, "scheduler rr → wlc") {
		t.Fatalf("dry run: %s", r)
	}
	if err := c.sameSpecVersion(c.agents, version); err != nil {
		t.Fatalf("after a dry run: %v", err)
	}

	for name, content := range map[string]string{"empty.yaml": "", "comments.yaml": "# nothing yet\n"} {
		r = c.run("apply", "--api", via.api, "-f", writeFile(t, dir, name, content))
		if r.code == 0 || !strings.Contains(r.stderr, "would remove all 1 service(s) and 1 VIP(s); nothing was changed") {
			t.Errorf("%s: want it refused: %s", name, r)
		}
	}
	if err := c.sameSpecVersion(c.agents, version); err != nil {
		t.Fatalf("after refused empty files: %v", err)
	}

	shown := c.mustRaftlb("spec", "show", "--api", via.api).stdout
	r = c.apply(c.byName(dc), writeFile(t, dir, "shown.yaml", shown))
	if r.code != 0 || strings.TrimSpace(r.stdout) != fmt.Sprintf("unchanged: spec version %d", version) {
		t.Errorf("spec show → apply: want unchanged: %s\nshown:\n%s", r, shown)
	}

	r = c.mustRaftlb("spec", "clear", "--api", via.api)
	if !strings.Contains(r.stdout, "removed service squid ") {
		t.Errorf("spec clear: %s", r)
	}
	if st := c.mustStatus(via); len(st.Services) != 0 {
		t.Errorf("after spec clear: %d services", len(st.Services))
	}
}
