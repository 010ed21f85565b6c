//go:build lab

package lab_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// keepalived beside raftlb: Debian's keepalived 2.2.7 set up as an expert
// would for the same three nodes, every one also a real server behind an
// ARP-silenced VIP on lo: VRRPv3 at 0.3 s adverts (its fastest setting
// that does not flap in this VM, LAB.md), nopreempt so a returning node
// does not take the VIP back, a firewall-mark service that marks only
// packets not coming from a director (so a packet the master forwarded is
// served, not balanced again), TCP_CHECK with raftlb's lab check timings
// (every 200 ms, 150 ms timeout, a server out after two failures), and
// its connection sync (lvs_sync_daemon, following the VRRP state) with
// backup_only. The
// same client, the same faults, in the same VM run as raftlb's scenarios:
// the figures compare.

// keepalivedSeconds is one of raftlb's lab check durations ("200ms") in
// keepalived's timer syntax (decimal seconds).
func keepalivedSeconds(d string) string {
	v, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return strconv.FormatFloat(v.Seconds(), 'f', -1, 64)
}

// keepalivedConf is one node's keepalived.conf.
func keepalivedConf(n string, priority int) string {
	var servers strings.Builder
	for _, m := range lab.Nodes() {
		fmt.Fprintf(&servers, `    real_server %s 3128 {
        weight 1
        TCP_CHECK {
            connect_port 3128
            connect_timeout %s
            retry %d
            delay_before_retry %s
        }
    }
`, lab.IP(m), keepalivedSeconds(checkTimeout), checkFall-1, keepalivedSeconds(checkInterval))
	}
	return fmt.Sprintf(`global_defs {
    router_id %s
    vrrp_version 3
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 3
    lvs_sync_daemon eth0 VI_1 id 51
}

vrrp_instance VI_1 {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int 0.3
    virtual_ipaddress {
        %s/32 dev eth0
    }
}

virtual_server fwmark 1 {
    delay_loop %s
    lb_algo rr
    lb_kind DR
    protocol TCP
%s}
`, n, priority, lab.VIP, keepalivedSeconds(checkInterval), servers.String())
}

// fwmarkRules marks what a client sends to the VIP's ports, and nothing a
// director forwarded (its source MAC is a node's).
func (c *rcluster) fwmarkRules() string {
	var macs []string
	for _, n := range lab.Nodes() {
		macs = append(macs, c.mac(n))
	}
	return fmt.Sprintf(`table ip kalab {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr %s tcp dport { %s, %s } ether saddr != { %s } meta mark set 1
    }
}
`, lab.VIP, port, holdPort, strings.Join(macs, ", "))
}

// newKeepalivedCluster sets up the three nodes for keepalived and starts
// it, and returns once one node is master with all three real servers in
// its table.
func newKeepalivedCluster(t *testing.T) *rcluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "keepalived-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &rcluster{t: t, l: lab.New(t), dir: dir, agents: map[string]*lab.Proc{}, serves: map[string]*lab.Proc{}, starts: map[string]int{}, ns: map[string]*lab.NS{}}
	for _, n := range append(lab.Nodes(), lab.Client) {
		h, err := lab.OpenNS(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		c.ns[n] = h
	}
	rules := filepath.Join(dir, "fwmark.nft")
	if err := os.WriteFile(rules, []byte(c.fwmarkRules()), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, n := range lab.Nodes() {
		c.startServe(n)
		c.startEcho(n)
		c.l.Run(n, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
			"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2",
			"net.ipv4.vs.expire_nodest_conn=1", "net.ipv4.vs.backup_only=1", "net.ipv4.vs.conn_reuse_mode=3")
		c.l.Run(n, "ip", "addr", "add", lab.VIP+"/32", "dev", "lo")
		c.l.Run(n, "nft", "-f", rules)
		conf := filepath.Join(dir, n+".conf")
		if err := os.WriteFile(conf, []byte(keepalivedConf(n, 100-10*i)), 0o644); err != nil {
			t.Fatal(err)
		}
		c.startKeepalived(n)
	}
	c.keepalivedMaster(60 * time.Second)
	return c
}

// keepalivedMaster waits until exactly one node carries the VIP on eth0
// and balances over the three real servers, and returns it.
func (c *rcluster) keepalivedMaster(timeout time.Duration) string {
	c.t.Helper()
	var master string
	c.eventually("one keepalived master balancing over three real servers", timeout, func() (bool, error) {
		var masters []string
		for _, n := range lab.Nodes() {
			if c.has(n, "eth0") {
				masters = append(masters, n)
			}
		}
		if len(masters) != 1 {
			return false, nil
		}
		master = masters[0]
		out, err := c.l.Exec(master, "ipvsadm", "-Ln")
		return err == nil && strings.Contains(out, "FWM  1") && strings.Count(out, "Route") == 3, err
	})
	return master
}

// judgedTakeover waits until one of survivors carries the VIP on eth0,
// then — with no linger — until the client's ARP entry names the survivor
// that carries it then (keepalived may hand the VIP on once more: a backup
// of higher priority that hears a lower one's adverts forces a new
// election), or else for linger more of the judges; it stops the probe and
// the ARP watch and returns the new master, when the first survivor took
// the VIP and both reports.
func (c *rcluster) judgedTakeover(survivors []string, probe *lab.Probe, aw *lab.ARPWatch, linger time.Duration) (string, time.Time, lab.ProbeReport, lab.ARPReport) {
	c.t.Helper()
	newMaster, t1 := c.waitVIPOnInterface(survivors, 30*time.Second)
	if linger == 0 {
		first := newMaster
		c.eventually("the client's ARP entry to name the survivor carrying the VIP", 30*time.Second, func() (bool, error) {
			got, err := c.ns[lab.Client].NeighMAC("eth0", vip)
			if err != nil {
				return false, err
			}
			for _, n := range survivors {
				if c.has(n, "eth0") && got == c.mac(n) {
					newMaster = n
					return true, nil
				}
			}
			return false, nil
		})
		if newMaster != first {
			c.t.Logf("the VIP went to %s first, then to %s (a new election)", first, newMaster)
		}
	} else {
		c.eventually(fmt.Sprintf("%s of the judges after the takeover", linger), linger+30*time.Second, func() (bool, error) { return time.Since(t1) > linger, nil })
	}
	r, err := probe.Stop(30 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	wire, err := aw.Stop(30 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return newMaster, t1, r, wire
}

// TestKeepalivedCablePull: keepalived's master loses its cable while a
// client opens a connection every 20 ms (the same probe as raftlb's) and
// nine long-lived connections are held; the figures are its outage, the
// connections its sync kept, and the rounds in which two MACs answered.
func TestKeepalivedCablePull(t *testing.T) {
	c := newKeepalivedCluster(t)
	var outage, twoMAC, twoMACms []float64
	for run := 1; run <= runs(); run++ {
		master := c.keepalivedMaster(60 * time.Second)
		survivors := others(master)
		var hold *lab.Hold
		if run == 1 {
			var err error
			hold, err = c.l.StartHold("hold-keepalived", lab.VIP+":"+holdPort, "--conns", "9", "--interval", "200ms", "--timeout", "30s", "--duration", "25s")
			if err != nil {
				t.Fatal(err)
			}
			c.eventually("keepalived's backups to hold every connection", 30*time.Second, func() (bool, error) {
				for _, n := range survivors {
					if got, err := c.heldCopies(n); err != nil || got < 9 {
						return false, err
					}
				}
				return true, nil
			})
		}
		aw, err := c.l.StartARPWatch(fmt.Sprintf("arp-keepalived-%d", run), lab.VIP)
		if err != nil {
			t.Fatal(err)
		}
		probe := c.startProbe(fmt.Sprintf("probe-keepalived-%d", run), master)
		t0 := time.Now()
		if err := c.l.CablePull(master); err != nil {
			t.Fatal(err)
		}
		newMaster, t1, r, wire := c.judgedTakeover(survivors, probe, aw, 0)
		t.Logf("keepalived run %d: master %s pulled; %s took the VIP after %s; outage %.0f ms (%d failures %v); two MACs in %d rounds",
			run, master, newMaster, t1.Sub(t0), r.LongestOutageMS, r.Failures, r.Errors, wire.TwoMACRounds)
		outage = append(outage, r.LongestOutageMS)
		twoMAC = append(twoMAC, float64(wire.TwoMACRounds))
		twoMACms = append(twoMACms, wire.LongestTwoMACMS())
		if hold != nil {
			h, err := hold.Wait(60 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			kept, judged := 0, 0
			for _, rec := range h.Records {
				if rec.Server == master {
					continue
				}
				judged++
				if rec.Error == "" && !rec.Waiting && rec.LastAnswer.After(t1) {
					kept++
				}
			}
			t.Logf("keepalived: %d of %d connections to surviving servers kept (servers %v)", kept, judged, h.Servers)
			figure("lab_keepalived_conns_kept_cable_pull", float64(kept), "count")
			figure("lab_keepalived_conns_judged_cable_pull", float64(judged), "count")
			compared.kept("conns_kept_cable_pull", "keepalived", kept, judged)
		}
		if err := c.l.CablePlug(master); err != nil {
			t.Fatal(err)
		}
	}
	c.keepalivedMaster(60 * time.Second)
	figures("lab_keepalived_cable_pull_outage", outage, "ms")
	figures("lab_keepalived_cable_pull_two_mac_rounds", twoMAC, "count")
	compared.keepalived("cable_pull_outage", "ms", outage)
	compared.keepalived("cable_pull_two_macs", "ms", twoMACms)
}

// startKeepalived starts (or, after a fault, restarts) node n's keepalived
// with the configuration newKeepalivedCluster wrote.
func (c *rcluster) startKeepalived(n string) {
	c.t.Helper()
	c.starts["keepalived-"+n]++
	conf := filepath.Join(c.dir, n+".conf")
	p, err := c.l.Start(n, fmt.Sprintf("keepalived-%s-%d", n, c.starts["keepalived-"+n]), "keepalived", "--dont-fork", "--log-console", "--log-detail", "-f", conf,
		"-p", filepath.Join(c.dir, n+".pid"), "-r", filepath.Join(c.dir, n+"-vrrp.pid"), "-c", filepath.Join(c.dir, n+"-checkers.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.agents[n] = p
}

// TestKeepalivedStopAndKill: keepalived's master stopped cleanly (SIGTERM:
// it sends a priority-0 advert and removes the VIP), killed (SIGKILL:
// nothing removes the VIP from its interface, so its kernel goes on
// answering ARP beside the new master's) and frozen (SIGSTOP to all its
// processes: the same, for as long as it stays stopped), with the same
// probe and the same wire judge as raftlb's graceful stop and nemesis kill
// and freeze classes. The judge watches for 2 s after the new master took
// the VIP.
func TestKeepalivedStopAndKill(t *testing.T) {
	c := newKeepalivedCluster(t)
	for _, name := range []string{"graceful_stop", "killed", "frozen"} {
		kill := name != "graceful_stop"
		var outage, twoMAC, twoMACms []float64
		for run := 1; run <= runs(); run++ {
			master := c.keepalivedMaster(60 * time.Second)
			aw, err := c.l.StartARPWatch(fmt.Sprintf("arp-keepalived-%s-%d", name, run), lab.VIP)
			if err != nil {
				t.Fatal(err)
			}
			probe := c.startProbe(fmt.Sprintf("probe-keepalived-%s-%d", name, run), master)
			t0 := time.Now()
			switch name {
			case "killed":
				if err := c.agents[master].Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			case "frozen":
				if err := c.agents[master].Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			default:
				if err := c.agents[master].Stop(30 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			newMaster, t1, r, wire := c.judgedTakeover(others(master), probe, aw, 2*time.Second)
			t.Logf("keepalived %s run %d: master %s; %s took the VIP after %s; outage %.0f ms (%d failures %v); two MACs in %d rounds, the old master's VIP still on eth0: %v",
				name, run, master, newMaster, t1.Sub(t0), r.LongestOutageMS, r.Failures, r.Errors, wire.TwoMACRounds, c.has(master, "eth0"))
			outage = append(outage, r.LongestOutageMS)
			twoMAC = append(twoMAC, float64(wire.TwoMACRounds))
			twoMACms = append(twoMACms, wire.LongestTwoMACMS())
			if kill {
				c.agents[master].Kill() // a frozen keepalived is ended the same way
				<-c.agents[master].Done()
				if c.has(master, "eth0") {
					c.l.Run(master, "ip", "addr", "del", lab.VIP+"/32", "dev", "eth0")
				}
			}
			c.startKeepalived(master)
		}
		figures("lab_keepalived_"+name+"_outage", outage, "ms")
		figures("lab_keepalived_"+name+"_two_mac_rounds", twoMAC, "count")
		compared.keepalived(name+"_outage", "ms", outage)
		compared.keepalived(name+"_two_macs", "ms", twoMACms)
	}
}

// markDests is keepalived's table on n: the real servers of its
// firewall-mark service.
func (c *rcluster) markDests(n string) map[netip.AddrPort]int {
	c.t.Helper()
	d, _, err := lab.IPVSMarkDests(n, 1)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// TestKeepalivedDeadRealServer: one real server's service is black-holed
// (its packets dropped silently, as raftlb's
// TestHealthBlackholedServerLeaves does), with the same check timings:
// the time until it leaves the master's table. Only the master's checks
// are counted (every node's keepalived checks every server).
func TestKeepalivedDeadRealServer(t *testing.T) {
	c := newKeepalivedCluster(t)
	var removal []float64
	for run := 1; run <= runs(); run++ {
		master := c.keepalivedMaster(60 * time.Second)
		n := others(master)[run%2]
		hole, err := c.l.Blackhole(n, "blackhole", "input", fmt.Sprintf("ip saddr %s tcp flags & (syn|ack) == syn", lab.IP(master)), "tcp dport 3128")
		if err != nil {
			t.Fatal(err)
		}
		// A firewall-mark service's real servers have no port.
		key := netip.AddrPortFrom(netip.MustParseAddr(lab.IP(n)), 0)
		if _, ok := c.markDests(master)[key]; !ok {
			t.Fatalf("%s is not in the master %s's table before the hole: %v", key, master, c.markDests(master))
		}
		t0 := time.Now()
		rm := c.waitRemovalFrom(func() map[netip.AddrPort]int { return c.markDests(master) }, key, hole)
		if err := hole.Remove(); err != nil {
			t.Fatal(err)
		}
		c.eventually(n+" back in keepalived's table", 30*time.Second, func() (bool, error) {
			_, ok := c.markDests(master)[key]
			return ok, nil
		})
		t.Logf("keepalived run %d: %s black-holed: out of the master %s's table after %s, between %d and %d failed checks (the count after the last table that had it, and after the first that did not)",
			run, n, master, rm.at.Sub(t0), rm.atMost, rm.atLeast)
		removal = append(removal, ms(rm.at.Sub(t0)))
	}
	figures("lab_keepalived_blackhole_removal", removal, "ms")
	compared.keepalived("dead_real_server_removal", "ms", removal)
}

// TestKeepalivedPlannedMove: the master is stopped as an operator moves
// the VIP for maintenance (SIGTERM, as systemctl stop sends: a priority-0
// advert, then it lets go), with nine connections held and every backup
// holding their synced copies first; the figure is how many live on, the
// counterpart of raftlb's `dc move` (plannedMoveKeeps). nopreempt keeps
// the VIP where it went when the old master returns.
func TestKeepalivedPlannedMove(t *testing.T) {
	c := newKeepalivedCluster(t)
	master := c.keepalivedMaster(60 * time.Second)
	const conns = 9
	hold, err := c.l.StartHold("hold-keepalived-move", lab.VIP+":"+holdPort, "--conns", fmt.Sprint(conns), "--interval", "200ms", "--timeout", "30s", "--duration", "15s")
	if err != nil {
		t.Fatal(err)
	}
	c.eventually("keepalived's backups to hold every connection", 30*time.Second, func() (bool, error) {
		for _, n := range others(master) {
			if got, err := c.heldCopies(n); err != nil || got < conns {
				return false, err
			}
		}
		return true, nil
	})
	t0 := time.Now()
	if err := c.agents[master].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	newMaster, moved := c.waitVIPOnInterface(others(master), 30*time.Second)
	r, err := hold.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	kept, broke, _ := heldThrough(r, moved)
	for _, rec := range broke {
		t.Logf("keepalived planned move: %s", brokeConn(rec))
	}
	t.Logf("keepalived planned move: %s stopped, %s took the VIP after %s; %d of %d connections kept (servers %v)", master, newMaster, moved.Sub(t0), kept, conns, r.Servers)
	figure("lab_keepalived_conns_kept_planned_move", float64(kept), "count")
	compared.kept("conns_kept_planned_move", "keepalived", kept, conns)
	c.startKeepalived(master)
	c.keepalivedMaster(60 * time.Second)
}
