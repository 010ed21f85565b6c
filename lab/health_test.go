//go:build lab

package lab_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// Health-check settings of the scenarios below, printed with the figures:
// a probe every 200 ms with a 150 ms timeout; two failures take a server
// out, two successes bring it back.
const (
	checkInterval = "200ms"
	checkTimeout  = "150ms"
	checkRise     = 2
	checkFall     = 2
)

// healthSpec is labSpec with a tcp check on its service.
func healthSpec(onFail string) string {
	return labSpec + fmt.Sprintf(`    health_check:
      type: tcp
      interval: %s
      timeout: %s
      rise: %d
      fall: %d
      on_fail: %s
`, checkInterval, checkTimeout, checkRise, checkFall, onFail)
}

// dests reads the DC's real servers for vip:port through netlink.
func (c *rcluster) dests(dc string, p uint16) map[netip.AddrPort]int {
	c.t.Helper()
	d, _, err := lab.IPVSDests(dc, vip, p)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// waitDest polls (every 5 ms) until cond holds for the DC's entry of
// server (present, weight) and returns when.
func (c *rcluster) waitDest(dc, server string, p uint16, what string, cond func(present bool, weight int) bool) time.Time {
	c.t.Helper()
	key := netip.AddrPortFrom(netip.MustParseAddr(lab.IP(server)), p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		w, ok := c.dests(dc, p)[key]
		if cond(ok, w) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s (DC %s table %v)", what, dc, c.dests(dc, p))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removal is when a server was seen to leave the DC's table, and what a
// packet counter of its failed checks says about how many it took.
type removal struct {
	at time.Time
	// atMost is the counter read right after the last table that still
	// had the server: at most fall checks had failed by then, plus those
	// that landed while the counter was read (slack); atLeast is the
	// counter read right after the first table without it: at least fall.
	atMost, atLeast int
	slack           int
}

// check reports a removal that did not take fall failed checks.
func (r removal) check(fall int) error {
	if r.atLeast < fall || r.atMost > fall+r.slack {
		return fmt.Errorf("between %d and %d failed checks before it left the table (the count after the last table that had it, and after the first that did not), want fall = %d (allowing %d more that land while the kernel is read)", r.atMost, r.atLeast, fall, r.slack)
	}
	return nil
}

// waitRemoval polls until server leaves the DC's table for port 3128 and
// returns when, with the counter read after each table read: reading the
// table and the counter each take a few hundred milliseconds under TCG,
// while the checks go on every interval.
func (c *rcluster) waitRemoval(dc, server string, counter *lab.PacketCounter) removal {
	c.t.Helper()
	key := netip.AddrPortFrom(netip.MustParseAddr(lab.IP(server)), 3128)
	return c.waitRemovalFrom(func() map[netip.AddrPort]int { return c.dests(dc, 3128) }, key, counter)
}

// waitRemovalFrom is waitRemoval for the table dests reads and the real
// server key (keepalived's firewall-mark service, whose real servers
// have no port).
func (c *rcluster) waitRemovalFrom(dests func() map[netip.AddrPort]int, key netip.AddrPort, counter *lab.PacketCounter) removal {
	c.t.Helper()
	interval, _ := time.ParseDuration(checkInterval)
	deadline := time.Now().Add(30 * time.Second)
	last := removal{}
	for {
		read := time.Now()
		_, present := dests()[key]
		at := time.Now()
		n, err := counter.Read()
		if err != nil {
			c.t.Fatal(err)
		}
		// A check in flight is counted before it fails; and every check
		// sent while the table and then the counter were read: the table
		// is the kernel's at some moment of its read, which under a loaded
		// TCG takes as long as the counter's.
		slack := 1 + int(time.Since(read)/interval) + 1
		if !present {
			last.at, last.atLeast, last.slack = at, int(n), max(last.slack, slack)
			return last
		}
		last.atMost, last.slack = int(n), slack
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s to leave the table %v", key, dests())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func present(ok bool, _ int) bool { return ok }
func absent(ok bool, _ int) bool  { return !ok }

// startHealthCluster is a cluster whose service is health-checked.
func startHealthCluster(t *testing.T, onFail string) (*rcluster, string) {
	c := newRaftlbCluster(t)
	c.apply(healthSpec(onFail))
	dc := c.waitHealthy(lab.Nodes())
	return c, dc
}

// TestHealthStoppedServiceLeavesAndReturns: the service on one node stops
// (the node stays up and in the cluster): the DC takes it out of the
// kernel table after `fall` refused checks, the others keep serving, and it
// comes back after `rise` successes once the service restarts.
func TestHealthStoppedServiceLeavesAndReturns(t *testing.T) {
	c, dc := startHealthCluster(t, "remove")
	var removal, back []float64
	for run := 1; run <= runs(); run++ {
		n := others(dc)[run%2]
		// Every refused check is one RST from n to the DC for port 3128.
		refusals, err := c.l.CountPackets(n, "refusals", "output", fmt.Sprintf("ip daddr %s tcp sport 3128 tcp flags & rst == rst", lab.IP(dc)), "")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		c.serves[n].Kill()
		rm := c.waitRemoval(dc, n, refusals)
		t1 := rm.at
		if err := rm.check(checkFall); err != nil {
			t.Errorf("run %d: %s (refused): %v", run, n, err)
		}
		if err := refusals.Remove(); err != nil {
			t.Fatal(err)
		}
		r := c.probeBriefly(t, fmt.Sprintf("probe-stopped-%d", run))
		if r.Failures != 0 || r.Answers[n] != 0 {
			t.Errorf("run %d: with %s's service stopped: %d failures %v, answers %v; want the others to answer everything", run, n, r.Failures, r.Errors, r.Answers)
		}
		if st, err := c.status(dc); err != nil || !nodeOnline(st, n) {
			t.Errorf("run %d: %s must stay an online cluster member (status %+v, %v)", run, n, st, err)
		}
		t2 := time.Now()
		c.startServe(n)
		t3 := c.waitDest(dc, n, 3128, n+" back in the table", present)
		t.Logf("run %d: %s's service stopped: out of the table after %s; restarted: back after %s", run, n, t1.Sub(t0), t3.Sub(t2))
		removal = append(removal, ms(t1.Sub(t0)))
		back = append(back, ms(t3.Sub(t2)))
	}
	fmt.Printf("# health checks: tcp, interval %s, timeout %s, rise %d, fall %d\n", checkInterval, checkTimeout, checkRise, checkFall)
	figures("lab_health_refused_removal", removal, "ms")
	figures("lab_health_recovered_return", back, "ms")
}

func nodeOnline(st status, n string) bool {
	for _, nd := range st.Nodes {
		if nd.Name == n {
			return nd.Status == "online"
		}
	}
	return false
}

// TestHealthBlackholedServerLeaves: packets to one node's service are
// dropped silently (nftables, no RST): the DC's checks time out and the
// server leaves the table after `fall` timeouts.
func TestHealthBlackholedServerLeaves(t *testing.T) {
	c, dc := startHealthCluster(t, "remove")
	var removal []float64
	for run := 1; run <= runs(); run++ {
		n := others(dc)[run%2]
		// Every packet to the service is dropped, silently; each of the
		// DC's checks is one dropped SYN (its timeout is far below TCP's
		// first retransmission). Only the SYNs are counted: the last
		// check before the hole may be closing, and its FIN is
		// retransmitted into the hole.
		hole, err := c.l.Blackhole(n, "blackhole", "input", "tcp flags & (syn|ack) == syn", "tcp dport 3128")
		if err != nil {
			t.Fatal(err)
		}
		// Timed from when nft returns, the rule certainly in place:
		// starting a program in the VM takes 0.2–0.4 s under TCG.
		t0 := time.Now()
		rm := c.waitRemoval(dc, n, hole)
		t1 := rm.at
		if err := rm.check(checkFall); err != nil {
			t.Errorf("run %d: %s (black-holed): %v", run, n, err)
		}
		if err := hole.Remove(); err != nil {
			t.Fatal(err)
		}
		c.waitDest(dc, n, 3128, n+" back in the table", present)
		t.Logf("run %d: %s black-holed: out of the table after %s", run, n, t1.Sub(t0))
		removal = append(removal, ms(t1.Sub(t0)))
	}
	fmt.Printf("# health checks: tcp, interval %s, timeout %s, rise %d, fall %d\n", checkInterval, checkTimeout, checkRise, checkFall)
	figures("lab_health_blackhole_removal", removal, "ms")
	compared.raftlb("dead_real_server_removal", "ms", removal)
}

// TestHealthQuiescentKeepsWeightZero: with on_fail quiescent a failed
// server stays in the table at weight 0 (existing connections drain) and
// gets its weight back when it recovers.
func TestHealthQuiescentKeepsWeightZero(t *testing.T) {
	c, dc := startHealthCluster(t, "quiescent")
	n := others(dc)[0]
	c.serves[n].Kill()
	c.waitDest(dc, n, 3128, n+" at weight 0", func(ok bool, w int) bool { return ok && w == 0 })
	r := c.probeBriefly(t, "probe-quiescent")
	if r.Failures != 0 || r.Answers[n] != 0 {
		t.Errorf("with %s quiescent: %d failures %v, answers %v; want the others to answer everything", n, r.Failures, r.Errors, r.Answers)
	}
	c.startServe(n)
	c.waitDest(dc, n, 3128, n+" back at weight 1", func(ok bool, w int) bool { return ok && w == 1 })
}

// TestHealthFallbackWhenAllDown: with every node's service down, the
// fallback (sorry) server takes the traffic; it leaves again as soon as
// one real server recovers.
func TestHealthFallbackWhenAllDown(t *testing.T) {
	c, dc := startHealthCluster(t, "remove")
	for _, n := range lab.Nodes() {
		c.serves[n].Kill()
	}
	// The sorry server on the DC listens on the VIP only: the health
	// checks (to the node's own address) still fail, and the fallback
	// 127.0.0.1:3128 — local delivery on the DC — reaches it.
	sorry, err := c.l.Start(dc, "sorry", c.l.Bin("raftlb-lab"), "serve", "--name", "sorry", "--port", port, "--addr", lab.VIP)
	if err != nil {
		t.Fatal(err)
	}
	if err := sorry.WaitOutput("serving", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	fallback := netip.MustParseAddrPort("127.0.0.1:3128")
	c.eventually("only the fallback in the table", 30*time.Second, func() (bool, error) {
		d := c.dests(dc, 3128)
		_, ok := d[fallback]
		return ok && len(d) == 1, nil
	})
	r := c.probeBriefly(t, "probe-sorry")
	if r.Answers["sorry"] == 0 || r.Failures != 0 {
		t.Errorf("with all services down: answers %v, %d failures %v; want the sorry server", r.Answers, r.Failures, r.Errors)
	}
	sorry.Kill()
	back := others(dc)[0]
	c.startServe(back)
	c.eventually("the fallback to leave once "+back+" recovers", 30*time.Second, func() (bool, error) {
		d := c.dests(dc, 3128)
		_, fb := d[fallback]
		return !fb && len(d) == 1, nil
	})
	if r := c.probeBriefly(t, "probe-recovered"); r.Answers[back] == 0 || r.Failures != 0 {
		t.Errorf("after %s recovered: answers %v, %d failures %v", back, r.Answers, r.Failures, r.Errors)
	}
}

// TestHealthDigestMismatchLeaves: an HTTP check with keepalived's MD5
// digest: the node whose page changes leaves the table, and returns when
// the page is restored.
func TestHealthDigestMismatchLeaves(t *testing.T) {
	c := newRaftlbCluster(t)
	good := []byte("proxy ok\n")
	sum := md5.Sum(good)
	for _, n := range lab.Nodes() {
		f := filepath.Join(c.dir, "page-"+n)
		if err := os.WriteFile(f, good, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := c.l.Start(n, "http-"+n, c.l.Bin("raftlb-lab"), "serve", "--name", n, "--port", "8080", "--http", "--body-file", f)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitOutput("serving", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	spec := labSpec + fmt.Sprintf(`  - name: web
    vip: 172.95.69.100
    port: 8080
    scheduler: rr
    health_check:
      type: http
      path: /
      digest_md5: %s
      interval: %s
      timeout: %s
      rise: %d
      fall: %d
`, hex.EncodeToString(sum[:]), checkInterval, checkTimeout, checkRise, checkFall)
	c.apply(spec)
	dc := c.waitHealthy(lab.Nodes())
	c.eventually("three real servers on 8080", 30*time.Second, func() (bool, error) { return len(c.dests(dc, 8080)) == 3, nil })
	n := others(dc)[0]
	page := filepath.Join(c.dir, "page-"+n)
	if err := os.WriteFile(page, []byte("proxy DEFACED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitDest(dc, n, 8080, n+" out of the 8080 table", absent)
	// Any node shows why: the DC from its own checks, the others by
	// asking the DC.
	for _, from := range []string{dc, n} {
		st := c.cli(from, "status")
		if !strings.Contains(st, "down since") || !strings.Contains(st, "digest") {
			t.Errorf("status from %s does not show %s down and why:\n%s", from, n, st)
		}
	}
	if err := os.WriteFile(page, good, 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitDest(dc, n, 8080, n+" back in the 8080 table", present)
}

// TestHealthNoSpuriousChanges: two minutes without faults produce no
// health state change and no IPVS write. The judge counts changes from
// what it reads itself: the DC's kernel table, polled all along (a server
// that went down and came back is out of it for at least rise checks),
// and the server_up/server_down events of every agent's event stream.
func TestHealthNoSpuriousChanges(t *testing.T) {
	c, dc := startHealthCluster(t, "remove")
	seen := map[string]uint64{}
	for _, n := range lab.Nodes() {
		evs, err := c.events(n)
		if err != nil {
			t.Fatal(err)
		}
		seen[n] = lastSeq(evs)
	}
	table0 := c.dests(dc, 3128)
	// Every span in which the DC's table differs from table0.
	moved := lab.Watch([]string{dc}, 100*time.Millisecond, func(n string) (bool, error) {
		d, _, err := lab.IPVSDests(n, vip, 3128)
		return err == nil && !maps.Equal(d, table0), err
	})
	before, r0 := c.ipvsCounts(dc)
	start := time.Now()
	// A soak: the time itself is what is tested.
	time.Sleep(2 * time.Minute)
	after, r1 := c.ipvsCounts(dc)
	spans, werrs := moved.Stop()
	for _, err := range werrs {
		t.Errorf("watching the DC's table: %v", err)
	}
	// Not vacuous: the same DC compared its table with the kernel's all
	// along (every 5 s), and its checks ran.
	if st, err := c.status(dc); err != nil || st.DC != dc || r1 < r0+20 {
		t.Errorf("during the soak: DC %q (was %s, %v), %d reconciles; want the same DC and one every 5 s", st.DC, dc, err, r1-r0)
	}
	changes := 0
	for _, n := range lab.Nodes() {
		evs, err := c.events(n)
		if err != nil {
			t.Fatal(err)
		}
		// The agent keeps its recent events only: the oldest kept must
		// reach back to the soak's start, or some went uncounted.
		if len(evs) > 0 && evs[0].Seq > seen[n]+1 {
			t.Errorf("%s kept events %d on, not from %d: the soak's first ones are gone", n, evs[0].Seq, seen[n]+1)
		}
		for _, e := range evs {
			if e.Seq > seen[n] && (e.Type == "server_up" || e.Type == "server_down") {
				t.Logf("%s: %s %s %s at %s", n, e.Type, e.Service, e.Server, e.Time.Format(time.RFC3339Nano))
				changes++
			}
		}
	}
	figure("lab_health_spurious_changes_2min", float64(changes), "count")
	if changes != 0 || len(spans[dc]) != 0 || before != after {
		t.Errorf("in %s without faults: %d health state changes, the DC's table left %v %d times (%v), IPVS writes %d → %d; want none",
			time.Since(start).Round(time.Second), changes, table0, len(spans[dc]), spans[dc], before, after)
	}
}
