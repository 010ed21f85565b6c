package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
)

func sources() Sources {
	svc := spec.ServiceKey{VIP: netip.MustParseAddr("172.95.69.100"), Port: 80, Protocol: spec.ProtocolTCP}
	rs := netip.MustParseAddrPort("172.95.69.30:80")
	return Sources{
		View: func() cluster.View {
			return cluster.View{Node: "n1", DC: "n1", IsLeader: true, Quorum: true, Term: 7,
				Nodes: []cluster.NodeView{{Name: "n1", Status: "online"}, {Name: "n2", Status: "online"}, {Name: "n3", Status: "offline"}}}
		},
		Spec: func() spec.Spec { return spec.Spec{Version: 4} },
		VIPs: func() []VIP {
			return []VIP{{Address: svc.VIP, Interface: "eth0", OnIface: true}}
		},
		IPVS: func() ([]dataplane.Service, error) {
			return []dataplane.Service{{Key: dataplane.ServiceKey(svc), Stats: dataplane.Stats{Connections: 10, PacketsIn: 100, PacketsOut: 90, BytesIn: 5000, BytesOut: 7000},
				Dests: []dataplane.Dest{{Addr: rs.Addr(), Port: rs.Port(), Weight: 1, ActiveConns: 2, Stats: dataplane.Stats{Connections: 10, PacketsIn: 100, BytesIn: 5000}}}}}, nil
		},
		Health: func() map[health.Key]health.State {
			return map[health.Key]health.State{{Service: svc, Server: rs}: {Up: true}}
		},
		Resources: func() []resources.Status {
			return []resources.Status{{Name: "www-data", State: resources.StateStarted, Failures: 1}}
		},
		Writes:  func() uint64 { return 3 },
		GARPs:   func() uint64 { return 6 },
		Expires: func() (time.Time, time.Time) { return time.Unix(2000000000, 0), time.Unix(2100000000, 0) },
	}
}

// TestMetricsLintAndValues: the metric set passes client_golang's own
// lint, and what a scrape reads is what the sources hold.
func TestMetricsLintAndValues(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, sources())
	if err != nil {
		t.Fatal(err)
	}
	m.Reconciled(3 * time.Millisecond)
	m.Probed(health.Key{Server: netip.MustParseAddrPort("172.95.69.30:80")}, time.Millisecond)
	m.Event(events.Event{Type: events.DCGained})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP raftlb_dc 1 if this node is the DC.
# TYPE raftlb_dc gauge
raftlb_dc 1
# HELP raftlb_nodes Configured nodes, by status as this node sees them.
# TYPE raftlb_nodes gauge
raftlb_nodes{status="offline"} 1
raftlb_nodes{status="online"} 2
# HELP raftlb_vip_on_interface 1 if the kernel has the VIP on this node's interface (the DC holds it there), else 0.
# TYPE raftlb_vip_on_interface gauge
raftlb_vip_on_interface{interface="eth0",vip="172.95.69.100"} 1
# HELP raftlb_ipvs_service_connections_total Connections the kernel scheduled for the virtual service (ipvsadm -Ln --stats).
# TYPE raftlb_ipvs_service_connections_total counter
raftlb_ipvs_service_connections_total{service="172.95.69.100:80/tcp"} 10
# HELP raftlb_ipvs_real_server_bytes_total Bytes of the real server, by direction.
# TYPE raftlb_ipvs_real_server_bytes_total counter
raftlb_ipvs_real_server_bytes_total{direction="in",server="172.95.69.30:80",service="172.95.69.100:80/tcp"} 5000
raftlb_ipvs_real_server_bytes_total{direction="out",server="172.95.69.30:80",service="172.95.69.100:80/tcp"} 0
# HELP raftlb_real_server_up 1 if the real server's health check passes (on the DC), else 0.
# TYPE raftlb_real_server_up gauge
raftlb_real_server_up{server="172.95.69.30:80",service="172.95.69.100:80/tcp"} 1
# HELP raftlb_raft_term The Raft term this node is in.
# TYPE raftlb_raft_term gauge
raftlb_raft_term 7
# HELP raftlb_resource_state 1 for the state the spec's resource is in on this node (stopped, starting, started, stopping, failed, stop-failed).
# TYPE raftlb_resource_state gauge
raftlb_resource_state{resource="www-data",state="started"} 1
# HELP raftlb_resource_failed_actions_total The resource's failed start, stop and monitor actions on this node since it started.
# TYPE raftlb_resource_failed_actions_total counter
raftlb_resource_failed_actions_total{resource="www-data"} 1
# HELP raftlb_gratuitous_arps_total Gratuitous ARPs (IPv6: unsolicited neighbour advertisements) this node sent since it started.
# TYPE raftlb_gratuitous_arps_total counter
raftlb_gratuitous_arps_total 6
# HELP raftlb_certificate_expiry_timestamp_seconds When this node's certificate and the cluster CA expire, in seconds since the epoch.
# TYPE raftlb_certificate_expiry_timestamp_seconds gauge
raftlb_certificate_expiry_timestamp_seconds{certificate="ca"} 2.1e+09
raftlb_certificate_expiry_timestamp_seconds{certificate="node"} 2e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "raftlb_dc", "raftlb_nodes", "raftlb_vip_on_interface",
		"raftlb_ipvs_service_connections_total", "raftlb_ipvs_real_server_bytes_total", "raftlb_real_server_up", "raftlb_raft_term", "raftlb_gratuitous_arps_total",
		"raftlb_resource_state", "raftlb_resource_failed_actions_total", "raftlb_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.events); n != len(events.Types) {
		t.Errorf("%d event series, want one per type (%d)", n, len(events.Types))
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(events.DCGained)); got != 1 {
		t.Errorf("dc_gained counted %v", got)
	}
	if n := testutil.CollectAndCount(m.reconcile); n != 1 {
		t.Errorf("reconcile histogram: %d series", n)
	}
}
