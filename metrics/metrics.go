// Package metrics is the agent's Prometheus metrics, on a registry the
// agent passes in (never the global one). State (DC, term, quorum, nodes,
// the VIPs on this node's interfaces, the kernel's IPVS counters, health)
// is read at scrape time from its sources; what happens between scrapes
// (reconcile and probe durations, events) is counted as it happens.
package metrics

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
)

// VIP is one VIP as this node's kernel has it.
type VIP struct {
	Address   netip.Addr
	Interface string // the interface it belongs on when this node is DC
	OnIface   bool   // the kernel has it on Interface now
}

// Sources is where the collector reads the state; a nil func leaves its
// metrics out (a node without a data plane has no VIPs or IPVS table).
type Sources struct {
	View    func() cluster.View
	Spec    func() spec.Spec
	VIPs    func() []VIP
	IPVS    func() ([]dataplane.Service, error)
	Health  func() map[health.Key]health.State
	Writes  func() uint64 // IPVS writes since start
	GARPs   func() uint64 // gratuitous ARPs sent since start
	Expires func() (node, ca time.Time)
	// Resources is the spec's resources as this node runs them.
	Resources func() []resources.Status
}

// Metrics holds what is counted as it happens; it implements
// director.Metrics.
type Metrics struct {
	reconcile prometheus.Histogram
	probe     *prometheus.HistogramVec
	takeover  *prometheus.HistogramVec
	events    *prometheus.CounterVec
}

// New registers the agent's metrics on reg and returns what the director
// and the event bus report to.
func New(reg prometheus.Registerer, src Sources) (*Metrics, error) {
	m := &Metrics{
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftlb_ipvs_reconcile_duration_seconds", Help: "Time one comparison of the kernel's IPVS table with the spec took, its writes included (on the DC).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		probe: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftlb_health_probe_duration_seconds", Help: "Time one health probe of a real server took (on the DC).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"service", "server"}),
		takeover: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftlb_takeover_phase_seconds", Help: "Time each phase of a takeover took on the node that became DC, from the old DC's last contact to the first gratuitous ARP (detection, election, barrier, takeover, verify, ipvs, commit, place, announce).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"phase"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftlb_events_total", Help: "Events this node published (raftlb events), by type.",
		}, []string{"type"}),
	}
	for _, t := range events.Types {
		m.events.WithLabelValues(t) // every type is listed, at 0
	}
	for _, c := range []prometheus.Collector{m.reconcile, m.probe, m.takeover, m.events, &collector{src: src}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// TakeoverPhase implements director.Metrics.
func (m *Metrics) TakeoverPhase(phase string, d time.Duration) {
	m.takeover.WithLabelValues(phase).Observe(d.Seconds())
}

// Reconciled implements director.Metrics.
func (m *Metrics) Reconciled(d time.Duration) { m.reconcile.Observe(d.Seconds()) }

// Probed implements director.Metrics.
func (m *Metrics) Probed(k health.Key, d time.Duration) {
	m.probe.WithLabelValues(k.Service.String(), k.Server.String()).Observe(d.Seconds())
}

// Event counts one event; the agent calls it from a bus subscription.
func (m *Metrics) Event(e events.Event) { m.events.WithLabelValues(e.Type).Inc() }

var (
	descDC       = prometheus.NewDesc("raftlb_dc", "1 if this node is the DC.", nil, nil)
	descTerm     = prometheus.NewDesc("raftlb_raft_term", "The Raft term this node is in.", nil, nil)
	descQuorum   = prometheus.NewDesc("raftlb_quorum", "1 if this node sees a quorum of the voters.", nil, nil)
	descNodes    = prometheus.NewDesc("raftlb_nodes", "Configured nodes, by status as this node sees them.", []string{"status"}, nil)
	descSpec     = prometheus.NewDesc("raftlb_spec_version", "The version of the spec this node holds.", nil, nil)
	descVIP      = prometheus.NewDesc("raftlb_vip_on_interface", "1 if the kernel has the VIP on this node's interface (the DC holds it there), else 0.", []string{"vip", "interface"}, nil)
	descWrites   = prometheus.NewDesc("raftlb_ipvs_writes_total", "IPVS table writes this node made since it started.", nil, nil)
	descGARPs    = prometheus.NewDesc("raftlb_gratuitous_arps_total", "Gratuitous ARPs (IPv6: unsolicited neighbour advertisements) this node sent since it started.", nil, nil)
	descUp       = prometheus.NewDesc("raftlb_real_server_up", "1 if the real server's health check passes (on the DC), else 0.", []string{"service", "server"}, nil)
	descExpiry   = prometheus.NewDesc("raftlb_certificate_expiry_timestamp_seconds", "When this node's certificate and the cluster CA expire, in seconds since the epoch.", []string{"certificate"}, nil)
	descSvcConns = prometheus.NewDesc("raftlb_ipvs_service_connections_total", "Connections the kernel scheduled for the virtual service (ipvsadm -Ln --stats).", []string{"service"}, nil)
	descSvcPkts  = prometheus.NewDesc("raftlb_ipvs_service_packets_total", "Packets of the virtual service, by direction.", []string{"service", "direction"}, nil)
	descSvcBytes = prometheus.NewDesc("raftlb_ipvs_service_bytes_total", "Bytes of the virtual service, by direction.", []string{"service", "direction"}, nil)
	descRSConns  = prometheus.NewDesc("raftlb_ipvs_real_server_connections_total", "Connections the kernel scheduled to the real server.", []string{"service", "server"}, nil)
	descRSPkts   = prometheus.NewDesc("raftlb_ipvs_real_server_packets_total", "Packets of the real server, by direction.", []string{"service", "server", "direction"}, nil)
	descRSBytes  = prometheus.NewDesc("raftlb_ipvs_real_server_bytes_total", "Bytes of the real server, by direction.", []string{"service", "server", "direction"}, nil)
	descRSActive = prometheus.NewDesc("raftlb_ipvs_real_server_active_connections", "Active connections to the real server now.", []string{"service", "server"}, nil)
	descRSWeight = prometheus.NewDesc("raftlb_ipvs_real_server_weight", "The real server's weight in the kernel table.", []string{"service", "server"}, nil)
	descScrapeOK = prometheus.NewDesc("raftlb_ipvs_scrape_success", "1 if the kernel's IPVS table could be read for this scrape.", nil, nil)
	descResState = prometheus.NewDesc("raftlb_resource_state", "1 for the state the spec's resource is in on this node (stopped, starting, started, stopping, failed, stop-failed).", []string{"resource", "state"}, nil)
	descResFails = prometheus.NewDesc("raftlb_resource_failed_actions_total", "The resource's failed start, stop and monitor actions on this node since it started.", []string{"resource"}, nil)
)

// collector reads the state at scrape time.
type collector struct{ src Sources }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDC, descTerm, descQuorum, descNodes, descSpec, descVIP, descWrites, descGARPs, descUp, descExpiry,
		descSvcConns, descSvcPkts, descSvcBytes, descRSConns, descRSPkts, descRSBytes, descRSActive, descRSWeight, descScrapeOK, descResState, descResFails} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if s.View != nil {
		v := s.View()
		gauge(descDC, b2f(v.IsLeader && v.Quorum))
		gauge(descTerm, float64(v.Term))
		gauge(descQuorum, b2f(v.Quorum))
		byStatus := map[string]int{"online": 0, "offline": 0}
		for _, n := range v.Nodes {
			byStatus[n.Status]++
		}
		for st, n := range byStatus {
			gauge(descNodes, float64(n), st)
		}
	}
	if s.Spec != nil {
		gauge(descSpec, float64(s.Spec().Version))
	}
	if s.VIPs != nil {
		for _, v := range s.VIPs() {
			gauge(descVIP, b2f(v.OnIface), v.Address.String(), v.Interface)
		}
	}
	if s.Writes != nil {
		counter(descWrites, float64(s.Writes()))
	}
	if s.GARPs != nil {
		counter(descGARPs, float64(s.GARPs()))
	}
	if s.Health != nil {
		for k, st := range s.Health() {
			gauge(descUp, b2f(st.Up), k.Service.String(), k.Server.String())
		}
	}
	if s.Expires != nil {
		node, ca := s.Expires()
		if !node.IsZero() {
			gauge(descExpiry, float64(node.Unix()), "node")
		}
		if !ca.IsZero() {
			gauge(descExpiry, float64(ca.Unix()), "ca")
		}
	}
	if s.Resources != nil {
		for _, r := range s.Resources() {
			gauge(descResState, 1, r.Name, r.State)
			counter(descResFails, float64(r.Failures), r.Name)
		}
	}
	if s.IPVS != nil {
		table, err := s.IPVS()
		gauge(descScrapeOK, b2f(err == nil))
		for _, svc := range table {
			name := svc.Key.String()
			counter(descSvcConns, float64(svc.Stats.Connections), name)
			counter(descSvcPkts, float64(svc.Stats.PacketsIn), name, "in")
			counter(descSvcPkts, float64(svc.Stats.PacketsOut), name, "out")
			counter(descSvcBytes, float64(svc.Stats.BytesIn), name, "in")
			counter(descSvcBytes, float64(svc.Stats.BytesOut), name, "out")
			for _, d := range svc.Dests {
				rs := netip.AddrPortFrom(d.Addr, d.Port).String()
				counter(descRSConns, float64(d.Stats.Connections), name, rs)
				counter(descRSPkts, float64(d.Stats.PacketsIn), name, rs, "in")
				counter(descRSPkts, float64(d.Stats.PacketsOut), name, rs, "out")
				counter(descRSBytes, float64(d.Stats.BytesIn), name, rs, "in")
				counter(descRSBytes, float64(d.Stats.BytesOut), name, rs, "out")
				gauge(descRSActive, float64(d.ActiveConns), name, rs)
				gauge(descRSWeight, float64(d.Weight), name, rs)
			}
		}
	}
}
