//go:build lab

package lab_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// holdPort is the echo service held connections use: every node serves it
// (raftlb-lab serve --echo), balanced like the proxy.
const holdPort = "3129"

var labSpecHold = labSpec + `  - name: hold
    vip: 172.95.69.100
    port: 3129
    protocol: tcp
    scheduler: rr
    real_servers: all-nodes
`

// startEcho starts node n's echo service on holdPort.
func (c *rcluster) startEcho(n string) {
	c.t.Helper()
	c.starts["echo-"+n]++
	p, err := c.l.Start(n, fmt.Sprintf("echo-%s-%d", n, c.starts["echo-"+n]), c.l.Bin("raftlb-lab"), "serve", "--echo", "--name", n, "--port", holdPort, "--addr", "::")
	if err != nil {
		c.t.Fatal(err)
	}
	if err := p.WaitOutput("serving", 30*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// syncDaemons is what `ipvsadm -L --daemon` says node n's kernel runs.
func (c *rcluster) syncDaemons(n string) string {
	c.t.Helper()
	return strings.TrimSpace(c.l.Run(n, "ipvsadm", "-L", "--daemon"))
}

// heldCopies counts the established connections to the hold service in
// node n's IPVS connection table.
func (c *rcluster) heldCopies(n string) (int, error) {
	conns, err := c.l.IPVSConns(n)
	count := 0
	for _, cn := range conns {
		if cn.VIP == netip.MustParseAddrPort(lab.VIP+":"+holdPort) && cn.State == "ESTABLISHED" {
			count++
		}
	}
	return count, err
}

// TestRaftlbConnectionsSurvive: established connections live on when the
// DC fails. Nine connections through the VIP each send a line every
// 200 ms and wait for its echo (however long an outage lasts). The
// kernels' own state is the judge: the DC runs the sync daemon as master,
// the others as backup, and every backup holds all nine connections
// before the DC's cable is pulled. While the backups hold copies their
// kernels do not balance (backup_only): every connection keeps answering
// from its own server. After the pull, every connection whose real server
// survived answers again, from the same server, without a reset; those
// served by the cut-off DC are not judged.
func TestRaftlbConnectionsSurvive(t *testing.T) {
	c := newRaftlbCluster(t)
	for _, n := range lab.Nodes() {
		c.startEcho(n)
	}
	c.apply(labSpecHold)
	dc := c.waitHealthy(lab.Nodes())
	survivors := others(dc)
	c.eventually("the sync daemons: master on the DC, backup elsewhere", 30*time.Second, func() (bool, error) {
		ok := strings.Contains(c.syncDaemons(dc), "master sync daemon (mcast=eth0")
		for _, n := range survivors {
			ok = ok && strings.Contains(c.syncDaemons(n), "backup sync daemon (mcast=eth0")
		}
		return ok, nil
	})
	for _, n := range lab.Nodes() {
		if v := c.sysctls(n, "net.ipv4.vs.backup_only")["net.ipv4.vs.backup_only"]; v != "1" {
			t.Errorf("%s: backup_only = %s, want 1", n, v)
		}
	}

	const conns = 9
	hold, err := c.l.StartHold("hold-cable", lab.VIP+":"+holdPort, "--conns", fmt.Sprint(conns), "--interval", "200ms", "--timeout", "30s", "--duration", "25s")
	if err != nil {
		t.Fatal(err)
	}
	synced := time.Now()
	c.eventually("every backup to hold every connection", 30*time.Second, func() (bool, error) {
		for _, n := range survivors {
			if got, err := c.heldCopies(n); err != nil || got < conns {
				return false, err
			}
		}
		return true, nil
	})
	figure("lab_ipvs_sync_all_copied", ms(time.Since(synced)), "ms")

	t0 := time.Now()
	if err := c.l.CablePull(dc); err != nil {
		t.Fatal(err)
	}
	newDC, t1 := c.waitVIPOnInterface(survivors, 30*time.Second)
	r, err := hold.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	kept, judged := 0, 0
	for _, rec := range r.Records {
		if rec.Server == dc {
			continue // cut off with its server
		}
		judged++
		switch {
		case rec.Error != "" || rec.Waiting:
			t.Errorf("connection from port %d to %s broke: %s %s at %s (waiting %v)", rec.LocalPort, rec.Server, rec.Error, rec.Detail, rec.FailedAt.UTC().Format("15:04:05.000"), rec.Waiting)
		case !rec.LastAnswer.After(t1):
			t.Errorf("connection from port %d to %s: last answer at %s, before %s took the VIP at %s", rec.LocalPort, rec.Server, rec.LastAnswer.UTC().Format("15:04:05.000"), newDC, t1.UTC().Format("15:04:05.000"))
		default:
			kept++
		}
	}
	if judged == 0 {
		t.Errorf("no connection went to a surviving server: %+v", r.Servers)
	}
	t.Logf("DC %s pulled at %s; %s took the VIP after %s; %d of %d connections to surviving servers kept (servers %v); longest exchange per connection: %v",
		dc, t0.UTC().Format("15:04:05.000"), newDC, t1.Sub(t0), kept, judged, r.Servers, longest(r))
	figure("lab_conns_kept_cable_pull", float64(kept), "count")
	figure("lab_conns_judged_cable_pull", float64(judged), "count")
	compared.kept("conns_kept_cable_pull", "raftlb", kept, judged)
	if err := c.l.CablePlug(dc); err != nil {
		t.Fatal(err)
	}
	c.plannedMoveKeeps(t, c.waitHealthy(lab.Nodes()))
}

// plannedMoveKeeps: `raftlb dc move` with nine connections held keeps all
// of them — the old DC is a real server still — because it hands over only
// once the others hold copies (director/planned.go), which its log says.
func (c *rcluster) plannedMoveKeeps(t *testing.T, dc string) {
	const conns = 9
	hold, err := c.l.StartHold("hold-move", lab.VIP+":"+holdPort, "--conns", fmt.Sprint(conns), "--interval", "200ms", "--timeout", "30s", "--duration", "15s")
	if err != nil {
		t.Fatal(err)
	}
	to := others(dc)[0]
	t0 := time.Now()
	out := c.l.Run("", c.l.Bin("raftlb"), "dc", "move", "--api", "unix://"+c.sock(dc), to)
	moved := time.Now()
	if !strings.Contains(out, "the DC is now "+to) {
		t.Fatalf("dc move: %s", out)
	}
	r, err := hold.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	kept, broke, quiet := heldThrough(r, moved)
	for _, rec := range broke {
		t.Errorf("planned move: %s", brokeConn(rec))
	}
	for _, rec := range quiet {
		t.Errorf("planned move: connection from port %d to %s: last answer at %s, before the move returned", rec.LocalPort, rec.Server, rec.LastAnswer.UTC().Format("15:04:05.000"))
	}
	t.Logf("dc move %s → %s took %s; %d of %d connections kept (servers %v); longest exchange per connection: %v", dc, to, moved.Sub(t0), kept, conns, r.Servers, longest(r))
	figure("lab_conns_kept_dc_move", float64(kept), "count")
	compared.kept("conns_kept_planned_move", "raftlb", kept, conns)
	figure("lab_dc_move_returned", ms(moved.Sub(t0)), "ms")
}

// heldThrough sorts a hold's connections by what became of them across
// the instant at: kept (answered after it), broke (failed, or left
// waiting for an answer), or quiet (last answered before it).
func heldThrough(r lab.HoldReport, at time.Time) (kept int, broke, quiet []lab.HoldConn) {
	for _, rec := range r.Records {
		switch {
		case rec.Error != "" || rec.Waiting:
			broke = append(broke, rec)
		case !rec.LastAnswer.After(at):
			quiet = append(quiet, rec)
		default:
			kept++
		}
	}
	return kept, broke, quiet
}

// brokeConn says how a held connection broke.
func brokeConn(rec lab.HoldConn) string {
	return fmt.Sprintf("connection from port %d to %s broke: %s %s at %s (waiting %v)", rec.LocalPort, rec.Server, rec.Error, rec.Detail, rec.FailedAt.UTC().Format("15:04:05.000"), rec.Waiting)
}

func longest(r lab.HoldReport) []float64 {
	var out []float64
	for _, rec := range r.Records {
		out = append(out, rec.LongestExchangeMS)
	}
	return out
}
