//go:build lab

package lab_test

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
			if !onIface || onLo {
				t.Errorf("DC %s: VIP on eth0=%v lo=%v, want eth0 only", n, onIface, onLo)
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
// bridge). A new DC holds the VIP, the client's ARP entry moves to its MAC
// (gratuitous ARP), the dead node leaves the table, the survivors serve,
// and the cut-off node gives up the VIP on its own.
func TestRaftlbCablePull(t *testing.T) {
	c := newRaftlbCluster(t)
	var outage, takeover, arpSwitch []float64
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		survivors := others(dc)
		probe := c.startProbe("probe-cable-"+dc, dc)
		t0 := time.Now()
		if err := c.l.CablePull(dc); err != nil {
			t.Fatal(err)
		}
		newDC, t1 := c.waitVIPOnInterface(survivors, 30*time.Second)
		t2 := c.waitClientARP(c.mac(newDC), 30*time.Second)
		// Invariant 3: the cut-off DC loses quorum and releases the VIP.
		c.eventually("the cut-off DC to release the VIP", 10*time.Second, func() (bool, error) {
			return !c.has(dc, "eth0"), nil
		})
		want := []string{lab.IP(survivors[0]), lab.IP(survivors[1])}
		c.eventually("the dead node to leave the new DC's table", 30*time.Second, func() (bool, error) {
			s, ok, err := c.table(newDC)
			return ok && slices.Equal(destIPs(s), want), err
		})
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		after := c.probeBriefly(t, "probe-cable-after-"+dc)
		if after.Answers[dc] != 0 || after.Answers[survivors[0]] == 0 || after.Answers[survivors[1]] == 0 || after.Failures != 0 {
			t.Errorf("after the cable pull answers %v (failures %d): want only and both of %v", after.Answers, after.Failures, survivors)
		}
		t.Logf("run %d: DC %s pulled at %s; %s took the VIP after %s, client ARP after %s; outage %.0f ms (%d failures %v)",
			run, dc, t0.UTC().Format("15:04:05.000"), newDC, t1.Sub(t0), t2.Sub(t0), r.LongestOutageMS, r.Failures, r.Errors)
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		arpSwitch = append(arpSwitch, ms(t2.Sub(t0)))
		if err := c.l.CablePlug(dc); err != nil {
			t.Fatal(err)
		}
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_cable_pull_outage", outage, "ms")
	figures("lab_cable_pull_vip_takeover", takeover, "ms")
	figures("lab_cable_pull_client_arp_switch", arpSwitch, "ms")
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

// TestRaftlbGracefulStop: SIGTERM to the DC's agent hands leadership
// over; the VIP moves and no client request goes unanswered: no timeout,
// no refusal, no unreachable VIP. The old DC stops balancing before the
// transfer and answers with its own service until it sees the successor's
// gratuitous ARP; how long both carry the VIP is reported. A connection
// that the old DC forwarded to another node and whose next packet meets
// the old DC's local stack (or the new DC, after the client's ARP
// switched) is reset: only IPVS connection sync would carry it over. Such
// resets are counted and reported, not hidden.
func TestRaftlbGracefulStop(t *testing.T) {
	c := newRaftlbCluster(t)
	var outage, takeover, twoMACs []float64
	failed, resets := 0, 0
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		probe := c.startProbe("probe-graceful-"+dc, dc)
		t0 := time.Now()
		if err := c.agents[dc].Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		newDC, t1 := c.waitVIPOnInterface(others(dc), 30*time.Second)
		// Invariant 1's window: both nodes carry the VIP on eth0 (both
		// answer ARP) until the old DC has seen the successor announce it.
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
		c.eventually("the stopped node to leave the new DC's table", 30*time.Second, func() (bool, error) {
			s, ok, err := c.table(newDC)
			return ok && !slices.Contains(destIPs(s), lab.IP(dc)), err
		})
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if c.has(dc, "eth0") || c.has(dc, "lo") {
			t.Errorf("the stopped node %s still carries the VIP (eth0=%v lo=%v)", dc, c.has(dc, "eth0"), c.has(dc, "lo"))
		}
		t.Logf("run %d: DC %s stopped; %s took the VIP after %s; both held it for %s; %d of %d requests failed %v, longest outage %.0f ms",
			run, dc, newDC, t1.Sub(t0), t2.Sub(t1), r.Failures, r.Attempts, r.Errors, r.LongestOutageMS)
		gap := r.Failures - r.Errors["reset"]
		if gap != 0 {
			t.Errorf("run %d: %d requests went unanswered during a graceful stop (%v), want none", run, gap, r.Errors)
		}
		failed += gap
		resets += r.Errors["reset"]
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		twoMACs = append(twoMACs, ms(t2.Sub(t1)))
		c.startAgent(dc) // rejoins from its data dir, without a join
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_graceful_stop_outage", outage, "ms")
	figures("lab_graceful_stop_vip_takeover", takeover, "ms")
	figures("lab_graceful_stop_two_macs_window", twoMACs, "ms")
	figure("lab_graceful_stop_unanswered_requests", float64(failed), "count")
	figure("lab_graceful_stop_reset_connections", float64(resets), "count")
}

// TestRaftlbCrashRestart: kill -9 of the DC's agent while its kernel stays
// up: the VIP and the IPVS rules stay behind in that kernel. A new DC
// takes over; the agent is restarted (as a supervisor would) and gives the
// VIP back to lo at start-up. Reports how long two nodes carried the VIP on
// their interface — both answer ARP for it during that window.
func TestRaftlbCrashRestart(t *testing.T) {
	c := newRaftlbCluster(t)
	var outage, takeover, twoMACs []float64
	for run := 1; run <= runs(); run++ {
		dc := c.waitHealthy(lab.Nodes())
		probe := c.startProbe("probe-crash-"+dc, dc)
		t0 := time.Now()
		c.agents[dc].Kill()
		newDC, t1 := c.waitVIPOnInterface(others(dc), 30*time.Second)
		if !c.has(dc, "eth0") {
			t.Logf("run %d: the crashed agent's VIP was already gone from %s", run, dc)
		}
		c.startAgent(dc)
		c.eventually("the restarted agent to take the VIP off eth0", 30*time.Second, func() (bool, error) {
			return !c.has(dc, "eth0"), nil
		})
		t2 := time.Now()
		c.waitClientARP(c.mac(newDC), 30*time.Second)
		c.eventually("the restarted node to carry the VIP on lo and no IPVS service", 30*time.Second, func() (bool, error) {
			_, ok, err := c.table(dc)
			return c.has(dc, "lo") && !ok, err
		})
		r, err := probe.Stop(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: DC %s killed; %s took the VIP after %s; two nodes carried it for %s; outage %.0f ms (%d failures %v)",
			run, dc, newDC, t1.Sub(t0), t2.Sub(t1), r.LongestOutageMS, r.Failures, r.Errors)
		outage = append(outage, r.LongestOutageMS)
		takeover = append(takeover, ms(t1.Sub(t0)))
		twoMACs = append(twoMACs, ms(t2.Sub(t1)))
	}
	c.waitHealthy(lab.Nodes())
	figures("lab_crash_outage", outage, "ms")
	figures("lab_crash_vip_takeover", takeover, "ms")
	figures("lab_crash_two_macs_window", twoMACs, "ms")
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
	third := c.probePorts(t, "probe-ports-new-dc", sport, n)
	if third.Successes != n || third.Answers[dc] != 0 {
		t.Errorf("reusing the ports after the DC changed: %d of %d answered, answers %v, errors %v; want all answered by the survivors",
			third.Successes, n, third.Answers, third.Errors)
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
		if n == dc && (!onIface || onLo || !ok) || n != dc && (onIface || !onLo || ok) {
			t.Errorf("%s (DC %s): IPv6 VIP on eth0=%v lo=%v, IPVS service %v", n, dc, onIface, onLo, ok)
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

	w0 := c.ipvsWrites(dc)
	if out := c.apply(changed); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-applying the same file said %q, want unchanged", out)
	}
	// Wait past the director's periodic reconcile (5 s), which must also
	// find nothing to write.
	time.Sleep(6 * time.Second)
	if w1 := c.ipvsWrites(dc); w1 != w0 {
		t.Errorf("a no-op apply made %d IPVS writes, want 0", w1-w0)
	}
	figure("lab_noop_apply_ipvs_writes", float64(c.ipvsWrites(dc)-w0), "count")
	t.Logf("the DC's table:\n%s", c.cli(dc, "ipvs"))
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
