package fsm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/spec"
)

// squidSpec is the spec deploy/examples/services.yaml describes, as the
// parser must produce it.
func squidSpec() spec.Spec {
	vip := netip.MustParseAddr("172.95.69.100")
	return spec.Spec{
		VIPs:   []spec.VIP{{Address: vip, Interface: "eth0"}},
		Policy: spec.Policy{NoQuorum: "stop", Takeover: "lease"},
		Services: []spec.Service{{
			Name:        "squid",
			VIP:         vip,
			Port:        3128,
			Protocol:    "tcp",
			Scheduler:   "rr",
			Forwarding:  "route",
			Persistence: spec.Persistence{Timeout: 20 * time.Second},
			RealServers: spec.RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
			Fallback:    &spec.RealServer{Address: netip.MustParseAddr("127.0.0.1"), Port: 3128, Weight: 1},
			HealthCheck: &spec.HealthCheck{
				Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second,
				Rise: 2, Fall: 2, OnFail: "remove",
			},
		}},
	}
}

// webSpec is a second valid spec that exercises the other features.
func webSpec() spec.Spec {
	vip6 := netip.MustParseAddr("2001:db8::80")
	vip4 := netip.MustParseAddr("10.0.0.1")
	return spec.Spec{
		VIPs:   []spec.VIP{{Address: vip4}, {Address: vip6, Interface: "bond0"}},
		Policy: spec.Policy{NoQuorum: "stop", Takeover: "immediate"},
		Services: []spec.Service{
			{
				Name: "web", VIP: vip4, Port: 80, Protocol: "tcp", Scheduler: "wlc", Forwarding: "route",
				Persistence: spec.Persistence{Timeout: time.Minute, Netmask: netip.MustParseAddr("255.255.255.0")},
				RealServers: spec.RealServers{Servers: []spec.RealServer{
					{Address: netip.MustParseAddr("10.0.1.5"), Port: 80, Weight: 2},
					{Address: netip.MustParseAddr("10.0.1.6"), Port: 80, Weight: 0},
				}},
				HealthCheck: &spec.HealthCheck{
					Type: "http", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 3,
					OnFail: "quiescent", Path: "/healthz", ExpectStatus: []int{200, 204}, BodyRegex: "^ok",
				},
			},
			{
				VIP: vip6, Port: 53, Protocol: "udp", Scheduler: "sh", Forwarding: "route",
				RealServers: spec.RealServers{AllNodes: true, NodePort: 53, NodeWeight: 1},
				HealthCheck: &spec.HealthCheck{
					Type: "exec", Interval: 5 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2,
					OnFail: "remove", Command: []string{"/usr/local/bin/check-dns", "--fast"},
				},
			},
		},
	}
}

func testNode(name, addr string) Node {
	a := netip.MustParseAddr(addr)
	return Node{
		Name:       name,
		Address:    a,
		RaftAddr:   netip.AddrPortFrom(a, 7000),
		GossipAddr: netip.AddrPortFrom(a, 7946),
		JoinedAt:   time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func mustEncode(t testing.TB, typ CommandType, payload any) []byte {
	t.Helper()
	b, err := EncodeCommand(typ, payload)
	if err != nil {
		t.Fatalf("EncodeCommand(%s): %v", typ, err)
	}
	return b
}

// applier feeds entries to an FSM with increasing indexes, as Raft would.
type applier struct {
	f     *FSM
	index uint64
}

func (a *applier) apply(data []byte) any {
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data})
}

// result applies data and requires a *Result.
func (a *applier) result(t testing.TB, data []byte) *Result {
	t.Helper()
	res, ok := a.apply(data).(*Result)
	if !ok || res == nil {
		t.Fatalf("Apply returned %T, want *Result", res)
	}
	return res
}

// fencedSpec is squidSpec with fencing: two devices for m30 and m40 (who
// must be registered nodes), freeze with takeover fence.
func fencedSpec() spec.Spec {
	s := squidSpec()
	s.Policy = spec.Policy{NoQuorum: "freeze", Takeover: "fence"}
	s.Fencing = spec.Fencing{
		Devices: []spec.FenceDevice{
			{
				Name: "ipmi", Agent: "fence_ipmilan", Hosts: map[string]string{"m30": "", "m40": "2"},
				Params: map[string]spec.FenceParam{"ip": {Value: "10.0.0.30"}, "password": {File: "/etc/raftlb/ipmi.pass"}},
				Action: "reboot", Timeout: time.Minute, Retries: 2, DelayMax: 5 * time.Second,
			},
			{Name: "pdu", Agent: "/usr/sbin/fence_apc_snmp", Hosts: map[string]string{"m30": "3"}, Action: "off", Timeout: 30 * time.Second},
		},
		Levels: map[string][][]string{"m30": {{"ipmi"}, {"pdu"}}},
	}
	return s
}
