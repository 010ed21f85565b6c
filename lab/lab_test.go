//go:build lab

package lab_test

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftlb/raftlb/lab"
)

// TestMain refuses to run outside the VM: on a kernel without IPVS every
// scenario would fail in a confusing way, and on a real machine the tests
// would rewire the host's network.
func TestMain(m *testing.M) {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		fmt.Fprintln(os.Stderr, "lab: not inside the kernel lab (no /proc/net/ip_vs). "+
			"These tests run in a VM: use lab/run.sh [test flags].")
		os.Exit(1)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "lab: the lab tests need root (they create namespaces and IPVS services)")
		os.Exit(1)
	}
	// moby/ipvs (read through netlink by the scenarios) logs a failed
	// modprobe through logrus; the modules are loaded by lab/init.
	logrus.SetOutput(io.Discard)
	code := m.Run()
	compared.print(os.Stdout)
	os.Exit(code)
}

// TestLabSmokeManualDR proves the lab itself, without raftlb: LVS direct
// routing set up by hand as LAB.md describes. m30 is the director with the
// VIP on eth0 and an IPVS rr service; m40 and m50 are real servers with
// the VIP on lo, ARP-silenced, serving their names on port 80. If this
// fails, a raftlb scenario's failure says nothing about raftlb.
func TestLabSmokeManualDR(t *testing.T) {
	l := lab.New(t)
	vipPort := lab.VIP + ":80"

	l.Run(lab.M30, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
	l.Run(lab.M30, "ipvsadm", "-A", "-t", vipPort, "-s", "rr")
	for _, rs := range []string{lab.M40, lab.M50} {
		l.Run(lab.M30, "ipvsadm", "-a", "-t", vipPort, "-r", lab.IP(rs)+":80", "-g")

		if err := l.SilenceARP(rs); err != nil {
			t.Fatal(err)
		}
		l.Run(rs, "ip", "addr", "add", lab.VIP+"/32", "dev", "lo")
		p, err := l.Start(rs, "serve-"+rs, l.Bin("raftlb-lab"), "serve", "--name", rs, "--port", "80")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitOutput("serving", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	probe, err := l.StartProbe("probe", vipPort, "--interval", "20ms", "--timeout", "1s", "--duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	r, err := probe.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe: %d attempts, %d failures, answers %v, errors %v", r.Attempts, r.Failures, r.Answers, r.Errors)
	fmt.Printf("figure: lab_smoke_requests = %d count\n", r.Successes)

	// Round robin over two real servers: both answered, and nothing failed.
	if r.Answers[lab.M40] == 0 || r.Answers[lab.M50] == 0 {
		t.Errorf("answers %v: want both %s and %s", r.Answers, lab.M40, lab.M50)
	}
	if r.Failures != 0 {
		t.Errorf("%d of %d requests failed (%v)", r.Failures, r.Attempts, r.Errors)
	}

	// Only the director answered ARP for the VIP.
	dirMAC, err := l.MAC(lab.M30, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.ClientARP(lab.VIP); err != nil || got != dirMAC {
		t.Errorf("client's ARP entry for the VIP = %q (%v); want the director's %s", got, err, dirMAC)
	}

	// Direct routing: requests went through the director, replies did not.
	// The kernel folds per-CPU counters into the totals every couple of
	// seconds, so wait until the probe's connections show.
	var svc lab.Service
	err = lab.Eventually(30*time.Second, func() (bool, error) {
		svcs, err := l.IPVS(lab.M30)
		if err != nil {
			return false, err
		}
		var ok bool
		svc, ok = lab.FindService(svcs, "TCP "+vipPort)
		if !ok {
			return false, fmt.Errorf("director's IPVS table has no TCP %s: %+v", vipPort, svcs)
		}
		return svc.Conns >= uint64(r.Successes), nil
	})
	if err != nil {
		t.Fatalf("waiting for the director's counters: %v (last %+v)", err, svc)
	}
	if svc.InPkts == 0 || svc.OutPkts != 0 {
		t.Errorf("director's counters InPkts=%d OutPkts=%d; want InPkts > 0 and OutPkts 0 (DR)", svc.InPkts, svc.OutPkts)
	}
	for _, rs := range []string{lab.M40, lab.M50} {
		d, ok := svc.Dest(lab.IP(rs) + ":80")
		if !ok || d.Forward != "Route" || d.Conns == 0 {
			t.Errorf("real server %s in the director's table: %+v (found %v); want Route with connections", rs, d, ok)
		}
	}
}

// TestKernelResetsAHandshakeToARemovedServer is the kernel fact behind a
// stopping node's drain (cmd/raftlb: it asks for weight 0 before it leaves
// gossip): with expire_nodest_conn=1, as raftlb sets it, the next packet of
// a connection whose real server was removed from the director's table
// meets the director's own stack, which resets it; the same connection to
// a real server set to weight 0 is still forwarded, and answered. The
// handshake is held open by dropping its last ACK at the director until the
// table has changed; the real server's retransmitted SYN-ACK then draws the
// client's ACK again.
func TestKernelResetsAHandshakeToARemovedServer(t *testing.T) {
	vipPort := lab.VIP + ":80"
	rs := lab.IP(lab.M40) + ":80"
	for _, tc := range []struct {
		name   string
		change []string
		want   string // the probe's error class, or the answer
	}{
		{"removed", []string{"-d", "-t", vipPort, "-r", rs}, "reset"},
		{"drained", []string{"-e", "-t", vipPort, "-r", rs, "-g", "-w", "0"}, lab.M40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lab.New(t)
			if err := l.Sysctl(lab.M30, "net.ipv4.vs.expire_nodest_conn=1"); err != nil {
				t.Fatal(err)
			}
			l.Run(lab.M30, "ip", "addr", "add", lab.VIP+"/32", "dev", "eth0")
			l.Run(lab.M30, "ipvsadm", "-A", "-t", vipPort, "-s", "rr")
			l.Run(lab.M30, "ipvsadm", "-a", "-t", vipPort, "-r", rs, "-g")
			if err := l.SilenceARP(lab.M40); err != nil {
				t.Fatal(err)
			}
			l.Run(lab.M40, "ip", "addr", "add", lab.VIP+"/32", "dev", "lo")
			p, err := l.Start(lab.M40, "serve-"+lab.M40, l.Bin("raftlb-lab"), "serve", "--name", lab.M40, "--port", "80")
			if err != nil {
				t.Fatal(err)
			}
			if err := p.WaitOutput("serving", 30*time.Second); err != nil {
				t.Fatal(err)
			}
			// The handshake's last ACK (a pure ACK: the client sends
			// nothing before the server speaks) never reaches the real
			// server while this rule stands.
			hold, err := l.CountPackets(lab.M30, "hold", "input", fmt.Sprintf("ip daddr %s tcp dport 80 tcp flags == ack", lab.VIP), "drop")
			if err != nil {
				t.Fatal(err)
			}
			probe, err := l.StartProbe("probe-"+tc.name, vipPort, "--count", "1", "--timeout", "10s", "--duration", "20s")
			if err != nil {
				t.Fatal(err)
			}
			if err := lab.Eventually(10*time.Second, func() (bool, error) {
				n, err := hold.Read()
				return n > 0, err
			}); err != nil {
				t.Fatalf("the handshake's ACK never reached the director: %v", err)
			}
			l.Run(lab.M30, append([]string{"ipvsadm"}, tc.change...)...)
			if err := hold.Remove(); err != nil {
				t.Fatal(err)
			}
			r, err := probe.Wait(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Records) != 1 {
				t.Fatalf("the probe made %d attempts, want 1: %+v", len(r.Records), r.Records)
			}
			a := r.Records[0]
			got := a.Error
			if a.OK {
				got = a.Answer
			}
			t.Logf("%s: the held connection ended %q after %.0f ms (%s)", tc.name, got, a.TookMS, a.Detail)
			if got != tc.want {
				t.Errorf("the connection held open across the table change ended %q (%s), want %q", got, a.Detail, tc.want)
			}
		})
	}
}
