//go:build lab

package lab_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
	"github.com/raftlb/raftlb/quorum"
)

// The nemesis suite: each fault class is injected into a running cluster
// while both judges of invariant 1 watch (the client's ARP rounds and the
// nodes' kernels), a third watches who has IPVS rules for the VIP, and a
// probe measures what a client sees. Each class prints figure lines: the
// time two MACs answered (median and longest), the longest time nobody
// did, the client's longest outage, IPVS writes by a node that was not DC,
// and committed specs lost. `make nemesis RUNS=N` repeats each class N
// times; CI runs one injection per class.

var (
	nemesisRuns     = flag.Int("lab.nemesis-runs", 1, "injections of each nemesis fault class")
	nemesisTakeover = flag.String("lab.nemesis-takeover", "lease", "the spec's takeover policy during the suite: lease or immediate")
)

// fault is one class of the suite. inject breaks something about the DC
// (and maybe more) and returns how long to watch and how to undo it.
type fault struct {
	name   string
	inject func(c *rcluster, dc string) (watch time.Duration, heal func())
}

func faults() []fault {
	return []fault{
		{"kill", func(c *rcluster, dc string) (time.Duration, func()) {
			// kill -9 of the DC's agent, not restarted within the watch.
			c.agents[dc].Kill()
			return 8 * time.Second, func() { c.startAgent(dc) }
		}},
		{"freeze", func(c *rcluster, dc string) (time.Duration, func()) {
			// SIGSTOP for 10 s, then SIGCONT: a hung or starved agent.
			c.signal(dc, syscall.SIGSTOP)
			return 10 * time.Second, func() { c.signal(dc, syscall.SIGCONT) }
		}},
		{"isolated_from_peers", func(c *rcluster, dc string) (time.Duration, func()) {
			// The DC hears no peer and no peer hears it; the client still
			// reaches it.
			return 6 * time.Second, c.cut(dc, "input", "saddr", others(dc)...).and(c.cut(dc, "output", "daddr", others(dc)...))
		}},
		{"loss_from_dc", func(c *rcluster, dc string) (time.Duration, func()) {
			// What the DC sends its peers is lost; what they send arrives.
			return 6 * time.Second, c.cut(dc, "output", "daddr", others(dc)...)
		}},
		{"loss_to_dc", func(c *rcluster, dc string) (time.Duration, func()) {
			// What the peers send the DC is lost; what it sends arrives.
			return 6 * time.Second, c.cut(dc, "input", "saddr", others(dc)...)
		}},
		{"netem", func(c *rcluster, dc string) (time.Duration, func()) {
			// 400 ms of delay and 20 % loss on the DC's interface.
			c.l.Run(dc, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "400ms", "loss", "20%")
			return 10 * time.Second, func() { c.l.Run(dc, "tc", "qdisc", "del", "dev", "eth0", "root") }
		}},
		{"two_killed", func(c *rcluster, dc string) (time.Duration, func()) {
			// The DC's agent and one more die: the survivor has no quorum.
			other := others(dc)[0]
			c.agents[dc].Kill()
			c.agents[other].Kill()
			return 8 * time.Second, func() {
				c.startAgent(dc)
				c.startAgent(other)
			}
		}},
		{"restart_all", func(c *rcluster, dc string) (time.Duration, func()) {
			// Every agent killed and started again: a full cluster restart.
			for _, n := range lab.Nodes() {
				c.agents[n].Kill()
			}
			return 2 * time.Second, func() {
				for _, n := range lab.Nodes() {
					c.startAgent(n)
				}
			}
		}},
	}
}

// heal is an undo; and runs two in order.
type heal func()

func (h heal) and(o heal) func() { return func() { h(); o() } }

// cut installs an nftables rule in n's namespace dropping, on hook, every
// packet whose dir (saddr or daddr) is one of the peers' addresses.
func (c *rcluster) cut(n, hook, dir string, peers ...string) heal {
	c.t.Helper()
	var ips []string
	for _, p := range peers {
		ips = append(ips, lab.IP(p))
	}
	table := "nemesis_" + hook
	rules := fmt.Sprintf("add table inet %[1]s\nadd chain inet %[1]s c { type filter hook %[2]s priority 0 ; }\nadd rule inet %[1]s c ip %[3]s { %[4]s } drop\n",
		table, hook, dir, strings.Join(ips, ", "))
	f := filepath.Join(c.dir, n+"-"+table+".nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.l.Run(n, "nft", "-f", f)
	return func() { c.l.Run(n, "nft", "delete", "table", "inet", table) }
}

func (c *rcluster) signal(n string, sig syscall.Signal) {
	c.t.Helper()
	if err := c.agents[n].Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// bumpSpec applies a spec with the other of two schedulers, so each
// injection has a freshly committed spec to lose; it returns the version.
func (c *rcluster) bumpSpec(run int) uint64 {
	c.t.Helper()
	sched := map[bool]string{true: "wrr", false: "rr"}[run%2 == 1]
	spec := strings.Replace(labSpec, "scheduler: rr", "scheduler: "+sched, 1) + "policy: {no_quorum: stop, takeover: " + *nemesisTakeover + "}\n"
	out := c.apply(spec)
	m := regexp.MustCompile(`spec version (\d+)`).FindStringSubmatch(out)
	if m == nil {
		c.t.Fatalf("apply said %q", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

func TestNemesis(t *testing.T) {
	c := newRaftlbCluster(t)
	for _, f := range faults() {
		var twoMACs, silent, outage, directors []float64
		nonDC, lost := 0, 0
		for run := 1; run <= max(*nemesisRuns, 1); run++ {
			dc := c.waitHealthy(lab.Nodes())
			version := c.bumpSpec(run)
			c.waitHealthy(lab.Nodes())
			name := fmt.Sprintf("nemesis-%s-%d", f.name, run)
			hw, aw := c.judges("arp-" + name)
			iw := lab.WatchIPVS(lab.Nodes(), vip, 3128)
			probe := c.startProbe("probe-"+name, dc)
			t0 := time.Now()
			watch, undo := f.inject(c, dc)
			time.Sleep(watch) // the observation window itself
			undo()
			c.waitHealthy(lab.Nodes())
			r, err := probe.Stop(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			spans, wire := c.verdicts(hw, aw)
			ipvs, _ := iw.Stop()
			both := overlaps(spans)
			multi := overlaps(ipvs)
			writes := c.nonDCWrites(t0)
			for _, n := range lab.Nodes() {
				if st, err := c.status(n); err != nil || st.SpecVersion < version {
					t.Errorf("%s run %d: %s has spec version %d (%v), want at least the committed %d", f.name, run, n, st.SpecVersion, err, version)
					lost++
				}
			}
			t.Logf("%s run %d: DC %s; two MACs answered %d rounds (longest %.0f ms), two kernels answered for the VIP %s, nobody answered for %.0f ms at most; two nodes had IPVS rules for %s; %d IPVS writes by a non-DC; client outage %.0f ms (%d of %d failed %v)",
				f.name, run, dc, wire.TwoMACRounds, wire.LongestTwoMACMS(), both, wire.LongestSilentMS(), multi, writes, r.LongestOutageMS, r.Failures, r.Attempts, r.Errors)
			// Under lease no fault may have two MACs answer, nor two
			// kernels answer for the VIP (on the interface, lease alive); under immediate, for no longer than
			// the old holder's lease (the agents run with the default) and
			// how late its kernel may drop the VIP.
			switch limit := quorum.DefaultLease + kernelExpiryLate + guestStall + judgeSlack; {
			case *nemesisTakeover == "lease" && (wire.TwoMACRounds != 0 || both != 0):
				t.Errorf("%s run %d: two MACs answered %d rounds, two kernels answered for the VIP %s; want neither under takeover lease", f.name, run, wire.TwoMACRounds, both)
			case *nemesisTakeover == "immediate" && (wire.LongestTwoMACMS() > ms(limit) || both > limit):
				t.Errorf("%s run %d: two MACs answered for %.0f ms, two kernels answered for the VIP %s; want at most the lease and its slack (%s) under immediate", f.name, run, wire.LongestTwoMACMS(), both, limit)
			}
			if writes != 0 {
				t.Errorf("%s run %d: %d IPVS writes by a node that was no longer DC", f.name, run, writes)
			}
			twoMACs = append(twoMACs, wire.LongestTwoMACMS())
			silent = append(silent, wire.LongestSilentMS())
			outage = append(outage, r.LongestOutageMS)
			directors = append(directors, ms(multi))
			nonDC += writes
		}
		prefix := "lab_nemesis_" + f.name
		if *nemesisTakeover != "lease" {
			prefix = "lab_nemesis_" + *nemesisTakeover + "_" + f.name
		}
		figures(prefix+"_two_macs", twoMACs, "ms")
		figure(prefix+"_nobody_answered_max", slicesMax(silent), "ms")
		figures(prefix+"_outage", outage, "ms")
		figure(prefix+"_two_directors_max", slicesMax(directors), "ms")
		figure(prefix+"_ipvs_writes_by_non_dc", float64(nonDC), "count")
		figure(prefix+"_specs_lost", float64(lost), "count")
		// keepalived's killed and frozen master (keepalived_test.go).
		if side, ok := map[string]string{"kill": "killed", "freeze": "frozen"}[f.name]; ok && *nemesisTakeover == "lease" {
			compared.raftlb(side+"_outage", "ms", outage)
			compared.raftlb(side+"_two_macs", "ms", twoMACs)
		}
	}
	panics := c.panics()
	figure("lab_nemesis_panics", float64(len(panics)), "count")
	for _, p := range panics {
		t.Errorf("an agent panicked: %s", p)
	}
}

// panics lists every panic in every agent's logs (stdout and stderr), as
// "LOG: first line".
func (c *rcluster) panics() []string {
	c.t.Helper()
	var out []string
	for _, n := range lab.Nodes() {
		for i := 1; i <= c.starts[n]; i++ {
			name := fmt.Sprintf("agent-%s-%d.log", n, i)
			data, err := os.ReadFile(filepath.Join(c.l.LogDir(), name))
			if err != nil {
				c.t.Fatal(err)
			}
			for _, m := range lab.Panics(string(data)) {
				out = append(out, name+": "+m)
			}
		}
	}
	return out
}

func slicesMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

var (
	logTime    = regexp.MustCompile(`^time=(\S+)`)
	logTerm    = regexp.MustCompile(` term=(\d+)`)
	becameDC   = regexp.MustCompile(`msg="this node is now the DC"`)
	ipvsChange = regexp.MustCompile(`msg="IPVS (add|update)-`)
)

// nonDCWrites counts, in every agent's logs since t0, the IPVS writes
// (adds and updates; removing needs no leadership) made in a term after
// some node had become DC in a later term: writes by a node that was no
// longer the DC.
func (c *rcluster) nonDCWrites(t0 time.Time) int {
	c.t.Helper()
	type rec struct {
		at   time.Time
		term uint64
	}
	var dcs, writes []rec
	for _, n := range lab.Nodes() {
		for i := 1; i <= c.starts[n]; i++ {
			data, err := os.ReadFile(filepath.Join(c.l.LogDir(), fmt.Sprintf("agent-%s-%d.log", n, i)))
			if err != nil {
				c.t.Fatal(err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				tm, tr := logTime.FindStringSubmatch(line), logTerm.FindStringSubmatch(line)
				if tm == nil || tr == nil {
					continue
				}
				at, err := time.Parse(time.RFC3339Nano, tm[1])
				if err != nil {
					continue
				}
				term, _ := strconv.ParseUint(tr[1], 10, 64)
				switch {
				case becameDC.MatchString(line):
					dcs = append(dcs, rec{at, term})
				case ipvsChange.MatchString(line) && !at.Before(t0):
					writes = append(writes, rec{at, term})
				}
			}
		}
	}
	sort.Slice(dcs, func(i, j int) bool { return dcs[i].at.Before(dcs[j].at) })
	bad := 0
	for _, w := range writes {
		for _, d := range dcs {
			if d.at.Before(w.at) && d.term > w.term {
				bad++
				break
			}
		}
	}
	return bad
}
