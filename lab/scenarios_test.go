//go:build lab

package lab_test

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/raftlb/raftlb/lab"
)

// TestRaftlbBalance: 30 connections to the VIP are answered by all three
// nodes; the client's ARP entry is the DC's MAC; only the DC balances the
// VIP; the others carry it on lo only.
func TestRaftlbBalance(t *testing.T) {
	c := newRaftlbCluster(t)
	dc := c.waitHealthy(lab.Nodes())

	p, err := c.l.StartProbe("probe-balance", lab.VIP+":"+port, "--interval", "20ms", "--timeout", "1s", "--duration", "1500ms")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Successes < 30 || r.Failures != 0 {
		t.Errorf("%d answers and %d failures (%v), want ≥ 30 answers and none failed", r.Successes, r.Failures, r.Errors)
	}
	for _, n := range lab.Nodes() {
		if r.Answers[n] == 0 {
			t.Errorf("node %s answered none of %d connections (answers %v)", n, r.Successes, r.Answers)
		}
		figure("lab_balance_answers_"+n, float64(r.Answers[n]), "count")
	}

	arp, err := c.ns[lab.Client].NeighMAC("eth0", vip)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.mac(dc); arp != want {
		t.Errorf("client ARP entry for the VIP is %s, want the DC's (%s) %s", arp, dc, want)
	}
	// The kernel folds per-CPU IPVS counters into the totals every couple
	// of seconds: wait until the DC's show the probe's connections.
	c.eventually("the DC's IPVS counters", 30*time.Second, func() (bool, error) {
		svc, ok, err := c.table(dc)
		return ok && svc.Conns >= uint64(r.Successes), err
	})
	c.checkMetrics(dc)
	for _, n := range lab.Nodes() {
		svc, ok, err := c.table(n)
		if err != nil {
			t.Fatal(err)
		}
		onIface, onLo := c.has(n, "eth0"), c.has(n, "lo")
		if n == dc {
			if !ok || len(svc.Dests) != 3 || svc.Scheduler != "rr" {
				t.Errorf("DC %s IPVS service %+v (present %v), want rr over three real servers", n, svc, ok)
			}
			for _, d := range svc.Dests {
				if d.Forward != "Route" && d.Forward != "Local" {
					t.Errorf("DC real server %s forwards by %s, want Route (or Local for itself)", d.Addr, d.Forward)
				}
				// Direct routing: replies of the other real servers bypass
				// the DC. (The DC's own entry is local delivery, whose
				// replies do pass IPVS.)
				if d.Addr.Addr().String() != lab.IP(dc) && (d.OutPkts != 0 || d.InPkts == 0) {
					t.Errorf("real server %s: InPkts %d OutPkts %d, want traffic in and no replies through the DC", d.Addr, d.InPkts, d.OutPkts)
				}
			}
			t.Logf("DC %s table:\n%s", dc, c.cli(dc, "ipvs"))
			if !onIface || !onLo {
				t.Errorf("DC %s: VIP on eth0=%v lo=%v, want both (lo keeps the node a real server when the lease ends)", n, onIface, onLo)
			}
			continue
		}
		if ok {
			t.Errorf("non-DC %s has an IPVS service for the VIP: %+v", n, svc)
		}
		if onIface || !onLo {
			t.Errorf("real server %s: VIP on eth0=%v lo=%v, want lo only", n, onIface, onLo)
		}
	}
}

// TestRaftlbCablePull: the DC's cable is pulled (its veth down on the
// bridge). The cut-off DC loses quorum and lets go of the VIP before any
// other node can be elected (invariant 3), so no instant has two nodes
// carrying the VIP, as their kernels show; a new DC then holds it, the
// client's ARP entry moves to its MAC (gratuitous ARP), the dead node
// leaves the table and the survivors serve.
//
// It runs under each takeover policy that needs no fence device, in the
// same lab run, so their costs compare: with lease (the default) the new
// DC waits out the cut-off DC's lease, which let go but could not say so;
// with immediate it claims at once.
func TestRaftlbCablePull(t *testing.T) {
	c := newRaftlbCluster(t)
	for _, policy := range []string{"lease", "immediate"} {
		c.apply(labSpec + "policy: {no_quorum: stop, takeover: " + policy + "}\n")
		cablePulls(t, c, policy)
	}
}

func cablePulls(t *testing.T, c *rcluster, policy string) {
	var outage, takeover, arpSwitch, gap, twoMACs []float64
	phases := map[string][]float64{}
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		survivors := others(dc)
		before := map[string]map[string]float64{}
		for _, n := range survivors {
			before[n] = c.phaseSums(n)
		}
		hw, aw := c.judges(fmt.Sprintf("arp-cable-%s-%d", policy, run))
		probe := c.startProbe(fmt.Sprintf("probe-cable-%s-%d", policy, run), dc)
		t0 := time.Now()
		if err := c.l.CablePull(dc); err != nil {
			t.Fatal(err)
		}
		newDC, t1 := c.waitVIPOnInterface(survivors, 30*time.Second)
		t2 := c.waitClientARP(c.mac(newDC), 30*time.Second)
		c.eventually("the cut-off DC to release the VIP", 10*time.Second, func() (bool, error) {
			return !c.has(dc, "eth0"), nil
		})
		want := []string{lab.IP(survivors[0]), lab.IP(survivors[1])}
		c.waitDCTable("the dead node to leave the DC's table", survivors, func(dests []string) bool { return slices.Equal(dests, want) })
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		spans, wire := c.verdicts(hw, aw)
		// The order, from the nodes' own kernels: the cut-off DC let go
		// before the new DC claimed, and at no instant did two carry it.
		released, ok1 := lab.EndOfSpanAt(spans[dc], t0)
		claimed, ok2 := lab.FirstFrom(spans[newDC], t0)
		if !ok1 || !ok2 || !released.Before(claimed) {
			t.Errorf("run %d: the cut-off DC %s released the VIP at %s, the new DC %s claimed it at %s: want the release first (invariant 3)",
				run, dc, released.UTC().Format("15:04:05.000"), newDC, claimed.UTC().Format("15:04:05.000"))
		}
		if both := overlaps(spans); both != 0 {
			t.Errorf("run %d: two nodes carried the VIP at once for %s: %v", run, both, spans)
		}
		if wire.TwoMACRounds != 0 {
			t.Errorf("run %d: the client saw two MACs answer for the VIP: %+v", run, wire.TwoMACWindows)
		}
		after := c.probeBriefly(t, "probe-cable-after-"+dc)
		if after.Answers[dc] != 0 || after.Answers[survivors[0]] == 0 || after.Answers[survivors[1]] == 0 || after.Failures != 0 {
			t.Errorf("after the cable pull answers %v (failures %d): want only and both of %v", after.Answers, after.Failures, survivors)
		}
		var took []string
		for _, p := range takeoverPhases {
			if v, ok := c.phaseSums(newDC)[p]; ok {
				d := (v - before[newDC][p]) * 1000
				phases[p] = append(phases[p], d)
				took = append(took, fmt.Sprintf("%s %.0f", p, d))
			}
		}
		t.Logf("%s run %d: DC %s pulled at %s; released after %s; %s took the VIP after %s, client ARP after %s; outage %.0f ms (%d failures %v); the new DC's phases (ms): %s",
			policy, run, dc, t0.UTC().Format("15:04:05.000"), released.Sub(t0), newDC, t1.Sub(t0), t2.Sub(t0), r.LongestOutageMS, r.Failures, r.Errors, strings.Join(took, ", "))
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		arpSwitch = append(arpSwitch, ms(t2.Sub(t0)))
		gap = append(gap, ms(claimed.Sub(released)))
		twoMACs = append(twoMACs, wire.LongestTwoMACMS())
		if err := c.l.CablePlug(dc); err != nil {
			t.Fatal(err)
		}
	}
	c.waitHealthy(lab.Nodes())
	prefix := "lab_cable_pull_" + policy
	figures(prefix+"_outage", outage, "ms")
	figures(prefix+"_vip_takeover", takeover, "ms")
	figures(prefix+"_client_arp_switch", arpSwitch, "ms")
	figures(prefix+"_release_to_claim", gap, "ms")
	for _, p := range takeoverPhases {
		if len(phases[p]) > 0 {
			figures(prefix+"_phase_"+p, phases[p], "ms")
		}
	}
	if policy == "lease" { // the default, beside keepalived's (sidebyside_test.go)
		compared.raftlb("cable_pull_outage", "ms", outage)
		compared.raftlb("cable_pull_two_macs", "ms", twoMACs)
	}
}

// takeoverPhases are the phases a new DC reports
// (raftlb_takeover_phase_seconds, director/phases.go), in order.
var takeoverPhases = []string{"detection", "election", "barrier", "takeover", "verify", "ipvs", "commit", "place", "announce"}

// phaseSums is node n's raftlb_takeover_phase_seconds sums by phase (in
// seconds): a takeover's phases are the growth of the new DC's sums.
func (c *rcluster) phaseSums(n string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range c.scrape(n) {
		if p, ok := strings.CutPrefix(k, `raftlb_takeover_phase_seconds_sum{phase="`); ok {
			out[strings.TrimSuffix(p, `"}`)] = v
		}
	}
	return out
}

// probeBriefly sends 20 connections and returns the report.
func (c *rcluster) probeBriefly(t *testing.T, name string) lab.ProbeReport {
	t.Helper()
	return c.probe(t, name, lab.VIP+":"+port, "--interval", "20ms", "--timeout", "1s", "--duration", "400ms")
}

// probe runs a probe with a --duration or --count against target and
// returns its report.
func (c *rcluster) probe(t *testing.T, name, target string, flags ...string) lab.ProbeReport {
	t.Helper()
	p, err := c.l.StartProbe(name, target, flags...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// handOverGrace is the agent's default: how long a DC handing over keeps
// the VIP at most, waiting for the successor's announcement.
const handOverGrace = 3 * time.Second

// judgeSlack is what the judges' own resolution adds to a window they
// measure: the holder poll (5 ms), the ARP rounds (20 ms), and a TCG stall
// of the poller (about 200 ms, seen).
const judgeSlack = 300 * time.Millisecond

// The judges' bounds on the kernel's side of a lease are their own,
// derived from the kernel's source and the lab's measurements, never from
// the agent's constants (quorum.KernelExpirySlack): loosening the agent
// must not loosen its judge.
const (
	// kernelExpiryLate is how late, at most, the kernel drops an IPv4
	// address whose lifetime has ended. check_lifetime (net/ipv4/devinet.c)
	// compares whole seconds, runs no sooner than ADDRCONF_TIMER_FUZZ_MAX
	// (HZ: 1 s) after its last run, and rounds its next run up to a whole
	// second when that adds less than ADDRCONF_TIMER_FUZZ (HZ/4: 250 ms)
	// (include/net/addrconf.h); LAB.md measured 0–1.25 s.
	kernelExpiryLate = 1250 * time.Millisecond
	// guestStall is how long the lab's TCG guest stalls now and then, the
	// kernel's expiry work with it: LAB.md (~200 ms), seen 201–218 ms
	// (labRaftScale's comment).
	guestStall = 220 * time.Millisecond
)

// TestRaftlbGracefulStop: SIGTERM to the DC's agent hands leadership
// over; the VIP moves and no client request goes unanswered. The old DC
// stops balancing before the transfer and answers with its own service
// until it sees the successor's gratuitous ARP, so both carry the VIP, and
// both answer ARP, for a window bounded by the hand-over grace (invariant
// 1's measured exception), which both judges check. A connection the old
// DC had forwarded and whose next packet meets the old DC's own stack (or
// the new DC) is reset: only IPVS connection sync would carry it over;
// so is a handshake whose client learns the new DC's MAC between its SYN
// and its ACK. Such breaks are allowed only for connections in flight
// during the move (until the old DC let go of the VIP), counted and
// reported; any other failure fails the test. After the move the stopped
// node, a real server too, drains (weight 0 in the new DC's table) before
// it leaves: the new DC's kernel resets a handshake in flight to a real
// server it removes (expire_nodest_conn), so without the drain a request
// started after the move could break.
func TestRaftlbGracefulStop(t *testing.T) {
	c := newRaftlbCluster(t)
	var outage, takeover, twoHolders, twoMACs, drainMS []float64
	broken, drainedRuns := 0, 0
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		hw, aw := c.judges(fmt.Sprintf("arp-graceful-%d", run))
		// The drain, as each kernel shows it: the stopping node in a
		// table at weight 0.
		stopped := netip.AddrPortFrom(netip.MustParseAddr(lab.IP(dc)), 3128)
		drains := lab.Watch(lab.Nodes(), 20*time.Millisecond, func(n string) (bool, error) {
			d, _, err := lab.IPVSDests(n, vip, 3128)
			w, in := d[stopped]
			return in && w == 0, err
		})
		probe := c.startProbe(fmt.Sprintf("probe-graceful-%d", run), dc)
		t0 := time.Now()
		if err := c.agents[dc].Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		newDC, t1 := c.waitVIPOnInterface(others(dc), 30*time.Second)
		c.eventually("the stopped DC to let go of the VIP on eth0", 30*time.Second, func() (bool, error) {
			return !c.has(dc, "eth0"), nil
		})
		t2 := time.Now()
		c.waitClientARP(c.mac(newDC), 30*time.Second)
		if err := c.agents[dc].Wait(30 * time.Second); err != nil {
			t.Fatalf("the stopped agent did not exit cleanly: %v", err)
		}
		// It let go of the VIP because it saw the successor's gratuitous
		// ARP (read from an AF_PACKET socket), not because a timer ran out.
		if out, err := c.agents[dc].Output(); err != nil || !strings.Contains(out, "the successor announced every VIP") {
			t.Errorf("run %d: the stopped DC did not see its successor announce the VIP (%v); the end of its log:\n%s", run, err, tail(out, 15))
		}
		c.waitDCTable("the stopped node to leave the DC's table", others(dc), func(dests []string) bool { return !slices.Contains(dests, lab.IP(dc)) })
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		drained, derrs := drains.Stop()
		for _, err := range derrs {
			t.Errorf("watching the drain: %v", err)
		}
		var drain time.Duration
		for _, h := range drained[newDC] {
			drain += h.To.Sub(h.From)
		}
		if drain > 0 {
			drainedRuns++
		}
		spans, wire := c.verdicts(hw, aw)
		if c.has(dc, "eth0") || c.has(dc, "lo") {
			t.Errorf("the stopped node %s still carries the VIP (eth0=%v lo=%v)", dc, c.has(dc, "eth0"), c.has(dc, "lo"))
		}
		both := lab.Overlap(spans[dc], spans[newDC])
		if both > handOverGrace+judgeSlack || overlaps(spans) != both {
			t.Errorf("run %d: two nodes carried the VIP for %s (old and new DC: %s), want at most the grace %s: %v", run, overlaps(spans), both, handOverGrace, spans)
		}
		if w := wire.LongestTwoMACMS(); w > ms(handOverGrace+judgeSlack) {
			t.Errorf("run %d: two MACs answered for the VIP for %.0f ms, want at most the grace %s: %+v", run, w, handOverGrace, wire.TwoMACWindows)
		}
		for _, w := range wire.TwoMACWindows {
			if w.Start.Before(t0) {
				t.Errorf("run %d: two MACs answered before the stop: %+v", run, w)
			}
		}
		b := brokenAcross(t, run, r, t0, t2)
		t.Logf("run %d: DC %s stopped; %s took the VIP after %s; both carried it for %s, two MACs answered for %.0f ms; %d of %d requests broke in flight %v, longest outage %.0f ms; drained (weight 0 in %s's table) for %s",
			run, dc, newDC, t1.Sub(t0), both, wire.LongestTwoMACMS(), b, r.Attempts, r.Errors, r.LongestOutageMS, newDC, drain.Round(time.Millisecond))
		drainMS = append(drainMS, ms(drain))
		broken += b
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		twoHolders = append(twoHolders, ms(both))
		twoMACs = append(twoMACs, wire.LongestTwoMACMS())
		c.startAgent(dc) // rejoins from its data dir, without a join
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_graceful_stop_outage", outage, "ms")
	figures("lab_graceful_stop_vip_takeover", takeover, "ms")
	figures("lab_graceful_stop_two_holders_window", twoHolders, "ms")
	figures("lab_graceful_stop_two_macs_wire", twoMACs, "ms")
	figure("lab_graceful_stop_broken_in_flight", float64(broken), "count")
	figures("lab_graceful_stop_drain_window", drainMS, "ms")
	compared.raftlb("graceful_stop_outage", "ms", outage)
	compared.raftlb("graceful_stop_two_macs", "ms", twoMACs)
	// The drain reaches the kernel. Not asserted per run: a DC stalled
	// past the drain delay may see the leave first and remove the node
	// outright, as it did before drains.
	if drainedRuns == 0 {
		t.Errorf("no run saw the stopping node drained (weight 0) in the new DC's table before it left")
	}
}

// TestRaftlbCrashRestart: kill -9 of the DC's agent while its kernel stays
// up. Its kernel keeps the VIP and the IPVS rules it had — the premise,
// checked — and answers ARP beside the new DC until the agent is
// restarted (as a supervisor would) and gives the VIP back to lo at
// start-up. Both judges measure that window.
//
// The client's failed requests are counted by class, not asserted to be
// none: the dead agent's node stays in the new DC's table until gossip
// declares it dead, and a request forwarded to it meets its stale IPVS
// table, which balances it a second time (seen: up to 11 of about 150
// requests timed out, or found no ARP answer, in a run).
func TestRaftlbCrashRestart(t *testing.T) {
	c := newRaftlbCluster(t)
	var outage, takeover, twoHolders, twoMACs []float64
	failed := map[string]int{}
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		hw, aw := c.judges(fmt.Sprintf("arp-crash-%d", run))
		probe := c.startProbe(fmt.Sprintf("probe-crash-%d", run), dc)
		t0 := time.Now()
		c.agents[dc].Kill()
		// The premise: a dead agent's kernel keeps what the agent set up.
		// The address first: its lifetime (the VIP lease) runs out within
		// seconds of the agent's last renewal, and reading the IPVS table
		// (ipvsadm in the emulated VM) can take a good part of that.
		onIface := c.has(dc, "eth0")
		if _, ok, err := c.table(dc); err != nil || !ok || !onIface {
			t.Errorf("run %d: right after kill -9 the DC's kernel has the VIP on eth0 %v and its IPVS service %v (%v): the scenario's premise does not hold", run, onIface, ok, err)
		}
		newDC, t1 := c.waitVIPOnInterface(others(dc), 30*time.Second)
		c.waitClientARP(c.mac(newDC), 30*time.Second)
		c.startAgent(dc)
		c.eventually("the restarted agent to take the VIP off eth0", 30*time.Second, func() (bool, error) {
			return !c.has(dc, "eth0"), nil
		})
		c.eventually("the restarted node to carry the VIP on lo and no IPVS service", 30*time.Second, func() (bool, error) {
			_, ok, err := c.table(dc)
			return c.has(dc, "lo") && !ok, err
		})
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		spans, wire := c.verdicts(hw, aw)
		for class, n := range r.Errors {
			failed[class] += n
		}
		both := overlaps(spans)
		t.Logf("run %d: DC %s killed; %s took the VIP after %s; two nodes carried it for %s, two MACs answered for %.0f ms in all; outage %.0f ms, %d of %d requests failed %v",
			run, dc, newDC, t1.Sub(t0), both, wire.LongestTwoMACMS(), r.LongestOutageMS, r.Failures, r.Attempts, r.Errors)
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		twoHolders = append(twoHolders, ms(both))
		twoMACs = append(twoMACs, wire.LongestTwoMACMS())
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_crash_outage", outage, "ms")
	figures("lab_crash_vip_takeover", takeover, "ms")
	figures("lab_crash_two_holders_window", twoHolders, "ms")
	figures("lab_crash_two_macs_wire", twoMACs, "ms")
	for _, class := range []string{"timeout", "unreachable", "refused", "reset", "eof", "other"} {
		figure("lab_crash_failed_requests_"+class, float64(failed[class]), "count")
	}
}

// TestRaftlbPortReuse: a client that reuses its source ports, as a busy
// one does, is served after the real server an earlier connection went to
// died, and after the DC changed. IPVS remembers every connection; in
// direct routing it sees only the client's half, so a closed connection
// stays in FIN_WAIT for two minutes. A SYN that matches an entry whose
// real server has been removed is dropped without a word until the entry
// expires — unless the kernel expires such entries (expire_nodest_conn),
// which the agent turns on.
func TestRaftlbPortReuse(t *testing.T) {
	const sport, n = 20000, 30 // below the ephemeral range: no other probe uses them
	c := newRaftlbCluster(t)
	dc := c.waitHealthy(lab.Nodes())
	vipPort := netip.AddrPortFrom(vip, 3128)
	// vipConns is the entries of ns's connection table for the probe's
	// connections to the VIP.
	vipConns := func(ns string) ([]lab.Conn, error) {
		all, err := c.l.IPVSConns(ns)
		var out []lab.Conn
		for _, cn := range all {
			if cn.VIP == vipPort && cn.Client.Port() >= sport && cn.Client.Port() < sport+n {
				out = append(out, cn)
			}
		}
		return out, err
	}

	first := c.probePorts(t, "probe-ports-first", sport, n)
	if first.Successes != n {
		t.Fatalf("first pass: %d of %d answered (%v)", first.Successes, n, first.Errors)
	}
	conns, err := vipConns(dc)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != n {
		t.Fatalf("the DC's connection table holds %d of the probe's %d connections: %+v", len(conns), n, conns)
	}
	t.Logf("DC %s remembers the first pass: %d entries, e.g. %+v", dc, len(conns), conns[0])

	// A real server dies. Its entries in the DC's table go with it.
	dead := others(dc)[0]
	if first.Answers[dead] == 0 {
		t.Fatalf("the first pass never reached %s (answers %v)", dead, first.Answers)
	}
	if err := c.l.CablePull(dead); err != nil {
		t.Fatal(err)
	}
	live := []string{lab.IP(dc), lab.IP(others(dc)[1])}
	slices.Sort(live)
	c.eventually("the dead real server to leave the DC's table", 30*time.Second, func() (bool, error) {
		s, ok, err := c.table(dc)
		return ok && slices.Equal(destIPs(s), live), err
	})
	second := c.probePorts(t, "probe-ports-after-death", sport, n)
	if second.Successes != n || second.Answers[dead] != 0 {
		t.Errorf("reusing the ports after %s died: %d of %d answered, answers %v, errors %v; want all answered by the survivors",
			dead, second.Successes, n, second.Answers, second.Errors)
	}
	c.eventually("the DC's kernel to forget the connections to the dead real server", 30*time.Second, func() (bool, error) {
		conns, err := vipConns(dc)
		return !slices.ContainsFunc(conns, func(cn lab.Conn) bool { return cn.Dest.Addr().String() == lab.IP(dead) }), err
	})
	if err := c.l.CablePlug(dead); err != nil {
		t.Fatal(err)
	}
	dc = c.waitHealthy(lab.Nodes())

	// The DC changes. The old DC removes its services; its kernel must not
	// keep their connections either: one would catch a reused port once
	// this node is DC again.
	c.probePorts(t, "probe-ports-before-release", sport, n)
	if conns, err := vipConns(dc); err != nil || len(conns) == 0 {
		t.Fatalf("the DC's connection table holds none of the probe's connections (%v)", err)
	}
	if err := c.l.CablePull(dc); err != nil {
		t.Fatal(err)
	}
	newDC, _ := c.waitVIPOnInterface(others(dc), 30*time.Second)
	c.waitClientARP(c.mac(newDC), 30*time.Second)
	c.eventually("the cut-off DC to release the VIP", 30*time.Second, func() (bool, error) {
		_, ok, err := c.table(dc)
		return !c.has(dc, "eth0") && !ok, err
	})
	c.eventually("the cut-off DC's kernel to forget the VIP's connections", 30*time.Second, func() (bool, error) {
		conns, err := vipConns(dc)
		return len(conns) == 0, err
	})
	// The new DC holds copies of the old DC's connections (IPVS
	// connection sync). A copy is bound to no real server, so neither
	// expire_nodest_conn nor conn_reuse_mode (which reschedules a closing
	// one) reaches a copy that still says ESTABLISHED — the kernel sends a
	// state change within about 2 s, so a connection closed just before
	// the cut keeps its last copy — and a reused port follows it to the
	// cut-off DC. Those ports, read from the new DC's kernel, may fail
	// (README, "what a copy costs"); every other one must be answered.
	stale := map[int]bool{}
	copies, err := vipConns(newDC)
	if err != nil {
		t.Fatal(err)
	}
	for _, cn := range copies {
		if cn.Dest.Addr().String() == lab.IP(dc) && cn.State != "FIN_WAIT" && cn.State != "TIME_WAIT" && cn.State != "CLOSE" {
			stale[int(cn.Client.Port())] = true
		}
	}
	figure("lab_port_reuse_stale_copies", float64(len(stale)), "count")
	third := c.probePorts(t, "probe-ports-new-dc", sport, n)
	for _, a := range third.Records {
		if !a.OK && !stale[a.SourcePort] {
			t.Errorf("reusing port %d after the DC changed: %s (%s); want it answered by a survivor", a.SourcePort, a.Error, a.Detail)
		}
	}
	if third.Answers[dc] != 0 || third.Successes < n-len(stale) {
		t.Errorf("reusing the ports after the DC changed: %d of %d answered (%d stale copies), answers %v, errors %v; want all but the stale answered by the survivors",
			third.Successes, n, len(stale), third.Answers, third.Errors)
	}
	if err := c.l.CablePlug(dc); err != nil {
		t.Fatal(err)
	}
	c.waitHealthy(lab.Nodes())
}

// probePorts opens n connections to the VIP, every 20 ms, from client ports
// sport … sport+n-1, and returns the report.
func (c *rcluster) probePorts(t *testing.T, name string, sport, n int) lab.ProbeReport {
	t.Helper()
	return c.probe(t, name, lab.VIP+":"+port, "--interval", "20ms", "--timeout", "2s",
		"--count", strconv.Itoa(n), "--source-port", strconv.Itoa(sport), "--duration", "1m")
}

// labSpec6 is labSpec with an IPv6 VIP added. Its service balances over
// the nodes' IPv6 addresses: an IPVS service forwards within one address
// family, so all-nodes (the nodes' IPv4 --bind addresses) cannot serve it.
// A quick TCP check takes a dead node out of its table.
var labSpec6 = strings.Replace(labSpec, "services:\n", `  - address: fd95:69::100
    interface: eth0
services:
`, 1) + `  - name: proxy6
    vip: fd95:69::100
    port: 3128
    protocol: tcp
    scheduler: rr
    real_servers:
      - address: fd95:69::30
      - address: fd95:69::40
      - address: fd95:69::50
    health_check:
      type: tcp
      interval: 200ms
      timeout: 150ms
      rise: 2
      fall: 2
`

// TestRaftlbIPv6: an IPv6 VIP is balanced over the three nodes by the DC
// alone, and when the DC's cable is pulled it moves to the new DC, whose
// unsolicited neighbour advertisement moves the client's neighbour entry
// to its MAC. The client sends nothing between the pull and that check,
// so nothing but the advertisement could have changed the entry.
func TestRaftlbIPv6(t *testing.T) {
	c := newRaftlbCluster(t)
	c.apply(labSpec6)
	dc := c.waitHealthy(lab.Nodes())
	vip6 := netip.MustParseAddr(lab.VIP6)
	target := "[" + lab.VIP6 + "]:" + port
	ip6s := func(nodes ...string) []string {
		var out []string
		for _, n := range nodes {
			out = append(out, lab.IP6(n))
		}
		slices.Sort(out)
		return out
	}
	table6 := func(n string) ([]string, bool, error) {
		dests, ok, err := lab.IPVSDests(n, vip6, 3128)
		var out []string
		for d := range dests {
			out = append(out, d.Addr().String())
		}
		slices.Sort(out)
		return out, ok, err
	}
	c.eventually("the DC's IPv6 service over the three nodes", 30*time.Second, func() (bool, error) {
		got, ok, err := table6(dc)
		return ok && slices.Equal(got, ip6s(lab.Nodes()...)), err
	})
	probe6 := func(name string) lab.ProbeReport {
		return c.probe(t, name, target, "--interval", "20ms", "--timeout", "2s", "--count", "30", "--duration", "1m")
	}

	r := probe6("probe6-balance")
	for _, n := range lab.Nodes() {
		if r.Answers[n] == 0 || r.Failures != 0 {
			t.Errorf("IPv6 VIP: answers %v, failures %d (%v); want all three nodes and no failure", r.Answers, r.Failures, r.Errors)
			break
		}
	}
	if got, err := c.ns[lab.Client].NeighMAC("eth0", vip6); err != nil || got != c.mac(dc) {
		t.Errorf("the client's neighbour entry for %s is %q (%v), want the DC's (%s) %s", vip6, got, err, dc, c.mac(dc))
	}
	for _, n := range lab.Nodes() {
		onIface, onLo := c.has6(n, "eth0"), c.has6(n, "lo")
		_, ok, err := table6(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == dc && (!onIface || !onLo || !ok) || n != dc && (onIface || !onLo || ok) {
			t.Errorf("%s (DC %s): IPv6 VIP on eth0=%v lo=%v, IPVS service %v", n, dc, onIface, onLo, ok)
		}
		// As the kernel holds it: deprecated everywhere (preferred
		// lifetime 0: never a source address, so the DC's own health
		// checks leave from its /64 address), and without duplicate
		// address detection on the interface (the old DC of a hand-over
		// would fail the new DC's copy).
		dev := "lo"
		if n == dc {
			dev = "eth0"
		}
		info, found, err := c.ns[n].Addr(dev, vip6)
		if err != nil {
			t.Fatal(err)
		}
		if !found || info.PreferedLft != 0 || info.Flags&unix.IFA_F_DEPRECATED == 0 {
			t.Errorf("%s: IPv6 VIP on %s: %+v (found %v), want deprecated (preferred lifetime 0)", n, dev, info, found)
		}
		if dev == "eth0" && info.Flags&unix.IFA_F_NODAD == 0 {
			t.Errorf("%s: IPv6 VIP on eth0 has flags %#x, want nodad", n, info.Flags)
		}
		if dev == "eth0" && info.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			t.Errorf("%s: IPv6 VIP on eth0 is tentative or failed DAD (flags %#x)", n, info.Flags)
		}
	}

	if err := c.l.CablePull(dc); err != nil {
		t.Fatal(err)
	}
	newDC, _ := c.waitVIPOnInterface(others(dc), 30*time.Second)
	c.eventually("the new DC to carry the IPv6 VIP on eth0", 30*time.Second, func() (bool, error) {
		return c.has6(newDC, "eth0"), nil
	})
	c.eventually("the client's neighbour entry for the IPv6 VIP to move to the new DC's MAC", 10*time.Second, func() (bool, error) {
		got, err := c.ns[lab.Client].NeighMAC("eth0", vip6)
		return got == c.mac(newDC), err
	})
	c.eventually("the dead node to leave the new DC's IPv6 table", 30*time.Second, func() (bool, error) {
		got, ok, err := table6(newDC)
		return ok && slices.Equal(got, ip6s(others(dc)...)), err
	})
	after := probe6("probe6-after-" + dc)
	if after.Failures != 0 || after.Answers[dc] != 0 {
		t.Errorf("IPv6 VIP after the cable pull: answers %v, failures %d (%v); want only %v", after.Answers, after.Failures, after.Errors, others(dc))
	}
	if err := c.l.CablePlug(dc); err != nil {
		t.Fatal(err)
	}
	c.waitHealthy(lab.Nodes())
}

// has6 reports whether node n carries the IPv6 VIP on dev.
func (c *rcluster) has6(n, dev string) bool {
	c.t.Helper()
	ok, err := c.ns[n].HasAddr(dev, netip.MustParseAddr(lab.VIP6))
	if err != nil {
		c.t.Fatal(err)
	}
	return ok
}

// TestRaftlbRuntimeChanges: an apply that adds a service and changes a
// scheduler reaches the DC's kernel without disturbing the other service,
// and a no-op apply makes zero IPVS writes.
func TestRaftlbRuntimeChanges(t *testing.T) {
	c := newRaftlbCluster(t)
	for _, n := range lab.Nodes() {
		p, err := c.l.Start(n, "serve8080-"+n, c.l.Bin("raftlb-lab"), "serve", "--name", n, "--port", "8080")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitOutput("serving", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	two := labSpec + `  - name: web
    vip: 172.95.69.100
    port: 8080
    scheduler: rr
`
	c.apply(two)
	dc := c.waitHealthy(lab.Nodes())
	web := func() lab.Service {
		t.Helper()
		svcs, err := c.l.IPVS(dc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs {
			if s.Addr.Port() == 8080 {
				return s
			}
		}
		t.Fatalf("no 8080 service on the DC %s: %+v", dc, svcs)
		return lab.Service{}
	}
	c.eventually("the 8080 service on the DC", 30*time.Second, func() (bool, error) {
		svcs, err := c.l.IPVS(dc)
		for _, s := range svcs {
			if s.Addr.Port() == 8080 && len(s.Dests) == 3 {
				return true, err
			}
		}
		return false, err
	})
	p, err := c.l.StartProbe("probe-web", lab.VIP+":8080", "--interval", "20ms", "--duration", "400ms")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The kernel folds per-CPU counters into the totals every couple of
	// seconds: wait until the probe's connections show.
	var before lab.Service
	c.eventually("the 8080 counters to show the probe", 30*time.Second, func() (bool, error) {
		before = web()
		return before.Conns > 0, nil
	})

	changed := strings.Replace(two, "scheduler: rr\n    real_servers", "scheduler: wlc\n    real_servers", 1) + `  - name: extra
    vip: 172.95.69.100
    port: 9090
    scheduler: wrr
`
	if out := c.apply(changed); !strings.Contains(out, "applied") {
		t.Fatalf("apply said %q", out)
	}
	c.eventually("3128 on wlc and 9090 added", 30*time.Second, func() (bool, error) {
		svcs, err := c.l.IPVS(dc)
		var sched3128 string
		has9090 := false
		for _, s := range svcs {
			switch s.Addr.Port() {
			case 3128:
				sched3128 = s.Scheduler
			case 9090:
				has9090 = s.Scheduler == "wrr" && len(s.Dests) == 3
			}
		}
		return sched3128 == "wlc" && has9090, err
	})
	after := web()
	// Undisturbed: same real servers, and the cumulative counters were not
	// reset (the service was neither deleted nor re-created).
	if !slices.Equal(destIPs(before), destIPs(after)) || after.Conns < before.Conns || before.Conns == 0 {
		t.Errorf("the 8080 service was disturbed: before %+v, after %+v", before, after)
	}

	w0, r0 := c.ipvsCounts(dc)
	if out := c.apply(changed); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-applying the same file said %q, want unchanged", out)
	}
	// Two comparisons of the table with the kernel's since: the periodic
	// one (every 5 s) at least once, and each must find nothing to write.
	c.eventually("two reconciles on the DC after the no-op apply", 30*time.Second, func() (bool, error) {
		_, r := c.ipvsCounts(dc)
		return r >= r0+2, nil
	})
	w1, _ := c.ipvsCounts(dc)
	if w1 != w0 {
		t.Errorf("a no-op apply made %d IPVS writes, want 0", w1-w0)
	}
	figure("lab_noop_apply_ipvs_writes", float64(w1-w0), "count")
	t.Logf("the DC's table:\n%s", c.cli(dc, "ipvs"))
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// nodeSysctls are the settings the agent makes on every node (realserver's
// table), for an interface dev besides "all".
func nodeSysctls(dev string) []string {
	return []string{
		"net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce",
		"net.ipv4.conf." + dev + ".arp_ignore", "net.ipv4.conf." + dev + ".arp_announce",
		"net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template",
		// The connection sync's (sync_threshold is a vector: sysctl -n
		// prints it as two fields, which sysctls cannot pair with a key).
		"net.ipv4.vs.backup_only", "net.ipv4.vs.sync_persist_mode", "net.ipv4.vs.sync_refresh_period", "net.ipv4.vs.conn_reuse_mode",
	}
}

// sysctls reads keys in node n's namespace.
func (c *rcluster) sysctls(n string, keys ...string) map[string]string {
	c.t.Helper()
	out := strings.Fields(c.l.Run(n, append([]string{"sysctl", "-n"}, keys...)...))
	if len(out) != len(keys) {
		c.t.Fatalf("sysctl %v in %s: %q", keys, n, out)
	}
	m := map[string]string{}
	for i, k := range keys {
		m[k] = out[i]
	}
	return m
}

// labSpecWide is labSpec plus what the README promises the kernel gets
// as written: persistence with a netmask, a UDP service, and a VIP on a
// second interface.
var labSpecWide = strings.Replace(labSpec, "services:\n", `  - address: 172.95.70.100
    interface: eth1
services:
`, 1) + `  - name: sticky
    vip: 172.95.69.100
    port: 8443
    scheduler: sh
    persistence: 20s
    persistence_netmask: 255.255.255.0
    real_servers: all-nodes
  - name: dns
    vip: 172.95.69.100
    port: 53
    protocol: udp
    scheduler: wrr
    real_servers: all-nodes
  - name: side
    vip: 172.95.70.100
    port: 80
    scheduler: rr
    real_servers: all-nodes
`

// TestRaftlbSpecReachesTheKernel: what the README says reaches the
// kernels, read back from them rather than from the agent: persistence
// with its netmask and a UDP service in the DC's IPVS table (ipvsadm -Ln)
// and in no other node's; a VIP on an interface other than the default
// one, held there by the DC, on lo elsewhere, with that interface
// ARP-silenced on every node; the gratuitous ARP refreshed every 5 s, as
// the client sees it; another host announcing the VIP logged as an
// address conflict; and the sysctls an agent set put back when it stops.
func TestRaftlbSpecReachesTheKernel(t *testing.T) {
	c := newRaftlbCluster(t)
	eth1Before := map[string]map[string]string{}
	for _, n := range lab.Nodes() {
		// A second interface for the second VIP: a dummy device. Nothing
		// on the LAN reaches it; what is checked is how each node sets it.
		c.l.Run(n, "ip", "link", "add", "eth1", "type", "dummy")
		c.l.Run(n, "ip", "link", "set", "eth1", "up")
		eth1Before[n] = c.sysctls(n, "net.ipv4.conf.eth1.arp_ignore", "net.ipv4.conf.eth1.arp_announce")
	}
	c.apply(labSpecWide)
	dc := c.waitHealthy(lab.Nodes())
	side := netip.MustParseAddr("172.95.70.100")
	nodes := []string{lab.IP(lab.M30), lab.IP(lab.M40), lab.IP(lab.M50)}
	c.eventually("the DC's four services", 30*time.Second, func() (bool, error) {
		svcs, err := c.l.IPVS(dc)
		return len(svcs) == 4, err
	})
	svcs, err := c.l.IPVS(dc)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]struct {
		sched   string
		persist time.Duration
		mask    string
	}{
		"TCP 172.95.69.100:3128": {"rr", 0, ""},
		"TCP 172.95.69.100:8443": {"sh", 20 * time.Second, "255.255.255.0"},
		"UDP 172.95.69.100:53":   {"wrr", 0, ""},
		"TCP 172.95.70.100:80":   {"rr", 0, ""},
	} {
		s, ok := lab.FindService(svcs, key)
		if !ok {
			t.Errorf("the DC's table lacks %s:\n%s", key, c.l.Run(dc, "ipvsadm", "-Ln"))
			continue
		}
		if s.Scheduler != want.sched || s.Persistent != want.persist || s.Netmask != want.mask || !slices.Equal(destIPs(s), nodes) {
			t.Errorf("%s: scheduler %s, persistent %s, netmask %q, real servers %v; want %s, %s, %q, %v",
				key, s.Scheduler, s.Persistent, s.Netmask, destIPs(s), want.sched, want.persist, want.mask, nodes)
		}
	}
	for _, n := range lab.Nodes() {
		if n != dc {
			if svcs, err := c.l.IPVS(n); err != nil || len(svcs) != 0 {
				t.Errorf("non-DC %s has IPVS services %+v (%v)", n, svcs, err)
			}
		}
		onIface, err := c.ns[n].HasAddr("eth1", side)
		if err != nil {
			t.Fatal(err)
		}
		onLo, err := c.ns[n].HasAddr("lo", side)
		if err != nil {
			t.Fatal(err)
		}
		if onIface != (n == dc) || !onLo {
			t.Errorf("%s (DC %s): %s on eth1 %v, on lo %v", n, dc, side, onIface, onLo)
		}
		got := c.sysctls(n, "net.ipv4.conf.eth1.arp_ignore", "net.ipv4.conf.eth1.arp_announce")
		if got["net.ipv4.conf.eth1.arp_ignore"] != "1" || got["net.ipv4.conf.eth1.arp_announce"] != "2" {
			t.Errorf("%s: eth1 carries a VIP, but arp_ignore/arp_announce are %v, want 1 and 2", n, got)
		}
	}

	// The refresh: one gratuitous ARP per VIP every 5 s while DC, long
	// after the takeover burst.
	aw, err := c.l.StartARPWatch("arp-refresh", lab.VIP, "--duration", "11s")
	if err != nil {
		t.Fatal(err)
	}
	r, err := aw.Wait(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	fromDC := 0
	for _, a := range r.Announcements {
		if a.MAC != c.mac(dc) {
			t.Errorf("a gratuitous ARP for the VIP from %s, not the DC %s (%s)", a.MAC, dc, c.mac(dc))
		}
		fromDC++
	}
	if fromDC < 2 {
		t.Errorf("in 11 s the client saw %d gratuitous ARPs from the DC, want one every 5 s: %+v", fromDC, r.Announcements)
	}
	figure("lab_garp_refreshes_in_11s", float64(fromDC), "count")

	// Another host announcing the VIP is an address conflict, reported in
	// the DC's event stream.
	evs, err := c.events(dc)
	if err != nil {
		t.Fatal(err)
	}
	seen := lastSeq(evs)
	c.l.Run(lab.Client, c.l.Bin("raftlb-lab"), "garp", "--iface", "eth0", "--ip", lab.VIP)
	if err := lab.Eventually(30*time.Second, func() (bool, error) {
		evs, err := c.events(dc)
		for _, e := range evs {
			if e.Seq > seen && e.Type == "address_conflict" && e.VIP == lab.VIP {
				return true, nil
			}
		}
		return false, err
	}); err != nil {
		t.Errorf("no address_conflict event for %s from the DC %s after another host announced it: %v", lab.VIP, dc, err)
	}

	// A clean stop puts back what the agent changed.
	n := others(dc)[0]
	if err := c.agents[n].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.agents[n].Wait(30 * time.Second); err != nil {
		t.Fatalf("%s's agent did not exit cleanly: %v", n, err)
	}
	if got := c.sysctls(n, nodeSysctls("eth0")...); !maps.Equal(got, c.sysctls0[n]) {
		t.Errorf("%s after a clean stop: sysctls %v, want them as before the agent started: %v", n, got, c.sysctls0[n])
	}
	if got := c.sysctls(n, "net.ipv4.conf.eth1.arp_ignore", "net.ipv4.conf.eth1.arp_announce"); !maps.Equal(got, eth1Before[n]) {
		t.Errorf("%s after a clean stop: eth1 sysctls %v, want %v", n, got, eth1Before[n])
	}
	for _, dev := range []string{"eth0", "eth1", "lo"} {
		for _, ip := range []netip.Addr{vip, side} {
			if has, err := c.ns[n].HasAddr(dev, ip); err != nil || has {
				t.Errorf("%s after a clean stop still carries %s on %s (%v)", n, ip, dev, err)
			}
		}
	}
}
