package spec

import (
	"net/netip"
	"time"
)

// squidSpec is the spec deploy/examples/services.yaml describes, as the
// parser must produce it.
func squidSpec() Spec {
	vip := netip.MustParseAddr("172.95.69.100")
	return Spec{
		VIPs:   []VIP{{Address: vip, Interface: "eth0"}},
		Policy: Policy{NoQuorum: "stop", Takeover: "lease"},
		Services: []Service{{
			Name:        "squid",
			VIP:         vip,
			Port:        3128,
			Protocol:    "tcp",
			Scheduler:   "rr",
			Forwarding:  "route",
			Persistence: Persistence{Timeout: 20 * time.Second},
			RealServers: RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
			Fallback:    &RealServer{Address: netip.MustParseAddr("127.0.0.1"), Port: 3128, Weight: 1},
			HealthCheck: &HealthCheck{
				Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second,
				Rise: 2, Fall: 2, OnFail: "remove",
			},
		}},
	}
}

// webSpec is a second valid spec that exercises the other features.
func webSpec() Spec {
	vip6 := netip.MustParseAddr("2001:db8::80")
	vip4 := netip.MustParseAddr("10.0.0.1")
	return Spec{
		VIPs:   []VIP{{Address: vip4}, {Address: vip6, Interface: "bond0"}},
		Policy: Policy{NoQuorum: "stop", Takeover: "immediate"},
		Services: []Service{
			{
				Name: "web", VIP: vip4, Port: 80, Protocol: "tcp", Scheduler: "wlc", Forwarding: "route",
				Persistence: Persistence{Timeout: time.Minute, Netmask: netip.MustParseAddr("255.255.255.0")},
				RealServers: RealServers{Servers: []RealServer{
					{Address: netip.MustParseAddr("10.0.1.5"), Port: 80, Weight: 2},
					{Address: netip.MustParseAddr("10.0.1.6"), Port: 80, Weight: 0},
				}},
				HealthCheck: &HealthCheck{
					Type: "http", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 3,
					OnFail: "quiescent", Path: "/healthz", ExpectStatus: []int{200, 204}, BodyRegex: "^ok",
				},
			},
			{
				VIP: vip6, Port: 53, Protocol: "udp", Scheduler: "sh", Forwarding: "route",
				RealServers: RealServers{AllNodes: true, NodePort: 53, NodeWeight: 1},
				HealthCheck: &HealthCheck{
					Type: "exec", Interval: 5 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2,
					OnFail: "remove", Command: []string{"/usr/local/bin/check-dns", "--fast"},
				},
			},
		},
	}
}

// fencedSpec is squidSpec with fencing: two devices for m30 and m40 (who
// must be registered nodes), freeze with takeover fence.
func fencedSpec() Spec {
	s := squidSpec()
	s.Policy = Policy{NoQuorum: "freeze", Takeover: "fence"}
	s.Fencing = Fencing{
		Devices: []FenceDevice{
			{
				Name: "ipmi", Agent: "fence_ipmilan", Hosts: map[string]string{"m30": "", "m40": "2"},
				Params: map[string]FenceParam{"ip": {Value: "10.0.0.30"}, "password": {File: "/etc/raftlb/ipmi.pass"}},
				Action: "reboot", Timeout: time.Minute, Retries: 2, DelayMax: 5 * time.Second,
			},
			{Name: "pdu", Agent: "/usr/sbin/fence_apc_snmp", Hosts: map[string]string{"m30": "3"}, Action: "off", Timeout: 30 * time.Second},
		},
		Levels: map[string][][]string{"m30": {{"ipmi"}, {"pdu"}}},
	}
	return s
}
