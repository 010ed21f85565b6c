package api

import (
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// sampleStatus is a healthy three-node cluster with one service.
func sampleStatus() status.Status {
	return status.Status{
		Time:            time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Node:            "n1",
		DC:              "n2",
		Term:            7,
		Quorum:          true,
		SpecVersion:     4,
		NodesConfigured: 3,
		Nodes: []cluster.NodeView{
			{Name: "n1", Address: "10.0.0.1", Status: "online", Role: "member", Gossip: "alive", Dataplane: "kernel"},
			{Name: "n2", Address: "10.0.0.2", Status: "online", Role: "DC", Gossip: "alive", Dataplane: "kernel"},
			{Name: "n3", Address: "10.0.0.3", Status: "offline", Role: "member", Gossip: "gone"},
		},
		VIPs: []status.VIPStatus{{
			Address: "172.95.69.100", Interface: "eth0", HeldBy: "n2",
			Holder:   &fsm.Holder{Node: "n2", Term: 7, Since: time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)},
			ThisNode: &status.Kernel{Interface: "eth0", OnLo: true},
		}},
		Services: []status.ServiceStatus{{
			Name: "squid", VIP: "172.95.69.100", Port: 3128, Protocol: "tcp", Scheduler: "rr",
			Forwarding: "route", Persistence: "20s", Fallback: "127.0.0.1:3128", HealthCheck: "tcp",
			RealServers: []status.RealServerStatus{
				{Address: "10.0.0.1", Port: 3128, Weight: 1, Node: "n1"},
				{Address: "10.0.0.2", Port: 3128, Weight: 1, Node: "n2"},
			},
		}},
		Policy: spec.Policy{NoQuorum: "stop", Takeover: "lease"},
	}
}

func render(t *testing.T, st status.Status) string {
	t.Helper()
	var b strings.Builder
	if err := RenderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lineWith returns the first line containing all the fragments, in order.
func lineWith(out string, fragments ...string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, f := range fragments {
			i := strings.Index(rest, f)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(f):]
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

func TestRenderStatusWithQuorum(t *testing.T) {
	out := render(t, sampleStatus())
	for _, want := range []string{
		"Cluster Summary:\n",
		"  * Time: 2025-03-04 05:06:07 UTC (as seen from n1)\n",
		"  * Current DC: n2 (term 7) - partition with quorum\n",
		"  * Spec version: 4\n",
		"  * 3 nodes configured, 1 virtual services\n",
		"  * no-quorum-policy: stop, takeover: lease\n",
		"\nNode List:\n",
		"\nVirtual IPs:\n",
		"  * 172.95.69.100 on eth0: held by n2 (term 7, since 05:00:00)\n",
		"      this node: not on eth0, on lo (real server)\n",
		"\nVirtual Services:\n",
		"  TCP  172.95.69.100:3128",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
	for _, n := range [][]string{
		{"  * n1", "10.0.0.1", "Online", "member", "dataplane kernel"},
		{"  * n2", "10.0.0.2", "Online", "DC", "dataplane kernel"},
		{"  * n3", "10.0.0.3", "Offline", "member"},
	} {
		if _, ok := lineWith(out, n...); !ok {
			t.Errorf("no node line with %q:\n%s", n, out)
		}
	}
	if line, ok := lineWith(out, "  * n3"); ok && strings.Contains(line, "dataplane") {
		t.Errorf("node line %q names a dataplane the node did not report", line)
	}
	for _, want := range [][]string{
		{"  TCP  172.95.69.100:3128", "rr", "persistent 20s", "check tcp", "(squid)"},
		{"    -> RemoteAddress:Port", "Forward", "Weight", "Node"},
		{"    -> 10.0.0.1:3128", "Route", "1", "n1"},
		{"    -> 10.0.0.2:3128", "Route", "1", "n2"},
		{"    fallback 127.0.0.1:3128"},
	} {
		if _, ok := lineWith(out, want...); !ok {
			t.Errorf("no service line with %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WARNING") || strings.Contains(out, "NONE") {
		t.Errorf("a healthy cluster's view has a warning:\n%s", out)
	}
	// Columns line up: both real servers' Forward column starts at the same offset.
	l1, _ := lineWith(out, "-> 10.0.0.1:3128")
	l2, _ := lineWith(out, "-> 10.0.0.2:3128")
	if strings.Index(l1, "Route") != strings.Index(l2, "Route") {
		t.Errorf("real server columns are not aligned:\n%s\n%s", l1, l2)
	}
}

func TestRenderStatusWithoutQuorum(t *testing.T) {
	st := sampleStatus()
	st.DC = ""
	st.Quorum = false
	st.Stale = true
	st.Warning = "this node has lost contact with the DC (last contact 3s ago)"
	st.VIPs[0].HeldBy = ""
	st.VIPs[0].Holder.Released, st.VIPs[0].Holder.Reason = true, fsm.ReleaseQuorumLost
	st.Nodes[1].Role = "member"
	st.Nodes[1].Status = "offline"
	out := render(t, st)
	for _, want := range []string{
		"  * Current DC: NONE (term 7) - partition WITHOUT quorum\n",
		"  * WARNING: this node has lost contact with the DC (last contact 3s ago)\n",
		"  * 172.95.69.100 on eth0: held by nobody (n2 let go in term 7: quorum-lost)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "with quorum") {
		t.Errorf("a view without a DC claims quorum:\n%s", out)
	}
	// The warning comes right after the DC line, where it is seen first.
	if i, j := strings.Index(out, "Current DC"), strings.Index(out, "WARNING"); j < i {
		t.Errorf("the warning comes before the DC line:\n%s", out)
	}
}

func TestRenderStatusIPv6(t *testing.T) {
	st := sampleStatus()
	st.VIPs = []status.VIPStatus{{Address: "fd00::100", HeldBy: "n2"}}
	st.Services = []status.ServiceStatus{{
		VIP: "fd00::100", Port: 53, Protocol: "udp", Scheduler: "wlc", Forwarding: "route",
		Fallback:    "[::1]:53",
		RealServers: []status.RealServerStatus{{Address: "fd00::1", Port: 53, Weight: 2}},
	}}
	out := render(t, st)
	for _, want := range [][]string{
		{"  UDP  [fd00::100]:53", "wlc"},
		{"    -> [fd00::1]:53", "Route", "2"},
		{"    fallback [::1]:53"},
		{"  * fd00::100: held by nobody (never claimed)"},
	} {
		if _, ok := lineWith(out, want...); !ok {
			t.Errorf("no line with %q:\n%s", want, out)
		}
	}
}

func TestRenderStatusEmpty(t *testing.T) {
	st := status.Status{
		Time:  time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Node:  "n1",
		Nodes: []cluster.NodeView{{Name: "n1", Status: "online", Role: "joining"}},
	}
	out := render(t, st)
	for _, want := range []string{
		"  * 0 nodes configured, 0 virtual services\n",
		// An empty policy (a spec stored before takeover existed) is shown
		// as what it does.
		"  * no-quorum-policy: stop, takeover: immediate\n",
		"\nVirtual IPs:\n  (none)\n",
		"\nVirtual Services:\n  (none)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderStatusNoRealServers(t *testing.T) {
	st := sampleStatus()
	st.Services[0].RealServers = nil
	st.Services[0].Forwarding = "masq"
	out := render(t, st)
	if _, ok := lineWith(out, "    -> (no real server online)"); !ok {
		t.Errorf("a service without real servers does not say so:\n%s", out)
	}
	st = sampleStatus()
	st.Services[0].Forwarding = "tunnel"
	if _, ok := lineWith(render(t, st), "    -> 10.0.0.1:3128", "Tunnel"); !ok {
		t.Errorf("tunnel forwarding is not shown as Tunnel")
	}
}

// The view is rendered from JSON sent by an agent, possibly of another
// version: missing fields must not crash the CLI.
func TestRenderStatusToleratesMissingFields(t *testing.T) {
	st := sampleStatus()
	st.Nodes = append(st.Nodes, cluster.NodeView{Name: "n4"}, cluster.NodeView{Name: "n5", Status: "éveillé"})
	out := render(t, st)
	if _, ok := lineWith(out, "  * n4"); !ok {
		t.Errorf("node without a status is not listed:\n%s", out)
	}
	if _, ok := lineWith(out, "  * n5", "Éveillé"); !ok {
		t.Errorf("a non-ASCII status is not capitalised whole:\n%s", out)
	}
}

// TestRenderFencing: the devices with their last check, and the history
// newest first, one line per event, with a failure's last output line
// made printable.
func TestRenderFencing(t *testing.T) {
	st := sampleStatus()
	at := time.Date(2025, 3, 4, 5, 1, 0, 0, time.UTC)
	st.VIPs[0].Takeover = "n2 fences n1 before it claims the VIP (takeover: fence)"
	st.Fencing = status.FencingStatus{
		Devices: []status.DeviceStatus{
			{Name: "ipmi-n1", Agent: "fence_ipmilan", Action: "reboot", Hosts: []string{"n1"}, Check: &fsm.DeviceCheck{Device: "ipmi-n1", Action: fsm.CheckMonitor, Error: "Unable to connect\x1b[2J", At: at}},
			{Name: "pdu", Agent: "fence_apc_snmp", Action: "off", Hosts: []string{"n1", "n3"}},
		},
		History: []fsm.FenceEvent{
			{ID: 11, Target: "n1", Action: "reboot", By: "n2", Term: 7, Reason: "it holds VIPs", At: at, Result: fsm.FenceFailed, Completed: at.Add(3 * time.Second),
				Level: 1, Device: "ipmi-n1", Attempts: 3, ExitCode: 1, DurationMS: 3000, Output: "first\nFailed: Unable to connect\x07\n"},
			{ID: 14, Target: "n1", Action: "off", By: "n3", At: at.Add(time.Minute), Result: fsm.FenceConfirmed, Completed: at.Add(time.Minute)},
			{ID: 15, Target: "n3", Action: "reboot", By: "n2", Reason: "requested by an operator on n1", At: at.Add(2 * time.Minute)},
		},
	}
	out := render(t, st)
	for _, want := range []string{
		"      takeover: n2 fences n1 before it claims the VIP (takeover: fence)\n",
		"\nFencing Devices:\n",
		"  * ipmi-n1 (fence_ipmilan, reboot): fences n1; monitor FAILED since 2025-03-04 05:01:00 UTC: Unable to connect [2J\n",
		"  * pdu (fence_apc_snmp, off): fences n1, n3; not checked yet\n",
		"\nFencing History:\n",
		"  * reboot of n3 pending: by n2 since 2025-03-04 05:03:00 UTC (#15: requested by an operator on n1)\n",
		"  * n1 confirmed down by an operator on n3 at 2025-03-04 05:02:00 UTC (#14)\n",
		"  * reboot of n1 failed: by n2 at 2025-03-04 05:01:03 UTC, level 1 device ipmi-n1, 3 attempt(s), exit 1, 3s (#11: it holds VIPs)\n",
		"      last output: Failed: Unable to connect \n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "#15"), strings.Index(out, "#11"); i > j {
		t.Errorf("history is not newest first:\n%s", out)
	}
	if strings.Contains(sampleRender(t), "Fencing") {
		t.Errorf("a cluster without fencing shows a fencing section")
	}
}

func sampleRender(t *testing.T) string { return render(t, sampleStatus()) }

// TestRenderNodesThatCannotDirectOrAreOlder: a witness, a node that cannot
// direct, and a node of an older release during a rolling upgrade are
// each named on their line; skipped entries are counted.
func TestRenderNodesThatCannotDirectOrAreOlder(t *testing.T) {
	st := sampleStatus()
	st.Nodes[0].Schema, st.Nodes[1].Schema, st.Nodes[2].Schema = 2, 2, 1
	st.Nodes[0].CannotDirect = "VIP 172.95.69.100's interface eth0 is missing"
	st.Nodes = append(st.Nodes, cluster.NodeView{Name: "tie", Address: "10.0.0.9", Status: "online", Role: "member", Gossip: "alive", Witness: true, Schema: 2})
	st.SkippedEntries = 3
	out := render(t, st)
	for _, want := range [][]string{
		{"* n1", "Online", "dataplane kernel; cannot direct: VIP 172.95.69.100's interface eth0 is missing"},
		{"* n3", "Offline", "older release (schema 1 of 2): upgrade it"},
		{"* tie", "Online", "witness (never directs)"},
		{"* 3 log entries skipped here: this node's release cannot read them (upgrade it)"},
	} {
		if _, ok := lineWith(out, want...); !ok {
			t.Errorf("status view lacks a line with %q:\n%s", want, out)
		}
	}
	if _, ok := lineWith(out, "* n2", "older release"); ok {
		t.Errorf("n2 is shown as older:\n%s", out)
	}
}

func TestRenderHealthVerdictAndNote(t *testing.T) {
	st := sampleStatus()
	st.Health = status.Verdict{State: status.StateDegraded, Code: 1, Reasons: []string{"node n3 is offline"}}
	st.HealthNote = "the DC runs no health checks: it has no data plane"
	out := render(t, st)
	for _, want := range []string{
		"  * Health: DEGRADED: node n3 is offline\n",
		"  * Real servers' health unknown: the DC runs no health checks: it has no data plane\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
}

// TestRenderResources: the DC's resources in start order, their state,
// and a failure's count and last error on one line.
func TestRenderResources(t *testing.T) {
	st := sampleStatus()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st.Resources = []resources.Status{
		{Name: "www-data", Kind: "ocf:heartbeat:Filesystem", State: resources.StateStarted, Since: at, Monitored: at.Add(20 * time.Second)},
		{Name: "apache", Kind: "ocf:heartbeat:apache", State: resources.StateFailed, Since: at, Failures: 2, LastError: "resource apache: exit status 1 (generic error)\nsecond line"},
	}
	st.ResourceNote = "this node is not DC and resource www-data is stop-failed here"
	out := render(t, st)
	for _, want := range []string{
		"\nResources (on the DC, in start order):\n  * this node is not DC and resource www-data is stop-failed here\n",
		"  * www-data (ocf:heartbeat:Filesystem): started since 10:00:00, monitored 10:00:20\n",
		"  * apache (ocf:heartbeat:apache): failed since 10:00:00; 2 failed actions, last: resource apache: exit status 1 (generic error) second line\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status view lacks %q:\n%s", want, out)
		}
	}
}
